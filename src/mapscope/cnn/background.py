"""Compiling the CPU training kernels in the background, before a first training needs them.

numba compiles the CNN's training kernels on a machine's first training and caches them beside
the package (5-36 s on 2 cores, by CPU and precision). ``make setup`` compiles them ahead; a
plain ``pip install`` cannot run anything, so the first ``mapscope`` command (``cli/entry.py``:
any but a sweep, an autoencoder or MLP training, or a CNN training of other kernels than a
default one's) starts the compile of what a default training takes on this machine as a
separate, lowered-priority process, before its own imports, and goes on. A training that starts
while it runs waits for it, then loads the cache; with none, the training has its kernels
compiled apart (``precompile.compile_apart``). Either way the training loads them from the
cache: the first run's bits are every later run's.

Whether this install has been compiled for is kept in a small marker file beside numba's cache
(the package's ``cnn/__pycache__``, or the user cache folder where that is read-only), named by
what numba's cache depends on: the Python, numba and mapscope versions, the CPU, and the kernel
sources' size and time; a compile that failed leaves its traceback there and is not started
again. ``MAPSCOPE_BACKGROUND_COMPILE=0`` turns the background compile off.
POSIX only (it detaches with a new session); elsewhere the first training compiles.

This module imports neither torch nor numba: every command's start runs it.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from importlib import metadata
from pathlib import Path

from mapscope import __version__
from mapscope.cores import usable_cores

ENV = "MAPSCOPE_BACKGROUND_COMPILE"
SOURCES = (
    "conv_pool.py",
    "conv_pool_kernels.py",
    "winograd.py",
    "winograd_kernels.py",
    "kernel_jobs.py",
    "kernel_cache.py",
    "precompile.py",
)
HERE = Path(__file__).resolve().parent


def state_dir() -> Path:
    """Beside numba's cache: in ``NUMBA_CACHE_DIR`` where that is set, else the package's
    ``__pycache__`` where it can be written to, else the user cache."""
    numba_cache = os.environ.get("NUMBA_CACHE_DIR")
    beside = Path(numba_cache) if numba_cache else HERE / "__pycache__"
    try:
        beside.mkdir(parents=True, exist_ok=True)
        if os.access(beside, os.W_OK):
            return beside
    except OSError:
        pass
    from mapscope.data.cache import user_cache_dir

    fallback = user_cache_dir() / "kernels"
    fallback.mkdir(parents=True, exist_ok=True)
    return fallback


@functools.cache
def install_key() -> str:
    """What numba's cache of the kernels depends on, hashed: a new CPU, Python, numba or
    mapscope version, another CPU for numba to target (``NUMBA_CPU_NAME``, or the level whose
    kernels are shipped), or an edited kernel source gives a new key (and a new compile)."""
    from mapscope.cnn.kernel_cache import numba_target  # neither torch nor numba

    parts = [__version__, sys.version, platform.machine(), _cpu(), numba_target()]
    try:
        parts.append(metadata.version("numba"))
    except metadata.PackageNotFoundError:
        parts.append("no numba")
    for name in SOURCES:
        stat = (HERE / name).stat()
        parts.append(f"{name}:{stat.st_size}:{stat.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def _cpu() -> str:
    """The CPU's model and instruction-set flags (Linux), else what the platform says."""
    try:
        first = Path("/proc/cpuinfo").read_text(errors="replace").split("\n\n")[0]
    except OSError:
        return platform.processor()
    wanted = ("vendor_id", "cpu family", "model", "model name", "flags", "Features", "CPU part")
    lines = [line for line in first.splitlines() if line.split(":")[0].strip() in wanted]
    return "\n".join(lines)


STALE_AFTER = 900.0  # seconds: a pid file this old is a crashed compile's, not a running one


def stem() -> Path:
    """This install's marker files, without their suffix: ``.done``, ``.pid``, ``.log``."""
    return state_dir() / f"kernels-{install_key()}"


def marker(what: str) -> Path:
    """The marker file saying that the kernels of ``what`` (a network, precision and
    instruction set, as ``precompile.compiled_for`` names them) are in numba's cache."""
    digest = hashlib.sha256(what.encode()).hexdigest()[:16]
    return state_dir() / f"kernels-{install_key()}-{digest}.done"


def mark_compiled(at: Path | None = None) -> None:
    """Record that this install's kernels are compiled (the precompile calls this); where
    nothing can be written, later trainings load numba's cache all the same."""
    with contextlib.suppress(OSError):
        done = (at or stem()).with_suffix(".done")
        done.write_text(time.strftime("%Y-%m-%dT%H:%M:%S%z") + "\n")


