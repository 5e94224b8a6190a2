"""The kernels' compile in the background: started by a command that does not train, waited for
by a training, once per install (``cnn/background.py``)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mapscope.cnn import background, kernel_cache


@pytest.fixture()
def markers(tmp_path, monkeypatch):
    """This install's marker files in a folder of the test's own, the compile turned on, on a
    CPU the package ships no compiled kernels for (``kernel_cache``: below x86-64-v3, say)."""
    monkeypatch.setattr(background, "state_dir", lambda: tmp_path)
    monkeypatch.setattr(kernel_cache, "ships_here", lambda: False)
    monkeypatch.setenv(background.ENV, "1")
    return tmp_path


def test_where_the_kernels_are_shipped_no_compile_starts(markers, monkeypatch):
    monkeypatch.setattr(kernel_cache, "ships_here", lambda: True)
    assert background.start() is None and background.running() is None
    assert background.compiled()  # the first training copies them into numba's cache


def test_a_background_compile_runs_once_marks_the_install_and_a_training_waits_for_it(markers):
    log = background.start()
    assert log is not None and log.parent == markers
    pid = background.running()
    assert pid is not None and background.start() is None  # no second compile beside the first
    waited = background.wait()
    assert waited > 0 and background.running() is None
    # over when the wait ends: the process has exited (a zombie until reaped, or gone), so a
    # training that counts the free cores next sees none of its work
    assert _state(pid) in ("Z", "gone")
    assert background.compiled() and not background.stem().with_suffix(".pid").exists()
    assert "compiled in" in log.read_text()
    assert background.start() is None and background.wait() == 0.0  # done: nothing to start


def _state(pid: int) -> str:
    """A process's state letter (R running, S sleeping, Z exited, not yet reaped), from Linux's
    ``/proc``; "gone" where there is none."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def test_nothing_starts_when_turned_off(markers, monkeypatch):
    monkeypatch.setenv(background.ENV, "0")
    assert background.start() is None and not list(markers.iterdir())


def test_a_crashed_compiles_pid_file_is_not_waited_for(markers):
    pid_file = background.stem().with_suffix(".pid")
    dead = subprocess.Popen(["true"])
    dead.wait()
    pid_file.write_text(f"{dead.pid}\n")
    assert background.running() is None and not pid_file.exists()
    pid_file.write_text(f"{os.getpid()}\n")  # alive, but the file is older than any compile
    old = time.time() - background.STALE_AFTER - 1
    os.utime(pid_file, (old, old))
    assert background.running() is None and background.wait() == 0.0


def test_the_install_key_follows_the_cpu_and_the_kernel_sources(monkeypatch):
    key = background.install_key()
    background.install_key.cache_clear()
    monkeypatch.setattr(background, "_cpu", lambda: "another CPU")
    assert background.install_key() != key
    background.install_key.cache_clear()


def test_the_console_script_starts_it_unless_the_command_trains_other_kernels(
    mapscope, monkeypatch
):
    """Commands that do not train start it, and so does a CNN training of the default network
    in the default precision on the default device (before the command line's imports, beside
    them); trainings of anything else, sweeps and help do not."""
    from mapscope.cli.entry import compiles_ahead

    started = []
    monkeypatch.setattr(background, "start", lambda: started.append(True))
    assert mapscope("data", "check", "mnist")[0] == 0
    assert mapscope("sweep", "--help")[0] == 0
    assert started == [True]
    assert compiles_ahead(["cnn", "train", "--out", "run"])
    assert compiles_ahead(["cnn", "train", "--out=run", "--recipe", "fast", "--threads", "2"])
    for other in (
        ["cnn", "train", "--out", "run", "--config", "net.toml"],
        ["cnn", "train", "--out", "run", "--precision=fp32"],
        ["cnn", "train", "--device", "cuda", "--out", "run"],
        ["cnn", "train", "--resume", "run"],
        ["cnn", "train", "--help"],
        ["sweep", "cnn", "--grid", "grid.toml"],
        ["ae", "train", "--out", "run"],
        ["mlp", "train", "--out", "run"],
        ["--version"],
        [],
    ):
        assert not compiles_ahead(other), other


def test_a_failed_compile_is_recorded_and_not_started_again(markers):
    def broken() -> float:
        raise RuntimeError("no compiler today")

    at = background.stem()
    at.with_suffix(".pid").write_text(f"{os.getpid()}\n")
    with pytest.raises(RuntimeError):
        background.run_in_background(at, broken)
    assert "no compiler today" in at.with_suffix(".failed").read_text()
    assert not at.with_suffix(".pid").exists() and not background.compiled()
    assert background.start() is None


def test_a_training_counts_its_cores_once_the_compile_under_way_has_ended(
    markers, real_data, tmp_path, monkeypatch
):
    """A training that starts while the background compile keeps a core busy waits for it,
    and only then counts the free cores: counted beside it, every epoch ran on one core."""
    from small_nets import SMALL_CNN

    from mapscope.cnn.train import TrainConfig, train
    from mapscope.training import trainer

    pid_file, stop = background.stem().with_suffix(".pid"), tmp_path / "stop"
    # a core kept busy until the training waits for it, then the pid file removed, as a
    # finished compile leaves it
    spin = "import os, sys\nwhile not os.path.exists(sys.argv[2]): pass\nos.remove(sys.argv[1])"
    busy = subprocess.Popen([sys.executable, "-c", spin, str(pid_file), str(stop)])
    pid_file.write_text(f"{busy.pid}\n")
    counted, wait = [], background.wait

    def waiting(*args, **kwargs):
        stop.touch()
        return wait(*args, **kwargs)

    def pick_threads(threads):
        counted.append(background.running())
        return 1

    monkeypatch.setattr(background, "wait", waiting)
    monkeypatch.setattr(trainer, "pick_threads", pick_threads)
    metrics = train(
        tmp_path / "run",
        TrainConfig(epochs=1, max_train=256, max_test=200),
        SMALL_CNN,
        data_root=real_data,
    )
    stop.touch()  # should the training not have waited at all
    busy.wait()
    assert counted == [None] and metrics["threads"] == 1


