"""Files replaced atomically: written beside the target under a unique name, then renamed over it, so a reader
sees the old file or the new one, never half of one (manifests, store settings, checkpoints).

The temporary file is created the way `open` creates files (mode 0666 less the umask), not 0600 as
`tempfile.mkstemp` would: a store or run folder shared by a team stays readable by the team.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


@contextmanager
def atomic_file(path: Path, binary: bool = False, errors: str = "strict") -> Iterator[IO]:
    """A new file handle whose content replaces `path` when the block ends without an exception; text is UTF-8
    (`errors` as for `open`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies, as for open()
    try:
        text = {} if binary else {"encoding": "utf-8", "errors": errors}
        with open(fd, "wb" if binary else "w", **text) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside `path` (same suffix) for a writer that takes a file name (e.g. a video muxer); it
    replaces `path` when the block ends without an exception."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{uuid.uuid4().hex[:12]}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str, errors: str = "strict") -> None:
    """Replace `path` with `text` (UTF-8) atomically."""
    with atomic_file(path, errors=errors) as handle:
        handle.write(text)
