"""`tricolor label`, `search`, `export` and `import`: the catalogue's side of the console script."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as RichProgress
from rich.table import Table
from rich.text import Text
from sqlalchemy.exc import SQLAlchemyError

from tricolor.catalogue.labeller import Labeller, parse_shard, plural
from tricolor.catalogue.search import (
    DEFAULT_LIMIT,
    Query,
    SearchError,
    close_labels,
    missing_files,
    refusals,
    search,
)
from tricolor.catalogue.store import (
    PALETTES,
    Catalogue,
    CatalogueMissing,
    describe_url,
    open_catalogue,
)
from tricolor.catalogue.transfer import BadLine, export, import_files
from tricolor.client import TricolorClient
from tricolor.settings import catalogue_url, default_triton_url
from tricolor.terminal import no_server_hint, swatch, warn_about_weights

# `tricolor label`'s exit codes (CONTRACT.md): what the caller must do next
EXIT_DONE = 0  # everything answered (or unchanged)
EXIT_BUG = 1  # an unexpected failure: the traceback is printed (a Job retries it)
EXIT_USAGE = 2  # usage, or the catalogue cannot be opened: fix the command
EXIT_NO_SERVER = 3
EXIT_UNFINISHED = 4  # some files were not answered (the server went away): run again
EXIT_REFUSED = 5  # the server refused some files: stored with its reason, see `search --errors`
EXIT_INTERRUPTED = {signal.SIGINT: 130, signal.SIGTERM: 143}


class RateColumn(ProgressColumn):
    """Images per second, from rich's own speed estimate."""

    def render(self, task: Task) -> Text:
        return Text(f"{task.speed:.1f} img/s" if task.speed else "– img/s", style="cyan")


class LabelProgress:
    """The labeller's progress as a rich bar on stderr: found first, then processed / total,
    rate and ETA."""

    def __init__(self) -> None:
        self.bar = RichProgress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            RateColumn(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
        )
        self.task = self.bar.add_task("finding images", total=None)

    def total(self, count: int) -> None:
        self.bar.update(self.task, description=f"labelling {count} images", total=count)

    def advance(self, count: int = 1) -> None:
        self.bar.advance(self.task, count)


def _error(message: str, code: int = EXIT_USAGE) -> int:
    print(f"tricolor: {message}", file=sys.stderr)
    return code


def command_label(args: argparse.Namespace) -> int:
    """`tricolor label`; an unexpected failure is exit 1 with its traceback, never a
    code that reads as "done"."""
    try:
        return _label(args)
    except Exception:  # noqa: BLE001 (a bug, or a database gone mid-run: retried by a Job)
        traceback.print_exc()
        print(
            "tricolor: label failed unexpectedly (the traceback is above); what was stored "
            "is kept: run it again to resume",
            file=sys.stderr,
        )
        return EXIT_BUG


def _label(args: argparse.Namespace) -> int:
    try:
        shard = parse_shard(args.shard)
    except ValueError as exc:
        return _error(str(exc))
    if args.library is not None and len(args.paths) != 1:
        return _error("--library names one library: give it one folder")
    url = args.url or default_triton_url()
    try:
        catalogue = open_catalogue(args.db)
    except (ValueError, SQLAlchemyError) as exc:
        return _error(
            f"cannot open the catalogue {describe_url(args.db or catalogue_url())}: {exc}"
        )
    received: list[int] = []
    with catalogue, TricolorClient(url, timeout_s=args.timeout) as client:
        if not client.is_ready():
            return _error(no_server_hint(url, "grpc").removeprefix("tricolor: "), EXIT_NO_SERVER)
        progress = LabelProgress()
        labeller = Labeller(
            catalogue,
            client,
            stale=args.stale,
            shard=shard,
            library=args.library,
            concurrency=args.concurrency,
            batch_size=args.batch_size,
            server_wait_s=args.server_wait,
            progress=progress,
        )

        def interrupt(signum: int, _frame: object) -> None:
            received.append(signum)
            labeller.stop()  # finish and store what is in flight
            signal.signal(signum, signal.SIG_DFL)  # a second one stops at once

        for signum in EXIT_INTERRUPTED:
            signal.signal(signum, interrupt)
        try:
            with progress.bar:
                summary = labeller.run(args.paths)
        except FileNotFoundError as exc:
            return _error(str(exc))
    err = Console(stderr=True)
    for problem in summary.problems:
        err.print(Text(f"tricolor: {problem}", style="red"), soft_wrap=True)
    print(f"tricolor: {summary.line()}", file=sys.stderr)
    if labeller.provenance is not None:
        warn_about_weights({labeller.provenance.weights})
    if received:
        return EXIT_INTERRUPTED[received[0]]
    if summary.failed or summary.unreadable or summary.interrupted:
        return EXIT_UNFINISHED
    return EXIT_REFUSED if summary.refused else EXIT_DONE


def _colour_cell(hex_code: str, palette: str) -> Text:
    colours = PALETTES[palette]
    return swatch(hex_code, colours.names[colours.hex_codes.index(hex_code)])