FIRST_RUN = """
import sys
from pathlib import Path

import torch

from mapscope.cnn.conv_pool_kernels import first_layer_kernels
from mapscope.cnn.spec import Conv, Dense, Flatten, NetSpec, Pool, validate
from mapscope.cnn.train import TrainConfig, train
from mapscope.runs import Run

spec = validate(NetSpec((Conv("Conv2D_1", 32), Pool("Max_Pool_1"), Flatten("Flatten"),
                         Dense("Dense_1", 10, "softmax"))))
out = Path(sys.argv[1])
train(out, TrainConfig(epochs=1, max_train=640, max_test=100, threads=2), spec)
torch.save(Run.open(out).module().state_dict(), out / "weights.pt")
# what this process compiled itself rather than loaded from numba's cache
forward, backward = first_layer_kernels(1, 32, 3, 2, True)
for kernel in (forward, backward):
    print("kernel", kernel.py_func.__name__, "misses", sum(kernel.stats.cache_misses.values()),
          "hits", sum(kernel.stats.cache_hits.values()))
"""


def _first_run(tmp_path, real_data, run: str, **env_vars: str) -> str:
    """FIRST_RUN in a fresh process, numba's cache and the marks in a folder of the test's own
    (empty before the first run); what it said."""
    env = {
        **os.environ,
        "NUMBA_CACHE_DIR": str(tmp_path / "numba"),
        "MAPSCOPE_DATA": str(real_data),
        background.ENV: "0",
        **env_vars,
    }
    done = subprocess.run(
        [sys.executable, "-c", FIRST_RUN, str(tmp_path / run)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout + done.stderr


def test_the_first_training_from_an_empty_cache_trains_the_weights_of_every_later_one(
    tmp_path, real_data
):
    """The same seed in two fresh processes, the first with nothing in numba's cache, on a CPU
    the package ships no kernels for (numba told to target the CPU itself, as below
    x86-64-v3): the same weights, bit for bit. A first training that compiled its kernels
    itself ran them with other roundings (numba's code in the process that compiled it), so
    other processes compile them (``compile_apart``), and the training loads them as the later
    one does."""
    import torch
    from llvmlite import binding

    host = {"NUMBA_CPU_NAME": binding.get_host_cpu_name()}
    said = [_first_run(tmp_path, real_data, run, **host) for run in ("first", "later")]
    first, later = (torch.load(tmp_path / run / "weights.pt") for run in ("first", "later"))
    assert first.keys() == later.keys()
    assert all(torch.equal(first[name], later[name]) for name in first)
    assert list((tmp_path / "numba").glob("kernels-*-*.done"))  # marked where numba cached
    # the first had them compiled in other processes, which takes seconds, and said so; it
    # loaded each from numba's cache as the later one did, compiling none itself
    assert "compiled the CPU training kernels" in said[0]
    assert "compil" not in said[1]  # loading the cache is no compile, however long it takes
    for run in said:
        assert "kernel forward misses 0 hits 1" in run and "kernel backward misses 0 hits 1" in run


def test_the_first_training_loads_the_shipped_kernels_and_compiles_nothing(tmp_path, real_data):
    """On a CPU with a level the package ships the kernels for (``kernel_cache``), a first
    training with nothing in numba's cache copies them into it and loads them, as every later
    training does (so its bits are theirs), compiling none, in this process or another."""
    if kernel_cache.host_level() is None:
        pytest.skip("the package ships kernels for x86-64-v3 and v4 CPUs only")
    said = _first_run(tmp_path, real_data, "first")
    assert "compil" not in said
    assert "kernel forward misses 0 hits 1" in said and "kernel backward misses 0 hits 1" in said
    assert list((tmp_path / "numba").glob("kernels-*-*.done"))  # marked where numba cached
    assert list((tmp_path / "numba").glob("*/conv_pool_kernels.first_layer_kernels.*.nbi"))


def test_processes_share_the_kernel_jobs_and_tell_a_job_left_undone(tmp_path):
    """Each job goes to the process that claims it first; a job whose claimer ended without
    finishing it is reported undone (whoever loads the kernels next compiles it), and a worker
    waiting for a list whose writer has ended gives up."""
    from mapscope.cnn.kernel_jobs import read_jobs, wait_until_done, work, write_jobs
    from mapscope.cnn.precompile import jobs_of
    from mapscope.cnn.spec import default_spec

    jobs = jobs_of(default_spec(), ("bf16",))[:2]
    path = tmp_path / "jobs.json"
    ended = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert work(path, waiting_for=int(ended)) == 0  # no list, its writer gone: nothing done
    write_jobs(jobs, path)
    assert read_jobs(path) == jobs
    path.with_name("jobs.json.0.claim").write_text(ended)  # claimed, then its claimer ended
    path.with_name("jobs.json.1.claim").write_text(str(os.getpid()))
    path.with_name("jobs.json.1.done").touch()
    assert work(path) == 0  # both taken: this process compiles neither
    assert wait_until_done(path) is False
    path.with_name("jobs.json.0.done").touch()
    assert wait_until_done(path) is True
