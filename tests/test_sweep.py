"""`mapscope sweep`: grids, a real local Dask cluster with two worker processes, skipping
finished points, continuing interrupted ones, and a failed point that does not stop the others."""

from __future__ import annotations

import json

import pytest

from mapscope.errors import ConfigError
from mapscope.io import read_json, write_json
from mapscope.runs import Run
from mapscope.sweep.grid import make_grid
from mapscope.sweep.kinds import KINDS
from mapscope.sweep.run import sweep, write_sweep

CNN, MLP = KINDS["cnn"], KINDS["mlp"]


def test_points_combine_seeds_values_and_grid_file(tmp_path):
    grid_file = tmp_path / "grid.toml"
    grid_file.write_text("[fixed]\nepochs = 2\n\n[grid]\nbatch_size = [32, 64]\n")
    grid = make_grid(CNN, [0, 1], "lr", ["0.001", "0.002"], grid_file, {"max_train": "500"})
    points = grid.points()
    assert len(points) == 8
    first = points[0]
    assert first.name == "batch_size=32_lr=0.001_seed=0"
    assert first.options == {
        "epochs": 2,
        "max_train": 500,
        "batch_size": 32,
        "lr": 0.001,
        "seed": 0,
    }
    assert grid.varied_names == ["batch_size", "lr", "seed"]
    # one varied option: the folder names of the old `mlp sweep`
    assert [p.name for p in make_grid(MLP, None, "l2", ["0.1", "0.8"]).points()] == [
        "l2=0.1",
        "l2=0.8",
    ]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"param": "epoch", "values": ["2"]}, "no option 'epoch'"),
        ({"param": "batch_size", "values": ["1.5"]}, "whole numbers"),
        ({"param": "lr", "values": ["fast"]}, "lr must be a number"),
        ({"param": "epochs", "values": ["inf"]}, "epochs takes whole numbers"),
        ({"param": "epochs", "values": ["two"]}, "epochs must be a whole number"),
        ({"param": "lr", "values": None}, "--param and --values together"),
        ({"seeds": []}, "--seeds is empty"),
        ({"param": "lr", "values": ["0.1", "0.1"]}, "given twice"),
        ({"param": "optimizer", "values": ["adam", "lbfgs"]}, "point optimizer=lbfgs"),
        ({"fixed": {"threads": "2"}}, "no option 'threads'"),
    ],
)
def test_bad_grids_are_refused_before_anything_trains(arguments, message):
    with pytest.raises(ConfigError, match=message):
        make_grid(CNN, **arguments)


def test_set_holds_an_option_the_grid_file_varies(tmp_path):
    grid_file = tmp_path / "grid.toml"
    grid_file.write_text("[fixed]\nepochs = 2\n\n[grid]\nshift = [0, 2]\nlr = [0.001, 0.002]\n")
    grid = make_grid(CNN, None, None, None, grid_file, {"shift": "2", "scaling": "unit"})
    assert grid.varied_names == ["lr"]
    assert [p.options["shift"] for p in grid.points()] == [2, 2]
    grid = make_grid(CNN, None, "lr", ["0.1"], grid_file, {"shift": "2", "scaling": "unit"})
    assert [p.options["lr"] for p in grid.points()] == [0.1]  # --param replaces the file's list
    grid_file.write_text("[fixed]\nlr = 0.002\n")
    grid = make_grid(CNN, None, "lr", ["0.1", "0.2"], grid_file)
    assert "lr" not in grid.fixed  # sweep.json's fixed options name only what stays fixed
    with pytest.raises(ConfigError, match="--set lr is also swept by --param"):
        make_grid(CNN, None, "lr", ["0.1"], None, {"lr": "0.2"})
    with pytest.raises(ConfigError, match="--set seed is also swept by --param or --seeds"):
        make_grid(CNN, [0, 1], fixed={"seed": "3"})
    grid_file.write_text("[fixed]\nlr = 0.1\n\n[grid]\nlr = [0.001, 0.002]\n")
    with pytest.raises(ConfigError, match=r"lr is both in \[fixed\] and in \[grid\]"):
        make_grid(CNN, grid_file=grid_file)


def test_grid_file_with_a_stray_table_is_refused(tmp_path):
    grid_file = tmp_path / "grid.toml"
    grid_file.write_text("[grids]\nlr = [0.1]\n")
    with pytest.raises(ConfigError, match=r"unknown field .grids.; the fields are fixed, grid"):
        make_grid(CNN, grid_file=grid_file)


