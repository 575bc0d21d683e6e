"""Argument types shared by the commands: a bad number is refused while parsing, with argparse's message and
exit code 2, before any work starts."""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable
from pathlib import Path

from adamml.errors import UserError


def probability(text: str) -> float:
    """A finite number in [0, 1] (a decision threshold)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number in [0, 1]")
    return value


def probabilities(text: str) -> list[float]:
    """A comma-separated list of `probability` values (a threshold sweep)."""
    return [probability(part.strip()) for part in text.split(",")]


def positive_int(text: str) -> int:
    """An integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


class OutputFile(type(Path())):
    """A path the command writes a file to (see `output_file`); `claimed_outputs` checks it is not an input."""


class OutputFolder(type(Path())):
    """A folder the command writes into (see `output_folder`)."""


def output_file(text: str) -> Path:
    """A file to write at the end of a command: its folder is created now (not after the work), and a path
    that is an existing folder is refused."""
    path = OutputFile(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder, not a file")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise argparse.ArgumentTypeError(f"cannot create the folder of {text}: {error.strerror}") from None
    return path


def output_folder(text: str) -> Path:
    """A folder to write into: an existing file of that name is refused before any work (`claimed_outputs`)."""
    return OutputFolder(text)


def _paths(value) -> list[Path]:
    if isinstance(value, Path):
        return [value]
    if isinstance(value, (list, tuple)):
        return [v for v in value if isinstance(v, Path)]
    return []


def _same(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def claimed_outputs(args: argparse.Namespace) -> None:
    """Refuse, before any work, an output folder that is a file, and an output that is one of the command's inputs
    (`predict V.mp4 --json V.mp4` would overwrite the video)."""
    outputs = [(name, p) for name, value in vars(args).items() for p in _paths(value)
               if isinstance(p, (OutputFile, OutputFolder))]
    inputs = [(name, p) for name, value in vars(args).items() for p in _paths(value)
              if not isinstance(p, (OutputFile, OutputFolder))]
    for out_name, out in outputs:
        if isinstance(out, OutputFolder) and out.exists() and not out.is_dir():
            raise UserError(f"{out}: exists and is not a folder (--{out_name.replace('_', '-')} names the folder to "
                            "write into; nothing was written)")
        for in_name, source in inputs:
            if _same(out, source):
                flag = "--" + out_name.replace("_", "-")
                raise UserError(f"{flag} {out} is also an input ({in_name.replace('_', '-')}): writing it would "
                                "destroy that input; give another path (nothing was written)")
    for name, value in vars(args).items():  # plain paths from here on (nothing downstream needs to know)
        if isinstance(value, (OutputFile, OutputFolder)):
            setattr(args, name, Path(value))


def add_precision_argument(parser: argparse.ArgumentParser) -> None:
    """``--precision`` of the inference commands (eval, predict, bench): see `adamml.runtime.precision`."""
    from typing import get_args

    from adamml.config import Precision

    parser.add_argument("--precision", default="fp32", choices=get_args(Precision),
                        help="arithmetic of the networks: fp32, or bf16 / fp16 under autocast (fastest on GPUs)")


def number(kind: type, low: float, high: float | None = None, above: bool = False) -> Callable[[str], float]:
    """An argparse type: a finite `kind` (int or float) >= `low` (> `low` with `above`) and <= `high`."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
        if not math.isfinite(value) or value < low or (above and value == low) or (high is not None and value > high):
            bounds = f"{'above' if above else 'at least'} {low:g}" + (f" and at most {high:g}" if high is not None else "")
            raise argparse.ArgumentTypeError(f"{text!r}: must be a finite number {bounds}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse
