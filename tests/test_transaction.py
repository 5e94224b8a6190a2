"""A run folder is a transaction: an existing run is never touched without --overwrite and then
replaced whole; one writer at a time; an epoch's files are committed as a set, so an
interruption at any file boundary (Ctrl-C or SIGKILL) leaves a run that resumes to exactly the
weights of an uninterrupted one."""

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from small_nets import SMALL_CNN  # noqa: E402

from mapscope.cnn.train import TrainConfig, train
from mapscope.errors import RunError
from mapscope.io import read_json
from mapscope.runs import Run
from mapscope.runs.folder import writing
from mapscope.runs.lock import lock_path, locked
from mapscope.training import trainer

# threads left to the default: the cores free, or the worker's share in the suite
TINY = dict(max_train=256, max_test=500, batch_size=64, schedule="none", lr=1e-3)


def tiny(epochs: int = 1, **changes) -> TrainConfig:
    return TrainConfig(epochs=epochs, **{**TINY, **changes})


def snapshot(folder: Path) -> dict[str, str]:
    """Every file below ``folder`` with a hash of its bytes."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(Run.open(run).files["model"]))


@pytest.fixture(scope="module")
def one_epoch(real_data, tmp_path_factory) -> Path:
    """The tiny run after one epoch, trained once; tests work on copies of it."""
    run = tmp_path_factory.mktemp("one") / "run"
    train(run, tiny(1), SMALL_CNN, data_root=real_data)
    return run


def copy_of(run: Path, to: Path) -> Path:
    shutil.copytree(run, to, symlinks=True)
    return to


@pytest.fixture(scope="module")
def two_epochs(real_data, tmp_path_factory):
    """The reference: the tiny run trained for two epochs without interruption."""
    run = tmp_path_factory.mktemp("ref") / "run"
    train(run, tiny(2), SMALL_CNN, data_root=real_data)
    return weights(run)


def test_training_into_an_existing_run_is_refused(real_data, tmp_path, one_epoch):
    run = copy_of(one_epoch, tmp_path / "run")
    before = snapshot(run)
    with pytest.raises(RunError, match="already holds a 'cnn' run; pass --overwrite"):
        train(run, tiny(dataset="fashion-mnist"), SMALL_CNN, data_root=real_data)
    assert snapshot(run) == before


def test_overwrite_interrupted_in_the_first_epoch_leaves_the_old_run(
    real_data, tmp_path, monkeypatch, one_epoch
):
    run = copy_of(one_epoch, tmp_path / "run")
    before = snapshot(run)

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "run_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(run, tiny(dataset="fashion-mnist"), SMALL_CNN, data_root=real_data, overwrite=True)
    assert snapshot(run) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no staging folder, no lock


def test_overwrite_replaces_the_whole_run(real_data, tmp_path, one_epoch):
    run = copy_of(one_epoch, tmp_path / "run")
    (run / "notes.txt").write_text("a file of the old run")
    train(run, tiny(dataset="fashion-mnist"), SMALL_CNN, data_root=real_data, overwrite=True)
    opened = Run.open(run)
    assert opened.config["data"]["dataset"] == "fashion-mnist"
    assert not (run / "notes.txt").exists()
    assert read_json(opened.files["metrics"])["epochs"] == 1


def test_a_folder_of_other_files_is_never_replaced(real_data, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("months of work")
    with pytest.raises(RunError, match="not a mapscope run"):
        train(tmp_path / "mine", tiny(), SMALL_CNN, data_root=real_data, overwrite=True)
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "months of work"


def test_kmeans_fit_over_a_cnn_run_is_refused(cli, real_data, tmp_path, one_epoch):
    run = copy_of(one_epoch, tmp_path / "run")
    before = snapshot(run)
    done = cli("kmeans", "fit", "--out", run, "--clusters", "10", "--dataset", "wifi")
    assert done.returncode == 2
    assert "already holds a 'cnn' run" in done.stderr and len(done.stderr.splitlines()) == 1
    assert snapshot(run) == before


def test_plain_mlp_over_a_cluster_feature_run_keeps_no_stale_features(real_data, tmp_path):
    from mapscope.mlp.train import MLPConfig
    from mapscope.mlp.train import train as train_mlp

    run = tmp_path / "mlp"
    quick = dict(dataset="wifi", epochs=2, batch_size=100)
    train_mlp(run, MLPConfig(cluster_features=8, **quick), real_data)
    assert "cluster_features" in Run.open(run).files
    with pytest.raises(RunError, match="pass --overwrite"):
        train_mlp(run, MLPConfig(**quick), real_data)
    train_mlp(run, MLPConfig(**quick), real_data, overwrite=True)
    assert "cluster_features" not in Run.open(run).files
    Run.open(run).predictor()  # a pixel MLP again, whole


def test_a_second_writer_is_refused_naming_the_holder(real_data, tmp_path):
    run = tmp_path / "run"
    with locked(run), pytest.raises(RunError, match=f"being written by process {os.getpid()} "):
        train(run, tiny(), SMALL_CNN, data_root=real_data)
    assert not lock_path(run).exists()  # released on exit
    train(run, tiny(), SMALL_CNN, data_root=real_data)  # free again


def test_a_concurrent_training_is_refused_at_once(cli, real_data, tmp_path):
    run = tmp_path / "run"
    first = subprocess.Popen(
        [sys.executable, "-m", "mapscope", "cnn", "train", "--out", str(run), "--epochs", "1"],
        env={**os.environ, "MAPSCOPE_DATA": str(real_data)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while not lock_path(run).exists() or not lock_path(run).read_text():
            assert first.poll() is None, "the first training ended before it took the lock"
        second = cli("cnn", "train", "--out", run, "--epochs", "1", "--max-train", "64")
        assert second.returncode == 2
        assert f"being written by process {first.pid} " in second.stderr
    finally:
        first.kill()
        first.wait()


def test_a_stale_lock_of_a_killed_writer_is_taken_over(real_data, tmp_path):
    run = tmp_path / "run"
    lock_path(run).write_text("999999999 on a machine that crashed")  # held by nobody
    train(run, tiny(), SMALL_CNN, data_root=real_data)
    assert not lock_path(run).exists()


def test_a_killed_staging_folder_is_cleaned_up(real_data, tmp_path):
    stale = tmp_path / ".run.new-12345"
    stale.mkdir()
    (stale / "config.json").write_text("{}")
    with writing(tmp_path / "run") as writer:
        assert writer.folder.name == f".run.new-{os.getpid()}"
    assert not stale.exists()


# --- an epoch is committed as a set --------------------------------------------------------

KILL_SCRIPT = """
import os, signal, sys
from pathlib import Path
from mapscope.cnn.train import TrainConfig, train