@pytest.mark.slow
def test_sweep_on_a_local_cluster_of_two_workers(real_data, tmp_path):
    out = tmp_path / "sweep"
    fixed = {"epochs": "1", "max_train": "2000", "lr": "5e-4"}
    grid = make_grid(MLP, [0, 1], fixed=fixed)
    result = sweep(grid, out, real_data, workers=2)
    card = result._repr_html_()
    assert f"{len(result.outcomes)} points" in card and "data:image/png" in card
    assert result.workers == 2 and result.threads_per_run == 1
    assert [o.status for o in result.outcomes] == ["trained", "trained"]
    for outcome in result.outcomes:
        run = Run.open(out / outcome.point.name, "mlp")
        assert run.config["train"]["seed"] == outcome.point.options["seed"]
        assert (
            outcome.metrics["test_accuracy"]
            == read_json(out / outcome.point.name / "metrics.json")["test_accuracy"]
        )
    # two seeds, two different runs
    accuracies = [o.metrics["test_accuracy"] for o in result.outcomes]
    assert accuracies[0] != accuracies[1]
    written = write_sweep(result, out)
    record = read_json(out / "sweep.json")
    assert [r["seed"] for r in record["rows"]] == [0, 1]
    assert record["groups"][0]["runs"] == 2
    assert all(p.exists() for p in written)
    # started again: nothing trains, the numbers are read back
    again = sweep(grid, out, real_data, workers=2)
    assert [o.status for o in again.outcomes] == ["skipped", "skipped"]
    assert [o.metrics["test_accuracy"] for o in again.outcomes] == accuracies
    # the same folder with other options is refused, not mixed
    with pytest.raises(ConfigError, match="other options"):
        sweep(make_grid(MLP, [0, 1], fixed={**fixed, "lr": "1e-3"}), out, real_data)


@pytest.fixture(scope="module")
def scheduler():
    """A running Dask cluster (as on many machines), shared by the tests that send work to it."""
    import dask
    from dask.distributed import LocalCluster

    with (
        dask.config.set({"distributed.nanny.pre-spawn-environ": {}}),
        LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=None) as cluster,
    ):
        yield cluster.scheduler_address


@pytest.mark.slow
def test_an_interrupted_point_is_continued(real_data, tmp_path, scheduler):
    out = tmp_path / "s"
    one = make_grid(CNN, [3], fixed={"epochs": "1", "max_train": "512", "max_test": "500"})
    sweep(one, out, real_data, scheduler=scheduler)
    # as if a 2-epoch sweep had been stopped after the first epoch of seed 3
    two = make_grid(CNN, [3], fixed={"epochs": "2", "max_train": "512", "max_test": "500"})
    plan = read_json(out / "plan.json")
    plan["points"]["run"] = json.loads(json.dumps(two.points()[0].options))
    write_json(out / "plan.json", plan)
    result = sweep(two, out, real_data, scheduler=scheduler)
    assert result.outcomes[0].status == "continued"
    assert result.outcomes[0].metrics["epochs"] == 2
    assert len(read_json(Run.open(out / "run").files["history"])) == 2


def test_a_folder_the_sweep_did_not_make_is_refused(real_data, tmp_path):
    (tmp_path / "s" / "seed=0").mkdir(parents=True)
    with pytest.raises(ConfigError, match="not trained by a sweep"):
        sweep(make_grid(CNN, [0, 1]), tmp_path / "s", real_data)


@pytest.mark.slow
def test_a_sweep_goes_to_a_running_scheduler(real_data, tmp_path, scheduler):
    grid = make_grid(MLP, [4], fixed={"epochs": "1", "max_train": "1000"})
    result = sweep(grid, tmp_path / "s", real_data, scheduler=scheduler)
    assert result.outcomes[0].status == "trained"
    assert result.scheduler == scheduler and result.workers is None
    assert Run.open(tmp_path / "s" / "run").config["train"]["seed"] == 4
    assert "local cluster" not in result.summary()
    with pytest.raises(ConfigError, match="--workers sizes a local cluster"):
        sweep(grid, tmp_path / "t", real_data, scheduler=scheduler, workers=2)


@pytest.mark.slow
def test_cli_kmeans_k_sweep_with_a_failing_point(cli, tmp_path):
    """A K sweep of KMeans runs over a grid file; the PCA of 99 components cannot be fitted on
    WIFI's 7 signals: those points fail with their error, the others are trained, exit 1."""
    grid = tmp_path / "grid.toml"
    grid.write_text('[fixed]\ndataset = "wifi"\n\n[grid]\npca = [3, 99]\n')
    out = tmp_path / "k"
    done = cli(
        "sweep",
        "kmeans",
        "--param",
        "clusters",
        "--values",
        "4,8",
        "--grid",
        grid,
        "--workers",
        "2",
        "--out",
        out,
    )
    assert done.returncode == 1, done.stderr
    rows = read_json(out / "sweep.json")["rows"]
    assert [(r["pca"], r["clusters"]) for r in rows] == [(3, 4), (3, 8), (99, 4), (99, 8)]
    good, bad = rows[:2], rows[2:]
    assert all(r["status"] == "trained" and 0.5 < r["test_accuracy"] <= 1 for r in good)
    assert all(r["status"] == "failed" and "pca must be" in r["error"] for r in bad)
    assert Run.open(out / "pca=3_clusters=8").config["model"]["clusters"] == 8
    assert not (out / "pca=99_clusters=4").exists()
    assert "2 FAILED" in done.stdout and f"wrote {out / 'sweep.png'}" in done.stdout


def test_a_dry_run_prints_the_points_and_writes_nothing(cli, tmp_path):
    out = tmp_path / "seeds"
    done = cli(
        "sweep", "kmeans", "--seeds", "0..2", "--set", "clusters=4", "--out", out, "--dry-run"
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("train    seed=0: clusters=4 seed=0")
    assert lines[-1] == "3 points; nothing trained (--dry-run)"
    assert not out.exists()
