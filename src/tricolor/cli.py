"""`tricolor`: run the embedded server and classify images from the terminal."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from tricolor.catalogue.commands import add_catalogue_commands
from tricolor.client import PROTOCOLS, Classification, TricolorClient
from tricolor.launcher import ServerOptions, serve
from tricolor.settings import (
    DEFAULT_BIND_ADDRESS,
    DEFAULT_GRPC_PORT,
    DEFAULT_HTTP_PORT,
    DEFAULT_METRICS_PORT,
    MODEL_REPOSITORY,
    SERVER_ADDRESS_RULE,
    Ports,
    default_triton_url,
)
from tricolor.terminal import no_server_hint, swatch, warn_about_weights
from tricolor.walk import find_images

# `classify`'s exit codes (`tricolor classify --help` lists them): what the caller does next
EXIT_USAGE = 2  # a path that does not exist, no image among the paths, a bad option
EXIT_NO_SERVER = 3  # no ready server with `classify` where SERVER_ADDRESS_RULE looks
EXIT_UNANSWERED = 4  # some images got no answer (the server went away or failed): run again
EXIT_REFUSED = 5  # the server refused some images (bad input): their reasons are printed
EXIT_INTERRUPTED = 130  # Ctrl-C; 1 is left to an unexpected failure (a bug: a traceback)


def render_table(results: list[Classification], console: Console) -> None:
    for result in results:
        if result.error is not None:
            console.print(
                Text.assemble(
                    (result.path, "bold red"),
                    f": refused: {result.error}" if result.refused else f": {result.error}",
                ),
                soft_wrap=True,
            )
            continue
        console.print(Text(result.path, style="bold"), soft_wrap=True)
        table = Table(show_edge=False)
        table.add_column("#", justify="right")
        table.add_column("label")
        table.add_column("score", justify="right")
        table.add_column("class", justify="right")
        for rank, (label, score, class_id) in enumerate(
            zip(result.labels, result.scores, result.class_ids, strict=True), start=1
        ):
            table.add_row(str(rank), label, f"{score:.4f}", str(class_id))
        console.print(table)
        console.print(
            Text.assemble(
                "  colour RGB ",
                swatch(result.color_rgb, result.color_rgb_name),
                "   RYB ",
                swatch(result.color_ryb, result.color_ryb_name),
            )
        )
        second = "  second look taken" if result.second_look else ""
        console.print(f"  latency {result.latency_ms:.1f} ms{second}\n")


def command_classify(args: argparse.Namespace) -> int:
    try:
        paths = [found.path for found in find_images(args.images)]
    except FileNotFoundError as exc:
        print(f"tricolor: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not paths:
        print(f"tricolor: no image files in {', '.join(args.images)}", file=sys.stderr)
        return EXIT_USAGE
    url = args.url or default_triton_url(args.protocol)
    try:
        client = TricolorClient(url, protocol=args.protocol, timeout_s=args.timeout)
    except ImportError as exc:  # --protocol http without tritonclient's HTTP side
        print(f"tricolor: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        with client:
            if not client.is_ready():
                print(no_server_hint(url, args.protocol), file=sys.stderr)
                return EXIT_NO_SERVER
            results = client.classify_many(
                [path.read_bytes() for path in paths],
                [str(path) for path in paths],
                args.concurrency,
            )
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    if args.json:
        print(json.dumps([result.to_json() for result in results], indent=2))
    else:
        render_table(results, Console())
    warn_about_weights({result.weights for result in results if result.error is None})
    if any(result.error is not None and not result.refused for result in results):
        return EXIT_UNANSWERED
    return EXIT_REFUSED if any(result.refused for result in results) else 0


def command_serve(args: argparse.Namespace) -> int:
    options = ServerOptions(
        ports=Ports(http=args.http_port, grpc=args.grpc_port, metrics=args.metrics_port),
        address=args.host,
        model_repository=Path(args.model_repository),
        config_name=None if args.config_name == "default" else args.config_name,
        model_control="explicit" if args.allow_model_control else "none",
        prefer=args.tritonserver,
        log_verbose=args.log_verbose,
        exit_timeout_s=args.exit_timeout_secs,
    )
    return serve(options)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tricolor", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    classify = commands.add_parser(
        "classify",
        help="classify images with the running server",
        epilog=f"exit codes: 0 every image answered; {EXIT_REFUSED} the server refused some "
        f"(each with its reason); {EXIT_UNANSWERED} some got no answer (the server went away): "
        f"run again; {EXIT_NO_SERVER} no server; {EXIT_USAGE} usage (no such path, no image); "
        f"1 an unexpected failure (a bug: the traceback is printed); {EXIT_INTERRUPTED} / 143 "
        "after Ctrl-C / SIGTERM",
    )
    classify.add_argument("images", nargs="+", metavar="PATH", help="image files or folders")
    classify.add_argument(
        "--url", help=f"server HOST:PORT (where clients look: {SERVER_ADDRESS_RULE})"
    )
    classify.add_argument("--protocol", choices=PROTOCOLS, default="grpc")
    classify.add_argument("--json", action="store_true", help="print one JSON array")
    classify.add_argument("--concurrency", type=int, default=4, help="requests in flight")
    classify.add_argument("--timeout", type=float, default=60.0, help="seconds per request")
    classify.set_defaults(handler=command_classify)

    serve_parser = commands.add_parser("serve", help="run the embedded Triton in the foreground")
    serve_parser.add_argument(
        "--host",
        default=os.environ.get("TRITON_HOST", DEFAULT_BIND_ADDRESS),
        help="address to bind (default 127.0.0.1; 0.0.0.0 exposes it to the network)",
    )
    ports = Ports.from_env()
    for name, port, variable, default in (
        ("http", ports.http, "HTTP_PORT", DEFAULT_HTTP_PORT),
        ("grpc", ports.grpc, "GRPC_PORT", DEFAULT_GRPC_PORT),
        ("metrics", ports.metrics, "METRICS_PORT", DEFAULT_METRICS_PORT),
    ):
        serve_parser.add_argument(
            f"--{name}-port",
            type=int,
            default=port,
            help=f"{name.upper()} port (default: ${variable}, else {default})",
        )
    serve_parser.add_argument(
        "--exit-timeout-secs",
        type=int,
        default=30,
        help="on Ctrl-C / SIGTERM, wait this long for in-flight requests before stopping",
    )
    serve_parser.add_argument("--model-repository", default=str(MODEL_REPOSITORY))
    serve_parser.add_argument(
        "--config-name",
        default="cpu",
        help="Triton --model-config-name: `cpu` (embedded) or `default` (config.pbtxt, GPU)",
    )
    serve_parser.add_argument(
        "--tritonserver",
        choices=("auto", "embedded", "system"),
        default="auto",
        help="the wheel's binary (embedded), one on PATH (system), or embedded if installed",
    )
    serve_parser.add_argument(
        "--allow-model-control",
        action="store_true",
        help="let API clients load and unload models (off by default)",
    )
    serve_parser.add_argument("--log-verbose", type=int, default=0)
    serve_parser.set_defaults(handler=command_serve)

    add_catalogue_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
