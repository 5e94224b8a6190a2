"""The numba cache of the training kernels that the package ships, compiled for two portable CPU
levels (``cnn/kernel_cache.py``). A first training that uses it is in
``test_background_compile.py``; the wheel's own is checked by ``scripts/check_wheel.py``."""

from __future__ import annotations

import itertools
import json
import os
import pickle
import platform
import subprocess
import sys
from importlib import metadata
from unittest import mock

import pytest

from mapscope.cnn import conv_pool, kernel_cache, winograd
from mapscope.cnn.kernel_jobs import job_list
from mapscope.cnn.precompile import jobs_of
from mapscope.cnn.spec import default_spec

REBUILD = "the shipped kernel cache is out of date: run `python -m mapscope.cnn.kernel_cache`"


def test_the_shipped_cache_is_that_of_these_sources_this_numba_and_this_python():
    """Edit a kernel, or move numba or Python on, and numba reads none of the shipped entries:
    this test says so, and how to rebuild them."""
    made = kernel_cache.manifest()
    assert made["sources"] == kernel_cache.source_hashes(), REBUILD
    assert made["numba"] == metadata.version("numba"), REBUILD
    assert made["python"] == f"{sys.version_info[0]}.{sys.version_info[1]}", REBUILD
    # what a default training calls on any CPU, whichever paths its instruction set picks
    # (oneDNN's bf16 backward where it has AMX, Winograd's pooled kernel below AVX-512): shipped
    for dense, pooled in itertools.product((False, True), repeat=2):
        with (
            mock.patch.object(conv_pool, "dense_backward_pays", lambda d=dense: d),
            mock.patch.object(winograd, "pooled_pays", lambda p=pooled: p),
        ):
            for precision in ("fp32", "bf16"):
                needed = job_list(jobs_of(default_spec(), (precision,)))
                assert all(job in made["jobs"] for job in needed), (REBUILD, dense, pooled)
    kernels = {(job["factory"], job["kernel"]) for job in made["jobs"]}
    for level in kernel_cache.LEVELS:
        indexes = list((kernel_cache.SHIPPED / level).glob("*.nbi"))
        # one index per kernel function (a factory's kernels, or a plain function)
        assert len(indexes) >= len({kernel or factory for factory, kernel in kernels}), level
        for index in indexes:  # each names the level it was compiled for, and no more
            entries = _entries(index)
            assert entries and all(key[1][1:] == (level, "") for key in entries), index.name


def test_the_test_suites_own_cache_is_of_these_sources():
    """The kernels the kernel tests make at other sizes, compiled ahead (``kernels_of_tests.py``):
    of older sources, numba skips them and every fresh clone's suite compiles them again (33 s
    of 2 cores), so an edited kernel asks for both caches to be rebuilt."""
    from kernels_of_tests import FOLDER

    made, shipped = kernel_cache.manifest(FOLDER), kernel_cache.manifest()
    rebuild = "the test suite's kernel cache is out of date: run `make kernels`"
    assert made["sources"] == kernel_cache.source_hashes(), rebuild
    assert (made["numba"], made["python"]) == (shipped["numba"], shipped["python"]), rebuild
    assert made["jobs"] and not [job for job in made["jobs"] if job in shipped["jobs"]]
    for level in kernel_cache.LEVELS:
        assert list((FOLDER / level).glob("*.nbi")), level


def _entries(index) -> dict:
    with open(index, "rb") as f:
        pickle.load(f)  # numba's version
        _, entries = pickle.loads(f.read())
    return entries


@pytest.mark.parametrize(
    "features, level",
    [
        ({"sse2", "sse4.2"}, None),
        (set(kernel_cache.LEVELS["x86-64-v3"]), "x86-64-v3"),
        (set(kernel_cache.LEVELS["x86-64-v3"]) - {"fma"}, None),
        ({*kernel_cache.LEVELS["x86-64-v3"], "avx512f", "avx512bw"}, "x86-64-v3"),
        ({*kernel_cache.LEVELS["x86-64-v3"], *kernel_cache.LEVELS["x86-64-v4"]}, "x86-64-v4"),
        (set(kernel_cache.LEVELS["x86-64-v4"]), None),  # AVX-512 needs the level below too
    ],
)
def test_a_cpu_gets_the_highest_level_it_has_all_of(features, level):
    assert kernel_cache.level_of(features) == level


INSTALL = """
import json, os, pickle, sys
from pathlib import Path
from numba.core.caching import IndexDataCacheFile
from mapscope.cnn import conv_pool_kernels, kernel_cache  # sets this CPU's level

level = os.environ["NUMBA_CPU_NAME"]
stamp, cache = kernel_cache._numba_cache_of(kernel_cache.HERE / "conv_pool_kernels.py")
ours = IndexDataCacheFile(str(cache), sys.argv[1], stamp)
ours.save(("a kernel", "compiled", "here"), ("its", "code"))  # numba's cache has one already
first, again = kernel_cache.install(), kernel_cache.install()
entries = ours._load_index()
print(json.dumps({"level": level, "first": first, "again": again, "ours": ours.load(
    ("a kernel", "compiled", "here")) == ("its", "code"), "entries": len(entries),
    "cache": str(cache)}))
"""


