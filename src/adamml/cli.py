"""The `adamml` command line: one sub-command per job (see docs/cli.md)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

# Each entry adds one sub-command: a function (subparsers) -> None that registers its parser and
# sets `func` (args -> exit code) through `set_defaults`.
Registrar = Callable[[argparse._SubParsersAction], None]


def _registrars() -> list[Registrar]:
    from adamml.bench import register as bench
    from adamml.compare import register as compare
    from adamml.demo import register as demo
    from adamml.evaluate import register as evaluate
    from adamml.export import register as export
    from adamml.flops_cli import register as flops
    from adamml.predict import register as predict
    from adamml.prepare.command import register as prepare
    from adamml.synth_cli import register as synth
    from adamml.train.command import register as train

    registrars: list[Registrar] = [prepare, synth, train, evaluate, predict, bench, export, flops, compare, demo]
    return registrars


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="adamml",
        description="Adaptive multi-modal video recognition (AdaMML, ICCV 2021).",
    )
    from adamml import __version__

    parser.add_argument("--version", action="version", version=f"adamml {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for register in _registrars():
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
