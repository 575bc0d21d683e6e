"""Errors a user can fix: bad input, named by its file, line or key.

`adamml.cli.main` prints them as ``adamml: error: MESSAGE`` and exits with code 2; the traceback is shown only
with ``adamml --debug``. Values quoted in a message go through `shorten`, so that a huge value (a YAML alias
bomb, a long list) never floods the terminal or memory.
"""

from __future__ import annotations

import reprlib
from typing import Any

MESSAGE_VALUE_CHARS = 80  # longest quoted value in an error message

_repr = reprlib.Repr()
_repr.maxlevel = 3
_repr.maxlist = _repr.maxtuple = _repr.maxdict = _repr.maxset = 6
_repr.maxstring = _repr.maxother = MESSAGE_VALUE_CHARS


class UserError(Exception):
    """Input that cannot be used as given; the message says which file, line or key and why."""


def shorten(value: Any, limit: int = MESSAGE_VALUE_CHARS) -> str:
    """The repr of `value`, bounded in work and cut to about `limit` characters."""
    text = _repr.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
