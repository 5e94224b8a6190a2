"""numba's cache of the training kernels, compiled once for two portable CPU levels and shipped
with the package, so that a first training after a plain ``pip install`` compiles nothing.

numba compiles for the CPU it runs on (its cache is keyed by the CPU's name and features), so a
cache made on one machine serves no other, and a first training used to wait 25 s on 2 cores
for the compile. The kernels are instead compiled for a *level* that many CPUs share:
``x86-64-v3`` (AVX2 and FMA: Intel Haswell, AMD Zen and later) and ``x86-64-v4`` (AVX-512 F,
BW, CD, DQ and VL: Intel Skylake-SP, AMD Zen 4 and later); on an AMD Zen 3 the level's code
trained as fast as code made for that CPU itself. Every process that runs or compiles the
kernels targets the highest level its CPU has (``use_shipped_level``, before numba compiles
anything), and the first one to need them copies the shipped entries of that level into
numba's own cache (``install``: milliseconds); numba then loads them as it loads anything it
compiled itself.

What makes a shipped entry usable is what numba checks for any cached entry: the same numba
version, the same Python minor version (the key holds the function's bytecode), the same kernel
source (the index holds a hash of its content) and the same CPU level. Where one differs (a
CPU below v3, another Python, an edited kernel, ``NUMBA_CPU_NAME`` set by the user), numba
compiles as before, in the background or apart from the training (``precompile``).

The shipped files live in ``kernel_cache/<level>/`` beside this module, with
``kernel_cache/manifest.json`` naming the numba and Python versions and the hashes of the
sources they were compiled from. After editing a kernel, rebuild them (about a minute of 2
cores)::

    python -m mapscope.cnn.kernel_cache

It reads and writes numba's cache through numba's own classes (its locators and
``IndexDataCacheFile``), which are not public API: numba is pinned in ``pyproject.toml``, and
the tests load every shipped entry as a process of each level would. This module imports
neither torch nor numba at its top: the kernel modules call it first.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mapscope.cnn.kernel_jobs import Job

HERE = Path(__file__).resolve().parent
SHIPPED = HERE / "kernel_cache"
MANIFEST = SHIPPED / "manifest.json"
# the modules whose kernels are shipped (those of kernel_jobs.KERNEL_MODULES)
KERNEL_FILES = ("conv_pool_kernels.py", "winograd_kernels.py")
# each level and the CPU features (LLVM's names) it takes beyond the level below it
LEVELS = {
    "x86-64-v3": ("avx", "avx2", "bmi", "bmi2", "f16c", "fma", "lzcnt", "movbe", "xsave",
                  "cx16", "sahf", "popcnt", "sse3", "sse4.1", "sse4.2", "ssse3"),
    "x86-64-v4": ("avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"),
}  # fmt: skip


def level_of(features: set[str]) -> str | None:
    """The highest level whose features (and those of every level below) are all in
    ``features``, or None below the lowest."""
    found, needed = None, set()
    for level, adds in LEVELS.items():
        needed |= set(adds)
        if not needed <= features:
            break
        found = level
    return found


def host_level() -> str | None:
    """This CPU's level (x86_64 only), from the features LLVM sees on it."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return None
    from llvmlite import binding  # numba's own LLVM binding; numba is not imported

    flags = binding.get_host_cpu_features()
    return level_of({name for name, on in flags.items() if on})


def use_shipped_level() -> str | None:
    """Have numba compile and load this process's kernels for this CPU's level, not for the
    CPU itself, unless ``NUMBA_CPU_NAME`` is set already (a choice of the user's, or a parent
    process's, which its children share). Returns the CPU name numba compiles for (None: the
    host's).

    numba fixes its target CPU when it first compiles or loads anything in a process, from the
    configuration it read last; so the level is set, and numba's configuration read again, only
    where that has not happened yet (the kernel modules call this as they are imported). A
    process whose numba compiled something of its own first keeps the host's CPU."""
    if "NUMBA_CPU_NAME" in os.environ:
        return os.environ["NUMBA_CPU_NAME"] or None
    if _numba_target_made():
        return None  # for the host
    level = host_level()
    if level is not None:
        os.environ["NUMBA_CPU_NAME"] = level
        os.environ["NUMBA_CPU_FEATURES"] = ""  # the level's own features, no more
        config = sys.modules.get("numba.core.config")
        if config is not None:
            config.reload_config()
    return level


