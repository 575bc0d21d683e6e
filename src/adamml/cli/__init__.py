"""The `adamml` command line: `main` builds the parser; each command is one module here (argument parsing and
printing only; the work is done by the library modules they call)."""

from adamml.cli.main import main

__all__ = ["main"]