def test_install_adds_the_shipped_entries_to_numbas_cache_and_keeps_its_own(tmp_path):
    """Into an empty cache, every shipped entry of this CPU's level; a second install copies
    nothing; an entry numba had cached itself for the same kernel stays."""
    level = kernel_cache.host_level()
    if level is None:
        pytest.skip("the package ships kernels for x86-64-v3 and v4 CPUs only")
    shipped = kernel_cache.SHIPPED / level
    max_pool = next(shipped.glob("conv_pool_kernels.deeper_layer_kernels.locals.max_pool-*.nbi"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_CPU")}
    env["NUMBA_CACHE_DIR"] = str(tmp_path)
    done = subprocess.run(
        [sys.executable, "-c", INSTALL, max_pool.name[: -len(".nbi")]],
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    said = json.loads(done.stdout.strip().splitlines()[-1])
    count = sum(len(_entries(index)) for index in shipped.glob("*.nbi"))
    assert said["level"] == level and said["first"] == count and said["again"] == 0
    assert said["ours"] and said["entries"] == len(_entries(max_pool)) + 1
    assert str(tmp_path) in said["cache"]


LOAD_EVERY_JOB = """
import importlib, json
from mapscope.cnn import conv_pool_kernels, kernel_cache, kernel_jobs, winograd_kernels

copied = kernel_cache.install()
missing = []
for job in kernel_jobs.read_job_list(kernel_cache.manifest()["jobs"]):
    made = getattr(importlib.import_module(job.module), job.factory)(*job.args)
    kernel = getattr(made, job.kernel) if job.kernel else made
    types = tuple(kernel_jobs._decode(part) for part in job.signature)
    # numba's cache only: what a process of this level would load, loaded, never run
    if kernel._cache.load_overload(types, kernel.targetctx) is None:
        missing.append(f"{job.factory}.{job.kernel}{job.args}")
print(json.dumps({"copied": copied, "missing": missing}))
"""


@pytest.mark.skipif(
    platform.machine().lower() not in ("x86_64", "amd64"), reason="the levels are x86-64's"
)
@pytest.mark.parametrize("level", list(kernel_cache.LEVELS))
def test_every_level_holds_every_kernel_a_process_of_that_level_asks_for(tmp_path, level):
    """A process targeting ``level`` (as on a CPU of that level: an AVX-512 one for v4, which
    this machine need not be) finds each shipped job in numba's cache after ``install``: the
    entries are keyed as such a process keys them, and load. Nothing runs, so a level above
    this CPU's is checked too."""
    env = {**os.environ, "NUMBA_CPU_NAME": level, "NUMBA_CPU_FEATURES": ""}
    env["NUMBA_CACHE_DIR"] = str(tmp_path)
    done = subprocess.run(
        [sys.executable, "-c", LOAD_EVERY_JOB], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    said = json.loads(done.stdout.strip().splitlines()[-1])
    assert said["copied"] > 0 and said["missing"] == [], said


@pytest.mark.parametrize(
    "name, features, level",
    [
        ("x86-64-v3", "", "x86-64-v3"),
        ("x86-64-v4", "", "x86-64-v4"),
        ("x86-64-v3", None, None),  # the level's name, the host's features: other keys
        ("x86-64-v3", "+avx2", None),
        ("znver3", "", None),
    ],
)
def test_only_a_level_with_no_features_added_is_served_from_the_shipped_cache(
    monkeypatch, name, features, level
):
    monkeypatch.setenv("NUMBA_CPU_NAME", name)
    if features is None:
        monkeypatch.delenv("NUMBA_CPU_FEATURES", raising=False)
    else:
        monkeypatch.setenv("NUMBA_CPU_FEATURES", features)
    assert kernel_cache.level_in_use() == level
    assert kernel_cache.ships_here() == (level is not None)


def test_nothing_is_promised_where_numba_reads_another_cache(monkeypatch):
    """Locators of the user's choosing (``NUMBA_CACHE_LOCATOR_CLASSES``) decide where numba
    reads its cache: the shipped entries cannot be put there, so a training compiles apart
    rather than being told that its kernels are in the cache."""
    from numba.core import config

    monkeypatch.setenv("NUMBA_CPU_NAME", "x86-64-v3")
    monkeypatch.setenv("NUMBA_CPU_FEATURES", "")
    jobs = jobs_of(default_spec(), ("fp32",))
    assert kernel_cache.provides(jobs) == (kernel_cache.shipped_for("x86-64-v3") is not None)
    monkeypatch.setattr(config, "CACHE_LOCATOR_CLASSES", "some.Locator")
    assert not kernel_cache.provides(jobs)


@pytest.mark.parametrize("jobs", [[{"module": 1}], "jobs", [None], [{"signature": 3}]])
def test_a_damaged_manifest_ships_nothing(monkeypatch, jobs):
    monkeypatch.setattr(kernel_cache, "manifest", lambda: {"jobs": jobs})
    assert not kernel_cache.provides(jobs_of(default_spec(), ("fp32",)))