def numba_target() -> str:
    """What numba compiles and loads the kernels for in this process (``use_shipped_level``'s
    choice, made or to be made): the marks that say kernels are compiled are kept apart by it,
    so that a process targeting another CPU compiles its own apart, never in the training."""
    if "NUMBA_CPU_NAME" in os.environ:
        name, features = os.environ["NUMBA_CPU_NAME"], os.environ.get("NUMBA_CPU_FEATURES")
    else:
        level = None if _numba_target_made() else host_level()
        name, features = (level, "") if level else ("host", None)
    return f"{name} {features!r}"


def _numba_target_made() -> bool:
    """Whether numba has made its CPU target in this process (on its first compile or cache
    load), which fixes the CPU it compiles for."""
    registry = sys.modules.get("numba.core.registry")
    return registry is not None and "_toplevel_target_context" in vars(registry.cpu_target)


def source_hashes() -> dict[str, str]:
    return {name: hashlib.sha256((HERE / name).read_bytes()).hexdigest() for name in KERNEL_FILES}


def manifest(folder: Path = SHIPPED) -> dict:
    try:
        return json.loads((folder / MANIFEST.name).read_text())
    except (OSError, ValueError):
        return {}


def shipped_for(level: str | None, folder: Path = SHIPPED) -> Path | None:
    """The folder of ``level``'s entries in ``folder`` (a cache ``build`` made: the shipped one
    unless told) where they suit this process: compiled by its numba and Python from the
    kernel sources it runs; None otherwise (then numba compiles)."""
    if level is None or not (folder / level).is_dir():
        return None
    from importlib import metadata

    made = manifest(folder)
    python = f"{sys.version_info[0]}.{sys.version_info[1]}"
    try:
        numba_version = metadata.version("numba")
    except metadata.PackageNotFoundError:
        return None
    if (made.get("numba"), made.get("python")) != (numba_version, python):
        return None
    if made.get("sources") != source_hashes():
        return None
    return folder / level


def level_in_use() -> str | None:
    """The shipped level this process's numba targets: ``NUMBA_CPU_NAME`` names one, with no
    features added (``NUMBA_CPU_FEATURES`` empty, as ``use_shipped_level`` sets it; a level
    name with the host's features keys its entries otherwise); None for any other target."""
    name = os.environ.get("NUMBA_CPU_NAME")
    return name if name in LEVELS and os.environ.get("NUMBA_CPU_FEATURES") == "" else None


def ships_here() -> bool:
    """Whether a default training on this machine will find its kernels shipped (no numba
    imported: every command's start may ask)."""
    level = level_in_use() if "NUMBA_CPU_NAME" in os.environ else host_level()
    return shipped_for(level) is not None


def provides(jobs: list[Job]) -> bool:
    """Put the shipped entries of this process's level into numba's cache (``install``) and
    say whether they hold every one of ``jobs`` (``precompile.jobs_of``), so that nothing is
    left to compile."""
    from mapscope.cnn.kernel_jobs import read_job_list

    try:
        shipped = set(read_job_list(manifest().get("jobs", [])))
    except (KeyError, TypeError, ValueError):  # a damaged manifest ships nothing
        return False
    if not set(jobs) <= shipped:
        return False
    try:
        return install() is not None
    except OSError:  # numba's cache cannot be written: numba compiles, as it would anyway
        return False


