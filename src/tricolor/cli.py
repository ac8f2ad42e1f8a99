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

from tricolor.client import PROTOCOLS, Classification, TricolorClient
from tricolor.launcher import ServerOptions, serve
from tricolor.settings import (
    DEFAULT_BIND_ADDRESS,
    DEFAULT_GRPC_PORT,
    DEFAULT_HTTP_PORT,
    DEFAULT_METRICS_PORT,
    MODEL_REPOSITORY,
    Ports,
    default_triton_url,
)
from tricolor.walk import find_images
from tricolor.weights import random_weights_warning


def default_url(protocol: str) -> str:
    """`TRITON_URL` is the gRPC address; HTTP defaults to the local `HTTP_PORT`."""
    if protocol == "grpc":
        return default_triton_url()
    return f"localhost:{Ports.from_env().http}"


def swatch(hex_code: str, name: str) -> Text:
    return Text.assemble(("  ", f"on {hex_code.lower()}"), f" {hex_code} {name}")


def render_table(results: list[Classification], console: Console) -> None:
    for result in results:
        if result.error is not None:
            console.print(
                Text.assemble((result.path, "bold red"), f": refused: {result.error}"),
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


def warn_about_weights(weights: set[str]) -> None:
    """On stderr, whatever the output format: `--json` on stdout stays parseable."""
    for warning in sorted(filter(None, map(random_weights_warning, weights))):
        Console(stderr=True).print(
            Text(f"tricolor: WARNING: {warning}", style="bold yellow"), soft_wrap=True
        )


def no_server_hint(url: str, protocol: str) -> str:
    return (
        f"tricolor: no ready Triton with `classify` at {url} ({protocol}); start one with "
        "`make serve`, or point to a running one with --url HOST:PORT or TRITON_URL"
    )


def command_classify(args: argparse.Namespace) -> int:
    try:
        paths = [found.path for found in find_images(args.images)]
    except FileNotFoundError as exc:
        print(f"tricolor: {exc}", file=sys.stderr)
        return 2
    if not paths:
        print(f"tricolor: no image files in {', '.join(args.images)}", file=sys.stderr)
        return 2
    url = args.url or default_url(args.protocol)
    try:
        client = TricolorClient(url, protocol=args.protocol, timeout_s=args.timeout)
    except ImportError as exc:
        print(f"tricolor: {exc}", file=sys.stderr)
        return 2
    with client:
        if not client.is_ready():
            print(no_server_hint(url, args.protocol), file=sys.stderr)
            return 3
        results = client.classify_many(
            [path.read_bytes() for path in paths], [str(path) for path in paths], args.concurrency
        )
    if args.json:
        print(json.dumps([result.to_json() for result in results], indent=2))
    else:
        render_table(results, Console())
    warn_about_weights({result.weights for result in results if result.error is None})
    return 1 if any(result.error for result in results) else 0


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

    classify = commands.add_parser("classify", help="classify images with the running server")
    classify.add_argument("images", nargs="+", metavar="PATH", help="image files or folders")
    classify.add_argument("--url", help="server host:port (default: TRITON_URL or localhost)")
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

    from tricolor.catalogue.commands import add_catalogue_commands  # noqa: PLC0415 (imports cli)

    add_catalogue_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
