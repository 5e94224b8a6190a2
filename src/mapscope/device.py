"""Choosing where and in which precision to compute: CPU by default, a GPU when there is one."""

from __future__ import annotations

import contextlib
import functools
import os
import time
from collections.abc import Iterator

import torch

from mapscope.cores import usable_cores
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
    bf16 matrix products run at least 1.5 times as fast as fp32 ones (AMX that oneDNN may use,
    or AVX512-BF16 on full-width 512-bit units).

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
    if onednn_uses_amx():
        return "bf16"
    return "bf16" if bf16_matmul_speedup() >= 1.5 else "fp32"


@functools.cache
def onednn_uses_amx() -> bool:
    """Whether oneDNN multiplies bf16 on this CPU's AMX tiles: the CPU has them and neither
    ``ONEDNN_MAX_CPU_ISA`` (or its older name ``DNNL_MAX_CPU_ISA``) holds oneDNN below them.
    The flag alone misleads where the benchmarks hold a CPU with AMX to AVX2: bf16 is then
    emulated, and an epoch took 51.6 s in bf16 against 17.2 s for a plain fp32 loop."""
    limit = os.environ.get("ONEDNN_MAX_CPU_ISA", os.environ.get("DNNL_MAX_CPU_ISA", "ALL")).upper()
    return (
        torch.backends.mkldnn.is_available()
        and torch.backends.mkldnn.enabled
        and torch.cpu._is_amx_tile_supported()
        and (limit in ("ALL", "DEFAULT") or "AMX" in limit)
    )


@functools.cache
def bf16_matmul_speedup() -> float:
    """How many times faster this CPU multiplies 512x512 bf16 matrices than fp32 ones.

    Measured once per process (about 80 ms on 2 cores). The threshold of 1.5 in
    ``pick_precision`` lies far from the ratios seen (about 0.5, and 2.2-4), so timing noise
    does not flip the choice. Where bf16 is emulated (a CPU with the flag, its oneDNN held to
    AVX2 by ``ONEDNN_MAX_CPU_ISA``: 150 times as slow), one product tells, and the rounds
    (6.4 s there) are skipped.
    """
    if not torch.cpu._is_avx512_bf16_supported():
        return 0.0
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(512, 512, generator=generator)
    b = torch.randn(512, 512, generator=generator)
    repeats = 8
    fp32 = _fastest_matmul(a, b, repeats=repeats) / repeats
    a, b = a.bfloat16(), b.bfloat16()
    torch.mm(a, b)  # oneDNN prepares its kernel on first use
    began = time.perf_counter()
    torch.mm(a, b)
    once = time.perf_counter() - began
    if once > 20 * fp32:
        return fp32 / once
    return fp32 * repeats / _fastest_matmul(a, b, repeats=repeats)


def _fastest_matmul(a: torch.Tensor, b: torch.Tensor, rounds: int = 5, repeats: int = 8) -> float:
    torch.mm(a, b)  # warm-up: oneDNN/MKL pick and prepare their kernels on first use
    best = float("inf")
    for _ in range(rounds):
        began = time.perf_counter()
        for _ in range(repeats):
            torch.mm(a, b)
        best = min(best, time.perf_counter() - began)
    return best


# images per forward pass when a network reads a whole split without training (test scores,
# predictions, unit statistics): few enough that a convolution's outputs stay in the CPU's
# last-level cache. The default CNN's first layer writes 86 KB per image; in batches of 1000
# (86 MB) the 10000 test images took 2.5 times as long as in batches of 64 to 250.
INFERENCE_BATCH = 128


def autocast(device: torch.device, precision: str):
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def pick_threads(threads: int | None = None, window: float = 0.1) -> int:
    """Threads for training: ``threads`` if given, else the cores that are free right now.

    Spinning thread pools collapse beside other busy processes: one CNN epoch on 20000 images
    took 3.2 s idle with 2 threads, and 10.7 s beside one busy process, where 1 thread takes
    4.5 s (AMD EPYC, 2 cores; passive OpenMP waiting gave 4.9 s busy but 4.5 s idle). So the
    default counts the cores busy with other work over ``window`` seconds (Linux
    ``/proc/stat``, in 10 ms ticks: a tenth of a second gives each core 10, enough to tell a busy
    core from an idle one; elsewhere the 1-minute load average) and leaves them alone.

    ``$MAPSCOPE_THREADS`` fixes the default for every training a process starts (and the
    processes it starts), as ``OMP_NUM_THREADS`` does for OpenMP: several trainings or test
    workers sharing a machine each take their part instead of measuring each other.
    """
    if threads is not None:
        return threads
    fixed = threads_from_environment()
    if fixed is not None:
        return fixed
    usable = usable_cores()
    busy = _busy_cores(window)
    return max(1, min(usable, round((os.cpu_count() or usable) - busy)))


THREADS_ENV = "MAPSCOPE_THREADS"


def threads_from_environment() -> int | None:
    """``$MAPSCOPE_THREADS`` as a thread count; None where it is unset or empty."""
    value = os.environ.get(THREADS_ENV, "").strip()
    if not value:
        return None
    if not value.isdigit() or int(value) < 1:
        raise ConfigError(
            f"{THREADS_ENV}={value!r} is not a thread count; set a whole number of at least 1 "
            f"or unset it (the training then takes the cores that are free)."
        )
    return int(value)


def _busy_cores(window: float) -> float:
    def sample() -> tuple[int, int] | None:
        try:
            with open("/proc/stat", encoding="ascii") as stat:
                fields = [int(v) for v in stat.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        return sum(fields), fields[3] + (fields[4] if len(fields) > 4 else 0)  # total, idle

    first = sample()
    if first is None:
        return os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    time.sleep(window)
    second = sample()
    total, idle = second[0] - first[0], second[1] - first[1]
    return (os.cpu_count() or 1) * (1 - idle / total) if total > 0 else 0.0


@contextlib.contextmanager
def using_threads(threads: int) -> Iterator[None]:
    """torch's and numba's thread counts for the block; the caller's come back afterwards."""
    import numba

    before_torch, before_numba = torch.get_num_threads(), numba.get_num_threads()
    torch.set_num_threads(threads)
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    try:
        yield
    finally:
        torch.set_num_threads(before_torch)
        numba.set_num_threads(before_numba)