def install(cache: Path = SHIPPED) -> int | None:
    """Copy the shipped entries (or those of another cache ``build`` made) of this process's
    CPU level that numba's cache lacks into it; returns how many were copied (0: all there
    already), or None where nothing is shipped for this level, numba or Python, or numba
    reads no cache they could be put in. numba's own index files are merged, not replaced, so
    that kernels compiled here for other networks stay cached."""
    folder = shipped_for(level_in_use(), cache)
    if folder is None:
        return None
    caches = {name: _numba_cache_of(HERE / name) for name in KERNEL_FILES}
    if any(cache is None for _, cache in caches.values()):
        return None  # locators of the user's choosing: numba compiles
    from numba.core.caching import IndexDataCacheFile

    copied = 0
    for name, (stamp, cache) in caches.items():
        for index in sorted(folder.glob(f"{Path(name).stem}.*.nbi")):
            base = index.name[: -len(".nbi")]
            shipped = IndexDataCacheFile(str(folder), base, stamp)
            entries = shipped._load_index()  # empty where the source or numba differ
            if not entries:
                continue
            target = IndexDataCacheFile(str(cache), base, stamp)
            present = target._load_index()
            missing = {key: data for key, data in entries.items() if key not in present}
            if not missing:
                continue
            taken = set(present.values())
            number = 1
            for key, data in missing.items():
                while target._data_name(number) in taken:
                    number += 1
                new = target._data_name(number)
                taken.add(new)
                with target._open_for_write(target._data_path(new)) as out:
                    out.write((folder / data).read_bytes())
                present[key] = new
                copied += 1
            target._save_index(present)
    return copied


def _numba_cache_of(source: Path) -> tuple[object, Path | None]:
    """The content stamp numba gives ``source`` and the folder numba caches its functions in:
    the first of numba's locators that takes it, as numba itself chooses (the package's
    ``__pycache__``, else the user's cache folder)."""
    from numba.core import config
    from numba.core.caching import CacheImpl

    if config.CACHE_LOCATOR_CLASSES:  # locators of the user's choosing: numba compiles
        return None, None
    for locator_class in CacheImpl._locator_classes:
        locator = locator_class.from_function(_stand_in, str(source))
        if locator is not None:
            return locator.get_source_stamp(), Path(locator.get_cache_path())
    return None, None


def _stand_in():
    """A function for numba's locators, which ask for one (its line only names entries)."""


def build(out: Path = SHIPPED, jobs: list[Job] | None = None) -> None:
    """Compile ``jobs``, by default the kernels a default training takes, in every precision
    and for every path an instruction set can pick (``precompile.jobs_of``), once per level,
    each level in a fresh cache folder shared by two worker processes; then copy the entries
    and write the manifest."""
    import numba

    from mapscope.cnn import kernel_jobs, precompile
    from mapscope.cnn.spec import default_spec

    if jobs is None:
        jobs = precompile.jobs_of(default_spec(), ("fp32", "bf16"), every_isa=True)
    out.mkdir(parents=True, exist_ok=True)
    for level in LEVELS:
        print(f"compiling {len(jobs)} kernels for {level} ...", flush=True)
        with tempfile.TemporaryDirectory(prefix="mapscope-kernel-cache-") as folder:
            jobs_file = Path(folder) / "jobs.json"
            numba_cache = Path(folder) / "numba"
            kernel_jobs.write_jobs(jobs, jobs_file)
            env = {**os.environ, "NUMBA_CPU_NAME": level, "NUMBA_CPU_FEATURES": ""}
            env["NUMBA_CACHE_DIR"] = str(numba_cache)
            command = [sys.executable, "-m", "mapscope.cnn.kernel_jobs", str(jobs_file)]
            workers = [subprocess.Popen(command, env=env) for _ in range(2)]
            if any(worker.wait() != 0 for worker in workers):
                raise RuntimeError(f"a worker compiling the kernels for {level} failed")
            if not kernel_jobs.wait_until_done(jobs_file, workers):
                raise RuntimeError(f"not every kernel was compiled for {level}")
            target = out / level
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir()
            for path in sorted(numba_cache.glob("*/*.nb[ic]")):
                shutil.copy2(path, target / path.name)
    python = f"{sys.version_info[0]}.{sys.version_info[1]}"
    made = {
        "numba": numba.__version__,
        "python": python,
        "sources": source_hashes(),
        "jobs": kernel_jobs.job_list(jobs),
    }
    (out / "manifest.json").write_text(json.dumps(made, indent=2) + "\n")
    size = sum(path.stat().st_size for path in out.rglob("*.nb[ic]"))
    print(f"wrote {out} ({size / 1e6:.1f} MB)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m mapscope.cnn.kernel_cache",
        description="Compile the shipped numba cache of the CPU training kernels.",
    )
    parser.add_argument("--out", type=Path, default=SHIPPED, help="folder (default: %(default)s)")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        build(args.out)


if __name__ == "__main__":
    main()