def command_search(args: argparse.Namespace) -> int:
    try:
        catalogue = open_catalogue(args.db, create=False)
    except CatalogueMissing as exc:
        return _error(str(exc))
    except (ValueError, SQLAlchemyError) as exc:
        return _error(
            f"cannot open the catalogue {describe_url(args.db or catalogue_url())}: {exc}"
        )
    with catalogue:
        if args.errors:
            return _print_refusals(catalogue, args)
        if args.missing:
            return _print_missing(catalogue, args)
        query = Query(
            label=args.label,
            rgb=args.rgb,
            ryb=args.ryb,
            min_share=args.min_share,
            min_score=args.min_score,
            limit=args.limit,
            offset=args.offset,
        )
        try:
            page = search(catalogue, query)
        except SearchError as exc:
            return _error(str(exc))
        known = close_labels(catalogue, query.label) if query.label and not page.total else None
    shown = f"{query.offset + 1}-{query.offset + len(page.hits)} of {page.matches()}"
    if args.json:
        print(json.dumps([hit.to_json() for hit in page.hits], indent=2))
        if page.hits:
            print(f"tricolor: showing {shown} matches", file=sys.stderr)
    elif page.hits:
        # the path is the one column a user needs: it wraps (the file name on a line of its
        # own, whole), every other column keeps to one line
        longest_name = max(len(hit.path.rsplit("/", 1)[-1]) for hit in page.hits)
        table = Table(show_edge=False)
        table.add_column("#", justify="right", no_wrap=True)
        table.add_column("path", overflow="fold", min_width=min(longest_name, 48), ratio=1)
        table.add_column("top label", overflow="fold", max_width=24)
        table.add_column("score", justify="right", no_wrap=True)
        table.add_column("RGB", no_wrap=True)
        table.add_column("RYB", no_wrap=True)
        for rank, hit in enumerate(page.hits, start=query.offset + 1):
            folder, _, name = hit.path.rpartition("/")
            copies = (
                f" (+{plural(len(hit.duplicates), 'copy', 'copies')})" if hit.duplicates else ""
            )
            table.add_row(
                str(rank),
                Text.assemble((f"{folder}/\n", "dim"), (name, "bold"), copies),
                hit.labels[0],
                f"{hit.scores[0]:.4f}",
                _colour_cell(hit.color_rgb, "rgb"),
                _colour_cell(hit.color_ryb, "ryb"),
            )
        Console(soft_wrap=True).print(table)
        after = query.offset + len(page.hits)
        more = f"; --offset {after} for more" if page.has_more(after) else ""
        print(f"showing {shown} matches for {query.describe()}{more}")
    if not page.hits:
        beyond = f" at offset {query.offset} (there are {page.matches()})" if page.total else ""
        print(f"tricolor: nothing matches {query.describe()}{beyond}", file=sys.stderr)
        if known is not None:  # no picture has this label: which ones there are
            close, held = known
            hint = f"did you mean {', '.join(close)}? " if close else ""
            listed = ", ".join(f"{name} ({count})" for name, count in held) or "none yet"
            print(f"tricolor: {hint}the catalogue's top-1 labels: {listed}", file=sys.stderr)
    return 0


def _print_refusals(catalogue: Catalogue, args: argparse.Namespace) -> int:
    """Every refused file (not only --limit: the list is what to fix)."""
    total, rows = refusals(catalogue, offset=args.offset)
    return _print_files(
        rows, total, args.json, "refused file",
        lambda row: Text.assemble((row.path, "bold red"), f": {row.error}"),
    )  # fmt: skip


def _print_missing(catalogue: Catalogue, args: argparse.Namespace) -> int:
    """Every file a run over its library no longer found."""
    total, rows = missing_files(catalogue, offset=args.offset)
    return _print_files(
        rows, total, args.json, "missing file",
        lambda row: Text.assemble((row.path, "bold"), f": missing since {row.missing_since}"),
    )  # fmt: skip


def _print_files(
    rows: list[Any], total: int, as_json: bool, noun: str, line: Callable[[Any], Text]
) -> int:
    """A listing of files (`--errors`, `--missing`): JSON, or a line each and their count."""
    if as_json:
        print(json.dumps([row.to_json() for row in rows], indent=2))
        return 0
    console = Console(soft_wrap=True)
    for row in rows:
        console.print(line(row))
    print(plural(total, noun) if total else f"no {noun}s")
    return 0


def _open_for(args: argparse.Namespace, create: bool) -> Catalogue | int:
    """The catalogue at --db, or the exit code of the message saying why it cannot open."""
    try:
        return open_catalogue(args.db, create=create)
    except CatalogueMissing as exc:
        return _error(str(exc))
    except (ValueError, SQLAlchemyError) as exc:
        return _error(
            f"cannot open the catalogue {describe_url(args.db or catalogue_url())}: {exc}"
        )


def command_export(args: argparse.Namespace) -> int:
    catalogue = _open_for(args, create=False)
    if isinstance(catalogue, int):
        return catalogue
    with catalogue:
        if args.output is None:
            count = export(catalogue, sys.stdout)
        else:
            try:
                with open(args.output, "w", encoding="utf-8") as out:
                    count = export(catalogue, out)
            except OSError as exc:
                return _error(f"cannot write {args.output}: {exc.strerror}")
    print(f"tricolor: exported {plural(count, 'picture')}", file=sys.stderr)
    return EXIT_DONE


