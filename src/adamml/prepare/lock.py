"""One writer at a time: an advisory lock (`flock`) on `STORE/.lock` held while `prepare` writes a store.

A whole-list run and `--merge` hold it exclusively. Shard runs (`--shard I/N`, one per machine) hold it shared,
so they run side by side, and each also holds `STORE/.lock.shard-I-of-N` exclusively, so one shard is never
prepared twice at once. A run that cannot get its lock is refused with the holder's process id (or waits, with
`wait=True`). The kernel releases a lock when its holder dies, even by kill -9: a crashed run never leaves the
store locked.
"""

from __future__ import annotations

import fcntl
import os
import socket
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from adamml.data.layout import LOCK_NAME, StoreError


class StoreBusy(StoreError):
    """Another run holds the store's lock."""


@contextmanager
def store_lock(store: Path, shard: tuple[int, int] | None = None, wait: bool = False,
               on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold the lock(s) a run of `store` (or of one shard of it) needs, for the duration of the block."""
    with ExitStack() as stack:
        if shard is None:
            stack.enter_context(_flock(store / LOCK_NAME, fcntl.LOCK_EX, wait, on_wait, str(store)))
        else:
            stack.enter_context(_flock(store / LOCK_NAME, fcntl.LOCK_SH, wait, on_wait, str(store)))
            name = f"{LOCK_NAME}.shard-{shard[0]}-of-{shard[1]}"
            stack.enter_context(_flock(store / name, fcntl.LOCK_EX, wait, on_wait,
                                       f"shard {shard[0]}/{shard[1]} of {store}"))
        yield


@contextmanager
def _flock(path: Path, kind: int, wait: bool, on_wait: Callable[[str], None] | None, what: str) -> Iterator[None]:
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except PermissionError:  # a lock file made by a team-mate: locking needs only read access
        fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, kind | fcntl.LOCK_NB)
        except BlockingIOError:
            busy = f"{what} is being prepared by another run ({_holder(fd)}, lock file {path})"
            if not wait:
                raise StoreBusy(f"{busy}; wait for it to finish, or pass --wait") from None
            if on_wait:
                on_wait(f"{busy}; waiting for it")
            fcntl.flock(fd, kind)
        _record_holder(fd)
        yield
    finally:
        os.close(fd)  # releases the lock


def _holder(fd: int) -> str:
    try:
        text = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
    except OSError:
        text = ""
    return text or "holder unknown"


def _record_holder(fd: int) -> None:
    """Write who holds the lock into the lock file, for the message another run prints."""
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
    except OSError:
        pass  # read-only lock file: the lock still holds, only the message is poorer
