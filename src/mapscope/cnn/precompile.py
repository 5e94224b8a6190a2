"""Compile the CPU fast path's numba kernels ahead of the first training.

numba compiles each kernel the first time a layer shape meets it and caches the machine code on
disk beside the module. For the default network that first compile takes 10-15 s on 2 cores, which
a newcomer's first ``mapscope cnn train`` would otherwise pay. ``make setup`` runs this module
once after installing; with pip alone, run it yourself::

    python -m mapscope.cnn.precompile

It trains nothing: one forward and backward pass of two random images through the default
network's fast path, in float32 and under bf16 autocast (both kernel variants), so that every
kernel a default training uses is compiled and cached. Later processes load the cache in well
under a second.
"""

from __future__ import annotations

import time

import torch

from mapscope.cnn.build import build
from mapscope.cnn.fast import fast_path
from mapscope.cnn.spec import NetSpec, default_spec


def compile_kernels(spec: NetSpec | None = None, precisions=("fp32", "bf16")) -> float:
    """Compile (or load from numba's cache) the kernels ``spec``'s training uses on the CPU in
    each of ``precisions``; returns the seconds it took. Touches no random state: a training
    that warms up first draws the same numbers as one that does not."""
    began = time.perf_counter()
    with torch.random.fork_rng(devices=[]):  # dropout layers draw from the global generator
        net = build(spec or default_spec(), seed=0)
        net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # as the trainer
        x = torch.zeros(2, *net.spec.input_shape).contiguous(memory_format=torch.channels_last)
        for precision in precisions:
            dtype = torch.bfloat16 if precision == "bf16" else None
            with fast_path(net), torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
                net(x).float().sum().backward()
    return time.perf_counter() - began


def main() -> None:
    print("compiling the CPU training kernels (numba; once per machine) ...", flush=True)
    seconds = compile_kernels()
    print(f"compiled in {seconds:.1f} s, cached beside mapscope/cnn/conv_pool.py and winograd.py")


if __name__ == "__main__":
    main()
