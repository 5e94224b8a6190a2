"""numba's cache of the kernels the test suite compiles beyond those the package ships.

The kernel tests check the fast path's kernels against torch's layers at sizes no default
training has (5x5 filters, 3x3 pools, 3 -> 5 channels, ...). numba compiles each such kernel
for its sizes, about 3 s apiece: 33 s of a fresh clone's suite (CI's case) went to compiling
them. They are compiled here once per CPU level, as the package's own kernels are
(``mapscope.cnn.kernel_cache``), into ``tests/kernel_cache/``, and every test process puts them
into numba's cache as it starts (``install``, from conftest). Where they do not apply (a CPU
below x86-64-v3, another numba or Python, a kernel edited since), numba compiles them as before:
the tests are the same, only slower.

Rebuild after editing a kernel (``make kernels`` rebuilds both caches; a test fails until then)::

    python tests/kernels_of_tests.py

It runs the whole suite once (about 6 minutes on 2 cores), each test process recording every
kernel it made and the signatures numba holds for it (``kernel_jobs.jobs_made``; a kernel made
only in a process a test starts is not listed), then compiles those the package does not ship,
for each level (another minute).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
FOLDER = HERE / "kernel_cache"
# a test process given this variable writes the jobs it made to <its value>.<pid> as it ends
RECORD_ENV = "MAPSCOPE_RECORD_KERNEL_JOBS"


def install() -> int | None:
    """Put the entries of this process's CPU level into numba's cache (see the module's
    docstring); how many were copied, or None where none apply."""
    from mapscope.cnn import kernel_cache

    kernel_cache.use_shipped_level()  # as the kernel modules do when imported
    return kernel_cache.install(FOLDER)


def record(path: str) -> None:
    """Write the jobs this process made (for ``main``)."""
    from mapscope.cnn.kernel_jobs import job_list, jobs_made

    Path(f"{path}.{os.getpid()}").write_text(json.dumps(job_list(jobs_made())))


def main() -> None:
    from mapscope.cnn import kernel_cache
    from mapscope.cnn.kernel_jobs import read_job_list

    with tempfile.TemporaryDirectory(prefix="mapscope-test-kernels-") as folder:
        env = {**os.environ, RECORD_ENV: str(Path(folder) / "jobs")}
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "2"]
        print("running the suite once to list the kernels it makes ...", flush=True)
        stale = "tests/test_kernel_cache.py::test_the_test_suites_own_cache_is_of_these_sources"
        subprocess.run([*command, "--deselect", stale], env=env, check=True, cwd=HERE.parent)
        made = {}
        for path in sorted(Path(folder).glob("jobs.*")):
            for job in read_job_list(json.loads(path.read_text())):
                made.setdefault(job, None)
    shipped = set(read_job_list(kernel_cache.manifest()["jobs"]))
    extra = [job for job in made if job not in shipped]
    print(f"{len(made)} kernel signatures made, {len(extra)} beyond the shipped ones")
    kernel_cache.build(FOLDER, extra)


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parent / "src"))
    main()
