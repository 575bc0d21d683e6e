"""The `adamml` command line: one sub-command per job (see docs/cli.md).

Building the parser imports only the command modules, which import nothing heavy (torch, OpenCV, matplotlib)
at module level: `adamml --help`, `--version` and `COMMAND --help` answer at once, and a command imports what it
needs when it runs. Errors a user can fix (`adamml.errors.UserError` and the other input errors below) end as
``adamml: error: MESSAGE`` with exit code 2; ``adamml --debug COMMAND ...`` shows their traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from adamml import __version__
from adamml.cli.arguments import claimed_outputs
from adamml.errors import UserError

# Each module has `register(subparsers)`, which adds its sub-command and sets `func` (args -> exit code); in
# the order `adamml --help` lists them
COMMAND_MODULES: tuple[str, ...] = (
    "adamml.cli.prepare",
    "adamml.cli.synth",
    "adamml.cli.train",
    "adamml.cli.evaluate",
    "adamml.cli.calibrate",
    "adamml.cli.predict",
    "adamml.cli.bench",
    "adamml.cli.export",
    "adamml.cli.flops",
    "adamml.cli.compare",
    "adamml.cli.convert",
    "adamml.cli.demo",
    "adamml.cli.report",
)
EXIT_USER_ERROR = 2  # as argparse exits on a bad argument


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="adamml",
        description="Adaptive multi-modal video recognition (AdaMML, ICCV 2021).",
    )
    parser.add_argument("--version", action="version", version=f"adamml {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def input_errors() -> tuple[type[BaseException], ...]:
    """The exception classes that mean bad input (a message for the user), not a bug."""
    errors: list[type[BaseException]] = [UserError]
    # defined where the input is read; only modules already imported can have raised
    for module, name in (("adamml.data.layout", "StoreError"), ("adamml.prepare.importers", "AnnotationError"),
                         ("adamml.prepare.decode", "VideoError")):
        if module in sys.modules:
            errors.append(getattr(sys.modules[module], name))
    return tuple(errors)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        claimed_outputs(args)
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except OSError as error:  # a file that cannot be read or written (permissions, a full disk, a read-only folder)
        if args.debug:
            raise
        where = f"{error.filename}: " if error.filename else ""
        print(f"adamml: error: {where}{error.strerror or error}", file=sys.stderr)
        return EXIT_USER_ERROR
    except Exception as error:
        if args.debug or not isinstance(error, input_errors()):
            raise
        print(f"adamml: error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR


if __name__ == "__main__":
    sys.exit(main())
