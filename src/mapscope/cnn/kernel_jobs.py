"""The fast path's numba kernels as a list of jobs that other processes share.

A training must not compile its own kernels (numba's code run in the process that compiled it
rounds differently from the same code loaded from the cache: ``precompile.compile_apart``), so
other processes compile them first, and the sooner they finish, the less a first training
waits. Shared out layer by layer, the default network's bf16 kernels left the first layer's
two (1.8 and 1.9 s of 5.5 s on the Intel Xeon of 2026-12-07) in one process; shared out kernel
by kernel, two processes end together.

Each kernel factory (``conv_pool_kernels.first_layer_kernels`` and the like) is decorated with
``kernel_factory``: it returns its kernels as before, except inside ``recording()``, where
calling a kernel records a ``Job`` (the factory, its arguments, the kernel and the numba types
of what it was handed) and runs nothing. A pass over a network's fast path inside
``recording()`` therefore lists every kernel its training calls, with the exact signatures,
in milliseconds. ``work`` then compiles the jobs of a list written to a file, each job taken by
whichever process claims it first (an exclusively created file), so that two or more
processes share them however long each takes. A worker (``python -m mapscope.cnn.kernel_jobs
FILE``) imports numba and the kernel modules, not torch: it is ready in about 0.5 s where a
process that imports torch takes 1.7 s.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mapscope.cnn.background import alive
from mapscope.io import read_json, write_json

if TYPE_CHECKING:
    from numba.core import types

# the modules whose kernels jobs name: a worker imports them while it waits for its list
KERNEL_MODULES = ("mapscope.cnn.conv_pool_kernels", "mapscope.cnn.winograd_kernels")

_recorded: dict[Job, None] | None = None  # the jobs of a recording(), in order; None outside
# what each kernel factory made, per arguments: made once (``kernel_factory``), listed by
# ``jobs_made``
_made: dict[tuple[Callable, tuple[Any, ...]], Any] = {}


@dataclass(frozen=True)
class Job:
    """One kernel to compile for one signature: ``factory(*args).<kernel>`` in ``module``
    (the factory itself where ``kernel`` is empty), for arguments of ``signature`` (each
    ``[kind, ...]`` as ``_encode`` writes a numba type)."""

    module: str
    factory: str
    args: tuple[Any, ...]
    kernel: str
    signature: tuple[tuple[Any, ...], ...]
    slow: bool = field(default=False, compare=False)  # unrolled throughout: slow to compile

    def compile(self) -> None:
        """Compile (or load from numba's cache) this kernel for this signature."""
        made = getattr(importlib.import_module(self.module), self.factory)(*self.args)
        kernel = getattr(made, self.kernel) if self.kernel else made
        kernel.compile(tuple(_decode(part) for part in self.signature))


def kernel_factory(slow_to_compile: bool = False) -> Callable[[Callable], Callable]:
    """Decorate a function that makes numba kernels from some sizes (a tuple of them, or one):
    made once per arguments, as ``functools.cache`` would, and recorded inside
    ``recording()``. ``slow_to_compile`` marks kernels that unroll every loop over the window
    and filter (a few seconds each): the jobs list them first, so that a process does not
    start one when the others are nearly done."""

    def decorate(factory: Callable) -> Callable:
        @functools.wraps(factory)
        def kernels(*args):
            real = _made.get((factory, args))
            if real is None:
                real = _made[(factory, args)] = factory(*args)
            if _recorded is None:
                return real

            def stand_in(kernel: str) -> _Recorder:
                job = Job(factory.__module__, factory.__name__, args, kernel, (), slow_to_compile)
                return _Recorder(job)

            if isinstance(real, tuple):  # a NamedTuple of kernels
                return type(real)(*(stand_in(name) for name in real._fields))
            return stand_in("")

        return kernels

    return decorate


@dataclass(frozen=True)
class _Recorder:
    """Stands in for a kernel inside ``recording()``: a call records ``job`` with the types of
    what it was handed, and runs nothing."""

    job: Job  # its signature still empty

    def __call__(self, *values: Any) -> None:
        import numba

        assert _recorded is not None, "a kernel's stand-in was called outside recording()"
        signature = tuple(_encode(numba.typeof(value)) for value in values)
        _recorded[dataclasses.replace(self.job, signature=signature)] = None


@contextlib.contextmanager
def recording() -> Iterator[list[Job]]:
    """Inside: calls to kernels run nothing and are recorded. The list yielded is filled when
    the block ends: each job once, the slow-to-compile ones first, otherwise in call order.
    What the kernels would have written stays as it was allocated (garbage): the pass only
    has to make the same calls with the same types, which no kernel's output decides."""
    global _recorded
    if _recorded is not None:
        raise RuntimeError("recording() does not nest")
    jobs: list[Job] = []
    _recorded = {}
    try:
        yield jobs
    finally:
        listed, _recorded = list(_recorded), None
        jobs.extend(sorted(listed, key=lambda job: not job.slow))  # stable: call order kept


def jobs_made() -> list[Job]:
    """Every kernel this process has made, once per signature numba holds for it (compiled
    here or loaded from its cache): the jobs of whatever ran, for a cache of kernels beyond
    the default network's (the test suite's, in ``tests/kernels_of_tests.py``)."""
    jobs = []
    for (factory, args), real in _made.items():
        named = real._asdict().items() if isinstance(real, tuple) else [("", real)]
        for name, kernel in named:
            for signature in getattr(kernel, "signatures", ()):
                encoded = tuple(_encode(of) for of in signature)
                jobs.append(Job(factory.__module__, factory.__name__, args, name, encoded))
    return jobs


def _encode(of: types.Type) -> tuple[Any, ...]:
    """A numba argument type as JSON can hold it: arrays, and the scalars kernels take."""
    from numba.core import types

    if isinstance(of, types.Array):
        return ("array", str(of.dtype), of.ndim, of.layout, of.mutable, of.aligned)
    if isinstance(of, types.Boolean | types.Integer | types.Float):
        return ("scalar", str(of))
    raise TypeError(f"a kernel was handed a {of}; jobs know arrays, integers, floats and bools")


def _decode(part: tuple[Any, ...] | list[Any]) -> types.Type:
    from numba.core import types

    kind, *rest = part
    if kind == "array":
        dtype, ndim, layout, mutable, aligned = rest
        return types.Array(
            getattr(types, dtype), ndim, layout, readonly=not mutable, aligned=aligned
        )
    if kind == "scalar":
        return getattr(types, rest[0])
    raise ValueError(f"unknown argument kind {kind!r} in a kernel job")


def write_jobs(jobs: list[Job], path: Path) -> None:
    """Write ``jobs`` to ``path`` whole or not at all (a waiting worker reads it once it is
    there)."""
    write_json(path, job_list(jobs))


def read_jobs(path: Path) -> list[Job]:
    return read_job_list(read_json(path))


def job_list(jobs: list[Job]) -> list[dict[str, Any]]:
    """``jobs`` as JSON holds them (the jobs file, the shipped cache's manifest)."""
    return [
        {
            "module": job.module,
            "factory": job.factory,
            "args": list(job.args),
            "kernel": job.kernel,
            "signature": [list(part) for part in job.signature],
        }
        for job in jobs
    ]


def read_job_list(listed: list[dict[str, Any]]) -> list[Job]:
    return [
        Job(
            entry["module"],
            entry["factory"],
            tuple(entry["args"]),
            entry["kernel"],
            tuple(tuple(part) for part in entry["signature"]),
        )
        for entry in listed
    ]


def work(path: Path, waiting_for: int | None = None, limit: float = 600.0) -> int:
    """Compile the jobs listed in ``path`` that no other process has claimed, in the list's
    order; returns how many this process compiled. With ``waiting_for`` (a process id), wait
    for the list to appear while that process lives (it is still working out the jobs), at
    most ``limit`` seconds. A job's claim file holds its claimer's pid, its done file appears
    once it is compiled (``wait_until_done``)."""
    began = time.monotonic()
    while not path.exists():
        gone = waiting_for is not None and not alive(waiting_for)
        if waiting_for is None or gone or time.monotonic() - began > limit:
            return 0
        time.sleep(0.02)
    compiled = 0
    skip_loop_strength_reduction()
    for i, job in enumerate(read_jobs(path)):
        if not _claimed(path, i):
            continue
        job.compile()
        _done(path, i).touch()
        compiled += 1
    return compiled


def skip_loop_strength_reduction() -> None:
    """Turn off LLVM's loop strength reduction for the rest of this process (a process that
    compiles kernels; a training, which loads them, keeps it). It rewrites how loops step
    through addresses, never the arithmetic, and on the unrolled Winograd transforms it took
    most of the time LLVM spent making machine code: 1.3 of 1.6 s for one kernel's object
    code, and the default network's float32 kernels compiled in 57 s in all instead of 92
    (AMD EPYC, AVX2, one process). A training loaded the same bits and took the same time with
    the kernels compiled either way."""
    import llvmlite.binding as llvm

    llvm.set_option("mapscope", "-disable-lsr")


def start_worker(path: Path, waiting_for: int | None = None) -> subprocess.Popen:
    """A process (``python -m mapscope.cnn.kernel_jobs``) that works on the jobs of ``path``
    (``work``; with ``waiting_for``, once that process has written them), its output
    discarded: a job it fails leaves no done file, and whoever loads the kernels next
    compiles it."""
    command = [sys.executable, "-m", "mapscope.cnn.kernel_jobs", str(path)]
    command += [] if waiting_for is None else ["--waiting-for", str(waiting_for)]
    nothing = subprocess.DEVNULL
    return subprocess.Popen(command, stdin=nothing, stdout=nothing, stderr=nothing)


def wait_until_done(path: Path, children: Sequence[subprocess.Popen] = (), poll=0.02) -> bool:
    """Wait until every job in ``path`` is compiled or its claimer has ended; returns whether
    all were compiled (a job left undone is compiled by whoever loads the kernels next).
    ``children``: the workers this process started (an ended child counts as alive until it
    is waited for)."""
    ours = {child.pid: child for child in children}

    def running(pid: int) -> bool:
        return ours[pid].poll() is None if pid in ours else alive(pid)

    all_done = True
    for i in range(len(read_jobs(path)) if path.exists() else 0):
        while not _done(path, i).exists():
            try:
                claimer = int(_claim(path, i).read_text())
            except OSError:  # nobody took it
                all_done = False
                break
            if running(claimer):
                time.sleep(poll)
                continue
            all_done = _done(path, i).exists() and all_done
            break
    return all_done


def _claimed(path: Path, i: int) -> bool:
    """Claim job ``i`` for this process unless another has: its claim file appears whole,
    holding this process's id (written aside, then linked into place, which fails where the
    claim exists), so that nobody ever reads a claim without its claimer."""
    mine = path.with_name(f"{path.name}.{i}.claim-{os.getpid()}")
    mine.write_text(str(os.getpid()))
    try:
        os.link(mine, _claim(path, i))
    except FileExistsError:
        return False
    finally:
        mine.unlink()
    return True


def _claim(path: Path, i: int) -> Path:
    return path.with_name(f"{path.name}.{i}.claim")


def _done(path: Path, i: int) -> Path:
    return path.with_name(f"{path.name}.{i}.done")


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m mapscope.cnn.kernel_jobs",
        description="Compile the kernel jobs listed in FILE that no other process has taken.",
    )
    parser.add_argument("file", metavar="FILE", type=Path)
    parser.add_argument(
        "--waiting-for",
        metavar="PID",
        type=int,
        help="wait for FILE while process PID lives (it is writing the list)",
    )
    args = parser.parse_args(argv)
    for module in KERNEL_MODULES:  # while the list is being written
        importlib.import_module(module)
    work(args.file, waiting_for=args.waiting_for)


if __name__ == "__main__":
    main()
