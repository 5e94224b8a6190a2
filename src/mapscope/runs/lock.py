"""One writer per run folder: a lock file beside the folder, taken atomically, released on exit.

The lock guards the run's *name* (``runs/.cnn.lock`` guards ``runs/cnn``), not its contents, so
it also covers a folder that does not exist yet and a folder that is swapped for a new one.

On POSIX the lock is an ``flock`` on that file: the kernel drops it when the holder dies, so a
lock left by a killed process is stale by construction and the next writer simply takes it. The
file holds the holder's PID so that a refused writer can say who holds the run. Elsewhere the
lock is the file itself, created with ``O_EXCL``; a lock whose PID no longer runs is stale and
is taken over.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from mapscope.errors import RunError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]


def lock_path(run_dir: str | Path) -> Path:
    run_dir = Path(run_dir)
    return run_dir.parent / f".{run_dir.name}.lock"


def _holder(path: Path) -> str:
    """What the lock file says of its holder: "PID on HOST", or "" when unreadable."""
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError:
        return ""


def _refuse(run_dir: Path, path: Path) -> RunError:
    holder = _holder(path)
    return RunError(
        f"{run_dir} is being written by {f'process {holder}' if holder else 'another process'} "
        f"(lock {path}); wait for it to finish or stop it, or write to another --out."
    )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists but belongs to someone else
        return True
    return True


@contextlib.contextmanager
def locked(run_dir: str | Path) -> Iterator[Path]:
    """Hold the run folder ``run_dir`` for writing; refuse at once if another process holds it."""
    run_dir = Path(run_dir)
    path = lock_path(run_dir)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunError(f"cannot create the folder {path.parent} ({exc.strerror}).") from exc
    me = f"{os.getpid()} on {socket.gethostname()}"
    if fcntl is None:
        with _exclusive_file(run_dir, path, me):
            yield path
        return
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as exc:
            raise RunError(f"cannot create the lock {path} ({exc.strerror}).") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise _refuse(run_dir, path) from None
        # the previous holder may have removed the file between our open and our flock; then we
        # hold a lock on a file nobody else will ever open: try again on the new one
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, me.encode())
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        os.close(fd)


@contextlib.contextmanager
def _exclusive_file(run_dir: Path, path: Path, me: str) -> Iterator[None]:
    for _ in range(2):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            break
        except FileExistsError:
            pid = _holder(path).partition(" ")[0]
            if pid.isdigit() and not _pid_alive(int(pid)):
                path.unlink(missing_ok=True)  # stale: its holder is gone
                continue
            raise _refuse(run_dir, path) from None
    else:
        raise _refuse(run_dir, path)
    try:
        os.write(fd, me.encode())
        os.close(fd)
        yield
    finally:
        path.unlink(missing_ok=True)
