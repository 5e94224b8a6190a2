"""Running the points of a sweep on Dask distributed: a local cluster sized to the machine, or
an existing cluster given by its scheduler's address.

Why Dask: it starts a local cluster of worker processes in one call, the same code sends the
work to a scheduler with workers on many machines, each finished task comes back as it ends
(so one failed point is reported and the others go on), and it needs no service beyond
``pip install dask distributed``. A point is one task on a worker with one task slot; torch,
numba and BLAS inside it use ``threads`` threads, so workers x threads never exceeds the cores.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from mapscope.cores import usable_cores
from mapscope.errors import ConfigError
from mapscope.progress import bar


@dataclass(frozen=True)
class Task:
    name: str
    args: tuple


@dataclass(frozen=True)
class Done:
    name: str
    value: Any  # what the task returned, or None when it failed
    error: str | None
    seconds: float


def local_layout(n_tasks: int, workers: int | None) -> tuple[int, int]:
    """(worker processes, threads per run) for a local cluster: by default one worker per core,
    never more workers than tasks. Two 1-epoch CNN runs (20000 images) took 16.0 s two at a
    time on one thread each, 22.6 s one after the other on two threads (2-core AMD EPYC)."""
    cores = usable_cores()
    if workers is not None and workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}.")
    chosen = workers or min(cores, max(1, n_tasks))
    return chosen, max(1, cores // chosen)


def _timed(function: Callable[..., Any], *args: Any) -> tuple[Any, float]:
    began = time.perf_counter()
    value = function(*args)
    return value, time.perf_counter() - began


def run_tasks(
    function: Callable[..., Any],
    tasks: list[Task],
    scheduler: str | None = None,
    workers: int = 1,
) -> Iterator[Done]:
    """``function(*task.args)`` for every task on the cluster, yielding each as it finishes
    (a task that raises yields its error; the others go on)."""
    import dask
    from dask.distributed import Client, LocalCluster, as_completed

    if not tasks:
        return
    quiet = logging.CRITICAL  # a failed point is reported in its row, not as a worker traceback
    if scheduler:
        try:
            client = Client(scheduler, timeout="20s")
        except (OSError, TimeoutError, ValueError) as exc:
            raise ConfigError(
                f"--scheduler {scheduler}: no Dask scheduler answered ({exc}); start one with "
                "`dask scheduler` and check the address it prints."
            ) from exc
        cluster = None
    else:
        # Dask's nanny starts workers with MALLOC_TRIM_THRESHOLD_=65536 (and one-thread BLAS):
        # every large tensor then goes back to the system and faults in again, and a CNN epoch
        # took 1.8x as long (2.5 s against 4.4 s, 20000 images, 2 threads). The runs set their
        # own thread counts, so workers start with this process' environment.
        with dask.config.set({"distributed.nanny.pre-spawn-environ": {}}):
            cluster = LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=True,
                # a free port: with None the scheduler's HTTP server still asks for 8787 and
                # warns when another cluster holds it
                dashboard_address=":0",
                silence_logs=quiet,
            )
        client = Client(cluster)
    tag = uuid.uuid4().hex[:8]
    try:
        futures = {
            client.submit(
                _timed, function, *task.args, key=f"mapscope-{task.name}-{tag}", pure=False
            ): task.name
            for task in tasks
        }
        for future in bar(as_completed(futures), "sweep points", total=len(tasks), unit="run"):
            name = futures[future]
            try:
                value, seconds = future.result()
                yield Done(name, value, None, seconds)
            except Exception as exc:  # a point's failure is its row in the table
                yield Done(name, None, f"{type(exc).__name__}: {exc}", float("nan"))
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
