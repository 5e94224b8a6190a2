"""Compile the CPU fast path's numba kernels ahead of the first training.

numba compiles each kernel the first time a layer shape meets it and caches the machine code on
disk beside the module. For the default network that first compile takes about 10 s for a bf16
training and 30-36 s for a float32 one (Winograd's kernels; 2 cores), which a newcomer's first
``mapscope cnn train`` would otherwise pay. On x86-64 CPUs with AVX2 the package ships them
compiled (``kernel_cache``), and a first training only copies them into numba's cache; on
others, and for networks of other shapes, numba compiles. ``make setup`` runs this module once
after installing; with pip alone, the first ``mapscope`` command runs it in the background for
the precision a default training takes where nothing is shipped (``background.py``), or run it
yourself::

    python -m mapscope.cnn.precompile

It trains nothing: one forward and backward pass of two random images through the default
network's fast path, in float32 and under bf16 autocast (both kernel variants), so that every
kernel a default training uses is compiled and cached. Later processes load the cache in well
under a second.

Which float32 path ``Conv2D_2`` takes depends on the instruction set torch runs at (Winograd's
pooled kernel below AVX-512, oneDNN's convolution and the pool kernel at AVX-512 and above; see
``winograd.pooled_pays``), and a process can be held below its CPU's (``ATEN_CPU_CAPABILITY``, as
the benchmarks emulate an AVX2-only CPU). Under bf16 the backward of ``Conv2D_2`` is oneDNN's
where it has AMX and the sparse kernels' elsewhere (``conv_pool.dense_backward_pays``). Run as a
module, it compiles every one of these paths, so that a process held below its CPU's
instruction set compiles nothing in its first training either.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from mapscope.cnn import background, kernel_cache, kernel_jobs
from mapscope.cnn.build import Network, build
from mapscope.cnn.fast import (
    ConvBeforeFlatten,
    FusedConvPool,
    fast_input_shape,
    fast_layers,
    fast_path,
)
from mapscope.cnn.kernel_jobs import Job
from mapscope.cnn.spec import NetSpec, default_spec
from mapscope.cores import usable_cores
from mapscope.device import autocast

CPU = torch.device("cpu")


def compile_kernels(
    spec: NetSpec | None = None, precisions=("fp32", "bf16"), every_isa: bool = False
) -> float:
    """Compile (or load from numba's cache) the kernels ``spec``'s training uses on the CPU in
    each of ``precisions``, and with ``every_isa`` those of the other instruction sets too
    (float32 pooling below AVX-512, bf16 backward with AMX); returns the seconds it took.
    Touches no random state: a training that warms up first draws the same numbers as one that
    does not."""
    began = time.perf_counter()
    spec = spec or default_spec()
    with torch.random.fork_rng(devices=[]):  # dropout layers draw from the global generator
        net = build(spec, seed=0)
        net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # as the trainer
        x = torch.zeros(2, *net.spec.input_shape).contiguous(memory_format=torch.channels_last)
        for precision in precisions:
            with fast_path(net), autocast(CPU, precision), _deeper_pool_inputs(net) as pools:
                net(x).float().sum().backward()
            if every_isa and precision == "fp32":
                for module, inputs in pools:
                    _compile_every_path(module, inputs)
    return time.perf_counter() - began


def compile_shared(
    precisions=("fp32", "bf16"),
    every_isa: bool = False,
    jobs_file: Path | None = None,
    helper: subprocess.Popen | None = None,
) -> float:
    """``compile_kernels`` for the default network, faster where a second core is free: numba
    compiles one kernel at a time on one core, so a second process (``helper``, started here
    unless given, waiting for the jobs in ``jobs_file``) shares the kernels with this one
    (``kernel_jobs``); the pass over the whole network after it loads them from the cache and
    compiles anything the two missed. Not for a training, which must not compile its own
    kernels (``compile_apart``)."""
    began = time.perf_counter()
    with contextlib.ExitStack() as stack:
        if jobs_file is None:
            jobs_file = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "jobs.json"
            if usable_cores() > 1:
                helper = kernel_jobs.start_worker(jobs_file, waiting_for=os.getpid())
        jobs = jobs_of(default_spec(), precisions, every_isa)
        if kernel_cache.provides(jobs):  # shipped for this CPU: the helper has nothing to do
            jobs = []
        kernel_jobs.write_jobs(jobs, jobs_file)
        kernel_jobs.work(jobs_file)
        helpers = [] if helper is None else [helper]
        kernel_jobs.wait_until_done(jobs_file, helpers)  # one it failed is compiled below
        for process in helpers:
            process.wait()
    compile_kernels(precisions=precisions, every_isa=every_isa)
    return time.perf_counter() - began


def compile_apart(spec: NetSpec, precision: str) -> float:
    """Compile the kernels of ``spec``'s training in ``precision`` in other processes (two where
    a second core is free, sharing the kernels: ``kernel_jobs``), and mark them compiled;
    returns the seconds it took. The training loads them from numba's cache after it, as every
    later training does: numba's code run in the process that compiled it rounds differently
    from the same code loaded from the cache by a fresh one (the first layer's forward, Intel
    Xeon; numba/numba#10617 finds parallel code from the cache optimised differently too), so a
    first training that compiled its own kernels trained other weights than every later one
    with its seed."""
    began = time.perf_counter()
    jobs = jobs_of(spec, (precision,))
    with tempfile.TemporaryDirectory() as folder:
        jobs_file = Path(folder) / "jobs.json"
        kernel_jobs.write_jobs(jobs, jobs_file)
        workers = [
            kernel_jobs.start_worker(jobs_file) for _ in range(min(2, usable_cores(), len(jobs)))
        ]
        failed = [worker for worker in workers if worker.wait() != 0]
        done = kernel_jobs.wait_until_done(jobs_file, workers)
    if done and not failed:  # what they left undone, the training compiles: unmarked
        mark_compiled_for(spec, precision)
    return time.perf_counter() - began


def load_shipped(spec: NetSpec, precision: str) -> bool:
    """Where the package ships the kernels of ``spec``'s training in ``precision`` for this
    CPU's level (``kernel_cache``: those of a default network), put them in numba's cache and
    mark them compiled: nothing is left to compile (milliseconds)."""
    if kernel_cache.provides(jobs_of(spec, (precision,))):
        mark_compiled_for(spec, precision)
        return True
    return False


def jobs_of(spec: NetSpec, precisions=("fp32", "bf16"), every_isa: bool = False) -> list[Job]:
    """Every kernel (and signature) that ``compile_kernels`` would compile: its pass over the
    network with the kernels recorded, not run (milliseconds)."""
    with kernel_jobs.recording() as jobs:
        compile_kernels(spec, precisions, every_isa)
    return jobs


def compiled_for(spec: NetSpec, precision: str) -> bool:
    """Whether the kernels of ``spec``'s training in ``precision``, at this process's
    instruction set, are in numba's cache (compiled by ``compile_apart`` or a precompile), or
    it has none."""
    what = _kernels_of(spec, precision)
    try:
        return what is None or background.marker(what).exists()
    except OSError:  # no folder for marks at all: compiled apart each time, never here
        return False


def mark_compiled_for(spec: NetSpec, precision: str) -> None:
    what = _kernels_of(spec, precision)
    if what is not None:
        with contextlib.suppress(OSError):  # unmarked, the next training compiles apart again
            background.marker(what).touch()


def _kernels_of(spec: NetSpec, precision: str) -> str | None:
    """What the kernels of ``spec``'s training depend on, or None where it runs none: each fast
    layer's convolution, pool, activation and input shape, the precision, and the instruction
    set that the paths are chosen by. Networks that differ elsewhere (in their dense layers,
    say) share their kernels and so their mark."""
    from mapscope.cnn.conv_pool import dense_backward_pays

    with torch.random.fork_rng(devices=[]):
        net = build(spec, seed=0)
    names = list(net.layers)
    layers = [
        [
            type(module).__name__,
            fast_input_shape(net, names.index(name)),
            repr(module.layer),
            repr(getattr(module, "pool", None)),
            getattr(module, "size", None),
        ]
        for name, module in fast_layers(net).items()
        if isinstance(module, FusedConvPool | ConvBeforeFlatten)
    ]
    if not layers:
        return None
    isa = [torch.backends.cpu.get_cpu_capability(), dense_backward_pays()]
    return json.dumps([layers, precision, isa])


@contextlib.contextmanager
def _deeper_pool_inputs(net: Network) -> Iterator[list[tuple[FusedConvPool, torch.Tensor]]]:
    """What each fused convolution-and-pool of the fast path swapped into ``net`` receives in
    the block, where its input needs gradient (the deeper layers: the first has one path)."""
    seen: list[tuple[FusedConvPool, torch.Tensor]] = []

    def record(module, args):
        if args[0].requires_grad:
            seen.append((module, args[0].detach()))

    fused = [m for m in net.layers.values() if isinstance(m, FusedConvPool)]
    handles = [m.register_forward_pre_hook(record) for m in fused]
    try:
        yield seen
    finally:
        for handle in handles:
            handle.remove()


@torch.no_grad()
def _compile_every_path(module: FusedConvPool, x: torch.Tensor) -> None:
    """The layer's float32 forward by both paths, whichever this process's instruction set
    picks (the backward is the same for both), and the kernel of the bf16 backward that only
    CPUs with AMX take."""
    from mapscope.cnn import conv_pool, winograd  # numba: only when compiling

    conv, pool = module.layer.inner, module.pool
    if not isinstance(conv, nn.Conv2d) or not conv_pool.applies(conv, pool, x):
        return
    x = conv_pool.kernel_input(x, conv, pool, module.size)
    weight, bias, size = conv.weight, conv.bias, pool.kernel_size
    if not isinstance(size, int) or bias is None:  # ruled out by applies(); for the types
        return
    if winograd.pools(x, weight, size):
        winograd.conv_max_pool(x, weight, bias, module.relu)
    out, window = conv_pool.conv_then_max_pool(x, weight, bias, size, module.relu)
    # and what the bf16 backward puts the pooled gradient back with where oneDNN has AMX
    conv_pool.unpooled(out.bfloat16(), window, x, weight, size, module.relu)


def for_default_training(
    jobs_file: Path | None = None, helper: subprocess.Popen | None = None
) -> float:
    """Compile what a default training takes on this machine: the precision ``auto`` picks,
    at the instruction set torch runs at (what a background compile does, with the helper it
    started before it imported torch)."""
    from mapscope.device import pick_precision

    precision = pick_precision("auto", CPU)
    seconds = compile_shared(precisions=(precision,), jobs_file=jobs_file, helper=helper)
    mark_compiled_for(default_spec(), precision)
    return seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m mapscope.cnn.precompile", description=__doc__.split("\n")[0]
    )
    parser.parse_args(argv)
    shipped = kernel_cache.ships_here()
    if shipped:
        print("loading the CPU training kernels compiled with the package ...", flush=True)
    else:
        print("compiling the CPU training kernels (numba; once per machine) ...", flush=True)
    seconds = compile_shared(every_isa=True)
    background.mark_compiled()
    for precision in ("fp32", "bf16"):
        mark_compiled_for(default_spec(), precision)
    done = "copied into numba's cache and loaded" if shipped else "compiled"
    print(f"{done} in {seconds:.1f} s ({kernel_cache.numba_target().split()[0]})")


if __name__ == "__main__":
    main()
