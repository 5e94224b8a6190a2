"""Choosing where and in which precision to compute: CPU by default, a GPU when there is one."""

from __future__ import annotations

import contextlib
import functools
import time

import torch

from mapscope.errors import ConfigError


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' asked for, but torch sees no GPU; use --device cpu.")
    if name not in ("cpu",) and not name.startswith("cuda"):
        raise ConfigError(f"device {name!r} unknown; use auto, cpu or cuda.")
    return torch.device(name)


def pick_precision(name: str, device: torch.device) -> str:
    """bf16 autocast only where bf16 matrix units make it pay: recent GPUs, and CPUs whose
    bf16 matrix products run at least 1.5 times as fast as fp32 ones (AMX, or AVX512-BF16 on
    full-width 512-bit units).

    CPU flags do not tell: on a 2-core AVX512-BF16 CPU without AMX, a training step of the
    reference network took 16.5 ms under bf16 autocast and 12.0 ms in fp32, because its bf16
    matrix products ran at half the fp32 rate; on another with the same flags (AMD Zen 5) a
    512x512 bf16 product ran at 846 against 204 GFLOP/s, and a step took 13 % less time. On
    that CPU, on another day, the ratio measured with 256x256 matrices wandered between 1.8 and
    2.1 from one process to the next, and so did the choice; with 512x512 matrices it stays
    between 2.2 and 2.4, and the threshold of 1.5 lies far from both kinds of CPU.
    """
    if name not in ("auto", "fp32", "bf16"):
        raise ConfigError(f"precision {name!r} unknown; use auto, fp32 or bf16.")
    if name != "auto":
        return name
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if torch.cpu._is_amx_tile_supported():
        return "bf16"
    return "bf16" if bf16_matmul_speedup() >= 1.5 else "fp32"


@functools.cache
def bf16_matmul_speedup() -> float:
    """How many times faster this CPU multiplies 512x512 bf16 matrices than fp32 ones.

    Measured once per process (about 80 ms on 2 cores). The threshold of 1.5 in
    ``pick_precision`` lies far from the ratios seen (about 0.5, and 2.2-4), so timing noise
    does not flip the choice.
    """
    if not torch.cpu._is_avx512_bf16_supported():
        return 0.0
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(512, 512, generator=generator)
    b = torch.randn(512, 512, generator=generator)
    return _fastest_matmul(a, b) / _fastest_matmul(a.bfloat16(), b.bfloat16())


def _fastest_matmul(a: torch.Tensor, b: torch.Tensor, rounds: int = 5, repeats: int = 8) -> float:
    torch.mm(a, b)  # warm-up: oneDNN/MKL pick and prepare their kernels on first use
    best = float("inf")
    for _ in range(rounds):
        began = time.perf_counter()
        for _ in range(repeats):
            torch.mm(a, b)
        best = min(best, time.perf_counter() - began)
    return best


def autocast(device: torch.device, precision: str):
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