kill_at = int(sys.argv[1])
real_replace, calls = os.replace, [0]

def replace(src, dst):
    calls[0] += 1
    if calls[0] == kill_at:  # the temp file is written; the move into place never happens
        os.kill(os.getpid(), signal.SIGKILL)
    return real_replace(src, dst)

os.replace = replace
train(Path(sys.argv[3]), TrainConfig(epochs=1), resume=True, data_root=sys.argv[4])
"""

# the replaces of one resumed epoch: model, checkpoint, history, curves, metrics, then the pointer
EPOCH_WRITES = 6


def interrupt_in_process(kill_at: int, run: Path, real_data: Path) -> None:
    """Ctrl-C at the ``kill_at``-th file move of a resumed epoch (as KILL_SCRIPT, in-process)."""
    real_replace, calls = os.replace, [0]

    def replace(src, dst):
        calls[0] += 1
        if calls[0] == kill_at:
            raise KeyboardInterrupt
        return real_replace(src, dst)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "replace", replace)
        if kill_at <= EPOCH_WRITES:
            with pytest.raises(KeyboardInterrupt):
                train(run, TrainConfig(epochs=1), resume=True, data_root=real_data)
        else:
            train(run, TrainConfig(epochs=1), resume=True, data_root=real_data)


def kill_in_subprocess(kill_at: int, run: Path, real_data: Path) -> None:
    """SIGKILL at the ``kill_at``-th file move of a resumed epoch: nothing gets to clean up."""
    script = textwrap.dedent(KILL_SCRIPT)
    done = subprocess.run(
        [sys.executable, "-c", script, str(kill_at), "kill", run, real_data],
        capture_output=True,
        text=True,
    )
    expected = -signal.SIGKILL if kill_at <= EPOCH_WRITES else 0
    assert done.returncode == expected, done.stderr


@pytest.mark.parametrize("interrupt", [interrupt_in_process, kill_in_subprocess])
def test_an_epoch_interrupted_at_any_file_resumes_to_the_same_weights(
    interrupt, real_data, tmp_path, two_epochs, one_epoch, capsys
):
    first = one_epoch
    # every file move in process; SIGKILL (a new process each, ~4 s) at two representative
    # moves: one of the epoch's files before the pointer, and the first move after it
    every = range(1, EPOCH_WRITES + 2)
    kill_points = every if interrupt is interrupt_in_process else (3, EPOCH_WRITES + 1)
    for kill_at in kill_points:
        run = tmp_path / f"run{kill_at}"
        subprocess.run(["cp", "-a", first, run], check=True)
        capsys.readouterr()
        interrupt(kill_at, run, real_data)
        committed = len(read_json(Run.open(run).files["history"]))
        if interrupt is interrupt_in_process and kill_at <= EPOCH_WRITES:
            # what Ctrl-C says the run keeps is what the pointer says, also when it lands
            # after the epoch's history was written but before the pointer moved
            assert f"keeps epoch {committed};" in capsys.readouterr().out, kill_at
        # before the pointer moved the run is at epoch 1, after it at epoch 2; never between
        assert committed == (1 if kill_at <= EPOCH_WRITES else 2)
        assert read_json(Run.open(run).files["metrics"])["epochs"] == committed
        if committed == 1:
            train(run, TrainConfig(epochs=1), resume=True, data_root=real_data)
        resumed = weights(run)
        assert all(torch.equal(resumed[k], two_epochs[k]) for k in two_epochs), kill_at
        assert not list(run.rglob("*.tmp")), "temporary files left behind"
        assert [p.name for p in (run / "epochs").iterdir()] == ["0002"]
