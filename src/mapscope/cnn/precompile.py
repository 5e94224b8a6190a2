"""Compile the CPU fast path's numba kernels ahead of the first training.

numba compiles each kernel the first time a layer shape meets it and caches the machine code on
disk beside the module. For the default network that first compile takes about 10 s for a bf16
training and 30-36 s for a float32 one (Winograd's kernels; 2 cores), which a newcomer's first
``mapscope cnn train`` would otherwise pay. ``make setup`` runs this module once after
installing; with pip alone, the first ``mapscope`` command runs it in the background for the
precision a default training takes (``background.py``), or run it yourself::

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
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from mapscope.cnn import background
from mapscope.cnn.build import Network, build
from mapscope.cnn.fast import (
    ConvBeforeFlatten,
    FusedConvPool,
    fast_input_shape,
    fast_layers,
    fast_path,
)
from mapscope.cnn.spec import NetSpec, default_spec, spec_from_dict
from mapscope.device import autocast, usable_cores

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


def compile_in_two_processes(precisions=("fp32", "bf16"), every_isa: bool = False) -> float:
    """``compile_kernels`` for the default network, faster where a second core is free: numba
    compiles one kernel at a time on one core, so a second process (``python -m
    mapscope.cnn.precompile --layers``) compiles the last convolution's kernels that has any
    (``Conv2D_3`` in float32, ``Conv2D_2`` in bf16) while this one compiles the others'; the
    pass over the whole network after it loads them from the cache and compiles anything the
    two missed. On 2 cores, float32 held to AVX2: 16.6 s instead of 29.3; everything this module
    compiles: 18.0 s instead of 30.9 (Intel Xeon). Not for a training, which must not compile
    its own kernels (``compile_apart``)."""
    began = time.perf_counter()
    theirs, ours = _split_layers(default_spec(), precisions)
    helper = None
    if theirs and usable_cores() > 1:  # a head start only: the pass below compiles what it missed
        helper = _start_layers(theirs, precisions, every_isa=every_isa)
    _compile_layers(default_spec(), tuple(precisions), every_isa, ours if helper else [])
    if helper is not None:
        helper.wait()  # a helper that failed leaves its kernels to the pass below
    compile_kernels(precisions=precisions, every_isa=every_isa)
    return time.perf_counter() - began


def compile_apart(spec: NetSpec, precision: str) -> float:
    """Compile the kernels of ``spec``'s training in ``precision`` in other processes (two where
    a second core is free: the last layer with kernels in one, the others in the other), and
    mark them compiled; returns the seconds it took. The training loads them from numba's cache
    after it, as every later training does: numba's code run in the process that compiled it
    rounds differently from the same code loaded from the cache by a fresh one (the first
    layer's forward, Intel Xeon; numba/numba#10617 finds parallel code from the cache optimised
    differently too), so a first training that compiled its own kernels trained other weights
    than every later one with its seed."""
    began = time.perf_counter()
    last, others = _split_layers(spec, (precision,))
    parts = [last, others] if usable_cores() > 1 else [last + others]
    with tempfile.TemporaryDirectory() as folder:
        spec_file = Path(folder) / "spec.json"
        spec_file.write_text(json.dumps(spec.to_dict()))
        children = [_start_layers(part, (precision,), spec_file) for part in parts if part]
        failed = [child for child in children if child.wait() != 0]
    if not failed:  # one that failed leaves its kernels to the training: compiled there
        mark_compiled_for(spec, precision)
    return time.perf_counter() - began


def _start_layers(
    names: list[str],
    precisions: tuple[str, ...],
    spec_file: Path | None = None,
    every_isa: bool = False,
) -> subprocess.Popen:
    """A process (``python -m mapscope.cnn.precompile --layers``) that compiles the kernels of
    the layers ``names`` of the network in ``spec_file`` (JSON; the default network without
    one), its output discarded: whoever waits for it loads or compiles what it missed."""
    command = [sys.executable, "-m", "mapscope.cnn.precompile", "--layers", ",".join(names)]
    command += ["--precisions", ",".join(precisions)] + ["--every-isa"] * every_isa
    command += [] if spec_file is None else ["--spec", str(spec_file)]
    nothing = subprocess.DEVNULL
    return subprocess.Popen(command, stdin=nothing, stdout=nothing, stderr=nothing)


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


def _split_layers(spec: NetSpec, precisions=("fp32", "bf16")) -> tuple[list[str], list[str]]:
    """The layers whose fast modules have kernels in ``precisions``: the last one, for a
    second process, and the others (none for a second process where there is only one). Under
    bf16 the convolution before Flatten runs as matrix products, with none."""
    with torch.random.fork_rng(devices=[]):
        net = build(spec, seed=0)
    names = [
        name
        for name, module in fast_layers(net).items()
        if isinstance(module, FusedConvPool)
        or (isinstance(module, ConvBeforeFlatten) and "fp32" in precisions)
    ]
    return (names[-1:], names[:-1]) if len(names) > 1 else ([], names)


def _compile_layers(
    spec: NetSpec, precisions: tuple[str, ...], every_isa: bool, names: list[str]
) -> None:
    """The kernels of the layers ``names`` alone: each layer's fast module forward and backward
    on random input of the shape the fast path hands it."""
    with torch.random.fork_rng(devices=[]):
        net = build(spec, seed=0)
        net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # as the trainer
        for precision in precisions:
            with fast_path(net), autocast(CPU, precision):
                for i, name in enumerate(net.layers):
                    if name not in names:
                        continue
                    x = torch.randn(2, *fast_input_shape(net, i))
                    x = x.contiguous(memory_format=torch.channels_last).requires_grad_(i > 0)
                    module = net.layers[name]
                    y = module(x).float()
                    (y * torch.randn_like(y)).sum().backward()
                    deeper = every_isa and precision == "fp32" and i > 0
                    if deeper and isinstance(module, FusedConvPool):
                        _compile_every_path(module, x.detach())


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


def for_default_training() -> float:
    """Compile what a default training takes on this machine: the precision ``auto`` picks,
    at the instruction set torch runs at (what a background compile does first)."""
    from mapscope.device import pick_precision

    precision = pick_precision("auto", CPU)
    seconds = compile_in_two_processes(precisions=(precision,))
    mark_compiled_for(default_spec(), precision)
    return seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m mapscope.cnn.precompile", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--background",
        metavar="MARKER",
        type=Path,
        help="run as the background compile that `mapscope` commands start (cnn/background.py)",
    )
    parser.add_argument("--layers", help="only these layers' kernels (the second process's part)")
    parser.add_argument(
        "--spec", type=Path, help="with --layers: the network (JSON), not the default"
    )
    parser.add_argument("--precisions", default="fp32,bf16", help="with --layers: fp32, bf16")
    parser.add_argument(
        "--every-isa",
        action="store_true",
        help="with --layers: the paths of the other instruction sets too (compile_kernels)",
    )
    args = parser.parse_args(argv)
    if args.layers is not None:
        precisions = tuple(args.precisions.split(","))
        spec = (
            default_spec()
            if args.spec is None
            else spec_from_dict(json.loads(args.spec.read_text()))
        )
        _compile_layers(spec, precisions, args.every_isa, args.layers.split(","))
        return
    if args.background is not None:
        background.run_in_background(args.background, for_default_training)
        return
    print("compiling the CPU training kernels (numba; once per machine) ...", flush=True)
    seconds = compile_in_two_processes(every_isa=True)
    background.mark_compiled()
    for precision in ("fp32", "bf16"):
        mark_compiled_for(default_spec(), precision)
    print(f"compiled in {seconds:.1f} s, cached beside mapscope/cnn/conv_pool.py and winograd.py")


if __name__ == "__main__":
    main()