def command_import(args: argparse.Namespace) -> int:
    paths = [Path(name) for name in args.files]
    for path in paths:
        if not path.is_file():
            return _error(f"{path}: no such file")
    catalogue = _open_for(args, create=True)
    if isinstance(catalogue, int):
        return catalogue
    with catalogue:
        try:
            done = import_files(catalogue, paths)
        except BadLine as exc:
            return _error(f"{exc}; nothing was imported")
        except OSError as exc:
            return _error(f"cannot read {exc.filename}: {exc.strerror}")
    print(
        f"tricolor: imported {plural(done.pictures, 'picture')} "
        f"({done.kept} stored already, answers kept), {plural(done.files, 'file')}",
        file=sys.stderr,
    )
    return EXIT_DONE


def add_catalogue_commands(commands: Any) -> None:
    """`label`, `search`, `export` and `import` on the console script's subcommands."""
    db_help = "catalogue database URL (default: TRICOLOR_DB, else a SQLite file)"
    label = commands.add_parser(
        "label",
        help="send every image under the paths through classify into the catalogue",
        description="Each folder named is a library: files are stored as library + relative "
        "path; a file a run over its folder (or its shard) no longer finds is marked missing.",
        epilog=f"exit codes: {EXIT_DONE} everything answered (or unchanged); {EXIT_REFUSED} the "
        f"server refused some files (search --errors); {EXIT_UNFINISHED} some files were not "
        f"answered: run again; {EXIT_NO_SERVER} no server; {EXIT_USAGE} usage, or the catalogue "
        f"cannot be opened; {EXIT_BUG} an unexpected failure (a bug: traceback printed); "
        "130 / 143 after SIGINT / SIGTERM",
    )
    label.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders")
    label.add_argument("--db", help=db_help)
    label.add_argument(
        "--library",
        metavar="NAME",
        help="the library's name (default: the folder's absolute path): hosts that mount one "
        "collection at different places label it under one name",
    )
    label.add_argument(
        "--stale", action="store_true", help="also re-label pictures of another provenance"
    )
    label.add_argument(
        "--shard", default="0/1", metavar="I/N", help="label only the I-th of N shares (0-based)"
    )
    label.add_argument(
        "--url",
        help="the server's gRPC HOST:PORT (default: TRITON_URL, else localhost on GRPC_PORT, "
        "8001 as `tricolor serve` binds it)",
    )
    label.add_argument("--concurrency", type=int, default=4, help="requests in flight")
    label.add_argument("--batch-size", type=int, default=8, help="images per request")
    label.add_argument("--timeout", type=float, default=120.0, help="seconds per request")
    label.add_argument(
        "--server-wait",
        type=float,
        default=300.0,
        help="seconds to wait for a server that went away mid-run before stopping",
    )
    label.set_defaults(handler=command_label)

    search_parser = commands.add_parser("search", help="find catalogued pictures")
    search_parser.add_argument("--label", help="the top-1 label")
    search_parser.add_argument("--rgb", metavar="COLOUR", help="RGB palette hex code or name")
    search_parser.add_argument("--ryb", metavar="COLOUR", help="RYB palette hex code or name")
    search_parser.add_argument(
        "--min-share",
        type=float,
        metavar="F",
        help="with a colour: at least this fraction of the pixels instead of the dominant colour",
    )
    search_parser.add_argument(
        "--min-score", type=float, metavar="P", help="top-1 probability at least P"
    )
    search_parser.add_argument("--limit", type=int, default=DEFAULT_LIMIT)
    search_parser.add_argument("--offset", type=int, default=0)
    search_parser.add_argument(
        "--errors", action="store_true", help="list the files the server refused"
    )
    search_parser.add_argument(
        "--missing", action="store_true", help="list the files a run no longer found"
    )
    search_parser.add_argument("--db", help=db_help)
    search_parser.add_argument("--json", action="store_true", help="print one JSON array")
    search_parser.set_defaults(handler=command_search)

    export_parser = commands.add_parser(
        "export",
        help="write the whole catalogue as JSON Lines (one picture a line)",
        description="Each line: a picture's answer or refusal, its provenance and its files "
        "(library, relative path as stored, missing or not). `tricolor import` reads it back.",
    )
    export_parser.add_argument("--db", help=db_help)
    export_parser.add_argument("--output", metavar="FILE", help="write here (default: stdout)")
    export_parser.set_defaults(handler=command_export)

    import_parser = commands.add_parser(
        "import",
        help="load what `tricolor export` wrote into a catalogue",
        description="Idempotent by SHA-256 (a picture stored already keeps its answer), "
        "provenance kept, nothing sent to a server. Every line is checked first: a bad line is "
        f"named with its number and nothing is imported (exit {EXIT_USAGE}).",
    )
    import_parser.add_argument("files", nargs="+", metavar="FILE", help="JSON Lines files")
    import_parser.add_argument("--db", help=db_help)
    import_parser.set_defaults(handler=command_import)