def compiled() -> bool:
    try:
        return stem().with_suffix(".done").exists()
    except OSError:
        return False


def failed() -> bool:
    """A background compile of this install failed (its traceback is in the ``.failed`` file
    and the log); no command starts another, and a training compiles, and fails, itself."""
    return stem().with_suffix(".failed").exists()


def running() -> int | None:
    """The process id of this install's background compile while it runs, else None."""
    try:
        pid_file = stem().with_suffix(".pid")
        pid = int(pid_file.read_text().strip())
        stale = time.time() - pid_file.stat().st_mtime > STALE_AFTER
    except (OSError, ValueError):
        return None
    if stale or not alive(pid):
        with contextlib.suppress(OSError):
            pid_file.unlink(missing_ok=True)
        return None
    return pid


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):  # gone, or the number is someone else's
        return False
    return True


def start() -> Path | None:
    """Start the background compile unless it is done, running, turned off, or not possible
    here; returns its log file when it started one."""
    if os.environ.get(ENV, "1") == "0" or os.name != "posix":
        return None
    try:
        if compiled() or failed() or running() is not None:
            return None
        from mapscope.cnn import kernel_cache  # neither torch nor numba

        if kernel_cache.ships_here():  # the first training copies them into numba's cache
            mark_compiled()
            return None
        at = stem()
        with open(at.with_suffix(".log"), "w") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "mapscope.cnn.background", str(at)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # outlives this command; Ctrl-C here does not stop it
            )
        at.with_suffix(".pid").write_text(f"{process.pid}\n")
    except OSError:  # a read-only install and cache, no fork: the first training compiles
        return None
    return at.with_suffix(".log")


def wait(poll: float = 0.1, limit: float = STALE_AFTER) -> float:
    """Wait while this install's background compile runs; returns the seconds waited (0 when
    none was running). ``limit`` keeps a stuck one from holding a training forever."""
    pid = running()
    if pid is None:
        return 0.0
    began = time.perf_counter()
    while running() is not None and time.perf_counter() - began < limit:
        time.sleep(poll)
    # its pid file goes just before it exits; niced on a busy machine, it may wait for a core
    # to take that last step, and a training counting the free cores would count it as work
    while not _exited(pid) and time.perf_counter() - began < limit:
        time.sleep(poll / 10)
    return time.perf_counter() - began


def _exited(pid: int) -> bool:
    """Gone, or a zombie its parent has not reaped yet (Linux ``/proc``; elsewhere a process
    whose pid file is gone counts as ended)."""
    if not alive(pid):
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state in ("Z", "X")


def main(at: Path, nice: int = 10) -> None:
    """The detached process (``python -m mapscope.cnn.background MARKER``): its priority
    lowered by ``nice`` (the user's own work comes first), then the compile, and an exit at
    once after its pid file is gone. A training waits while that file is there and then counts
    the free cores; the interpreter's usual exit with torch and numba loaded kept a core busy
    for 0.65 s more (Intel Xeon), so a first training saw it and ran on one thread of two."""
    if hasattr(os, "nice"):
        os.nice(nice)
    run_in_background(at, _compile_with_a_helper)
    sys.stdout.flush()
    os._exit(0)


def _compile_with_a_helper() -> float:
    """A helper started at once where a second core is free (``kernel_jobs``: numba only,
    ready while this process imports torch and lists the jobs), then this process's share of
    the compile (``precompile.for_default_training``)."""
    from mapscope.cnn import kernel_jobs  # no torch, no numba

    with tempfile.TemporaryDirectory(prefix="mapscope-kernels-") as folder:
        jobs_file = Path(folder) / "jobs.json"
        helper = None
        if usable_cores() > 1:
            helper = kernel_jobs.start_worker(jobs_file, waiting_for=os.getpid())
        from mapscope.cnn import precompile

        return precompile.for_default_training(jobs_file, helper)


def run_in_background(at: Path, compile_for_this_machine) -> None:
    """The detached process's body: compile, mark ``at`` done (or failed, with the traceback),
    and remove its pid file whatever happens."""
    try:
        print(f"compiling the CPU training kernels in the background (pid {os.getpid()}) ...")
        seconds = compile_for_this_machine()
        mark_compiled(at)
        print(f"compiled in {seconds:.1f} s", flush=True)
    except BaseException:
        at.with_suffix(".failed").write_text(traceback.format_exc())
        raise
    finally:
        at.with_suffix(".pid").unlink(missing_ok=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
