"""Shared fixtures. Real-data tests read $MAPSCOPE_DATA and fail (never skip) when it is missing."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from filelock import FileLock
from hypothesis import settings

sys.path.insert(0, str(Path(__file__).parent))  # the test networks (user_nets.py)

# Hypothesis profiles: "ci" (the default) is sized to the suite's five minutes; "thorough" digs
# longer before a release or after a change to option checking (HYPOTHESIS_PROFILE=thorough).
settings.register_profile("ci", max_examples=60, deadline=None)
settings.register_profile("thorough", max_examples=2000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_configure(config):
    # keep the caches of test runs (verified hashes, unpacked datasets: 110 MB) out of the
    # user's real cache folder, in one of this process's own, removed when its tests end
    cache = tempfile.mkdtemp(prefix="mapscope-test-cache-")
    os.environ["MAPSCOPE_CACHE"] = cache
    config.add_cleanup(lambda: shutil.rmtree(cache, ignore_errors=True))
    if _xdist_controller(config):
        return  # it runs no test: torch and numba are the workers' imports
    import torch
    from threadpoolctl import threadpool_limits

    from mapscope.cnn import background
    from mapscope.cnn.kernel_jobs import skip_loop_strength_reduction

    # no command of the suite starts the kernels' background compile (its own tests do)
    os.environ[background.ENV] = "0"
    # the kernel tests compile kernels of other shapes in this process: compile them as the
    # processes that compile the training's kernels do (the same code, in 40 % less time)

    skip_loop_strength_reduction()
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:  # the workers share the cores: each takes its part
        share = max(1, (os.cpu_count() or 1) // workers)
        torch.set_num_threads(share)
        # trainings too, in this process and in the commands it starts: a training that found
        # the other worker idle for a tenth of a second took every core, and both workers'
        # spinning thread pools then ran at a fraction of their speed
        from mapscope.device import THREADS_ENV

        os.environ[THREADS_ENV] = str(share)
        # and numba's kernels called outside a training (the kernel tests), and torch in the
        # commands the tests start in new processes
        os.environ["NUMBA_NUM_THREADS"] = os.environ["OMP_NUM_THREADS"] = str(share)
        # and so do BLAS and scikit-learn's OpenMP loops (KMeans), which would otherwise spin
        # a thread per core against the other worker
        threadpool_limits(limits=share)
    # the kernels of the kernel tests' other sizes, compiled ahead (kernels_of_tests.py); this
    # imports numba, which reads NUMBA_NUM_THREADS once, so it comes after the share is set
    from kernels_of_tests import install

    with FileLock(os.path.join(tempfile.gettempdir(), "mapscope-test-kernels.lock")):
        install()


def pytest_unconfigure(config):
    from kernels_of_tests import RECORD_ENV, record

    if os.environ.get(RECORD_ENV) and not _xdist_controller(config):
        record(os.environ[RECORD_ENV])


def _xdist_controller(config) -> bool:
    """Whether this process hands the tests out to xdist's workers (and runs none itself)."""
    return bool(getattr(config.option, "numprocesses", None)) and (
        "PYTEST_XDIST_WORKER" not in os.environ
    )


def built_once(tmp_path_factory, name: str, build) -> Path:
    """A folder that ``build(folder)`` fills once for the whole test session: under xdist the
    first worker to ask builds it while the others wait for it, then all read it (the runs
    the session fixtures train took 3-8 s each, paid once per worker before). Tests treat it
    as read-only: one that changes a run works on a copy."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        folder = tmp_path_factory.mktemp(name)
        build(folder)
        return folder
    folder = tmp_path_factory.getbasetemp().parent / f"shared-{name}"
    done = folder.with_name(folder.name + ".done")
    with FileLock(str(folder) + ".lock"):
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)  # left by a worker that failed building
            folder.mkdir()
            build(folder)
            done.touch()
    return folder


@pytest.fixture(scope="session")
def real_data() -> Path:
    root = os.environ.get("MAPSCOPE_DATA")
    if not root or not (Path(root) / "mnist").is_dir():
        pytest.fail(
            "real-data tests need MAPSCOPE_DATA pointing at a folder with mnist/, fashion-mnist/ "
            "and wifi/ (in this workplace: MAPSCOPE_DATA=../shared/data make test)."
        )
    return Path(root)


@pytest.fixture(scope="session")
def mnist(real_data):
    from mapscope.data import load_dataset

    return load_dataset("mnist", real_data)


@pytest.fixture(scope="session")
def cnn_run(real_data, tmp_path_factory):
    """The default CNN trained briefly on real MNIST (1 epoch on 6000 images, seed 0), on one
    thread: the same network whatever else the machine (or another xdist worker) is doing, and
    no spinning thread pool fighting the other worker for the cores."""
    from mapscope.cnn.train import TrainConfig, train

    config = TrainConfig(epochs=1, max_train=6000, lr=3e-3, schedule="none", threads=1)
    folder = built_once(
        tmp_path_factory, "cnn", lambda at: train(at / "run", config, data_root=real_data)
    )
    return folder / "run"


@pytest.fixture(scope="session")
def mlp_run(real_data, tmp_path_factory):
    """The default MLP trained briefly on real MNIST (8 epochs on 30000 images)."""
    from mapscope.mlp.train import MLPConfig, train

    config = MLPConfig(epochs=8, max_train=30000, lr=5e-4)
    folder = built_once(
        tmp_path_factory, "mlp", lambda at: train(at / "run", config, data_root=real_data)
    )
    return folder / "run"


@pytest.fixture(scope="session")
def ae_run(real_data, tmp_path_factory):
    """An MNIST autoencoder (latent 8) trained for 2 epochs on 4096 images (validated on 2000),
    in 256 steps at a constant rate: enough to get past rebuilding every image as the mean
    training image, where 64 steps of the default batch and schedule left it."""
    from mapscope.ae.spec import AESpec
    from mapscope.ae.train import AETrainConfig, train

    config = AETrainConfig(
        epochs=2, max_train=4096, max_test=2000, batch_size=32, schedule="none", seed=0, threads=1
    )
    spec = AESpec(latent=8, filters=(16, 32))
    folder = built_once(
        tmp_path_factory, "ae", lambda at: train(at / "run", config, spec, data_root=real_data)
    )
    return folder / "run"


@pytest.fixture(scope="session")
def lenet(real_data, tmp_path_factory):
    """LeNet-5 trained on 6000 real MNIST images with ToTensor + Normalize(0.1307, 0.3081)."""
    import torch
    from safetensors.torch import save_file
    from user_nets import LeNet5, fit

    from mapscope.data.bundle import DataBundle

    def build(folder: Path) -> None:
        bundle = DataBundle.create("mnist", "none", data_root=real_data)
        x = bundle.inputs("train", np.arange(6000), "nchw") / 255.0
        x = torch.from_numpy((x - 0.1307) / 0.3081)
        y = torch.from_numpy(bundle.labels("train", np.arange(6000)))
        net = fit(LeNet5(), x, y, epochs=2)
        save_file(net.state_dict(), folder / "lenet.safetensors")
        torch.save(net.state_dict(), folder / "lenet.pt")
        torch.jit.script(net).save(str(folder / "lenet_script.pt"))

    folder = built_once(tmp_path_factory, "lenet", build)
    net = LeNet5()
    net.load_state_dict(torch.load(folder / "lenet.pt"))
    return net.eval(), folder


@pytest.fixture()
def console(real_data):
    """Run ``python -m mapscope ARGS`` in a new interpreter, exactly as a user would;
    ``data=`` points MAPSCOPE_DATA elsewhere."""

    def run(*args, data=None) -> subprocess.CompletedProcess:
        env = {**os.environ, "MAPSCOPE_DATA": str(data or real_data)}
        return subprocess.run(
            [sys.executable, "-m", "mapscope", *map(str, args)],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
        )

    return run


@pytest.fixture()
def cli(mapscope, monkeypatch):
    """The command line through the console script's entry point, in this process (a new
    interpreter costs about 3 s of imports per command): a ``CompletedProcess`` with the exit
    code and what was printed; ``data=`` points MAPSCOPE_DATA elsewhere."""

    def run(*args, data=None) -> subprocess.CompletedProcess:
        with monkeypatch.context() as scoped:
            if data is not None:
                scoped.setenv("MAPSCOPE_DATA", str(data))
            code, out, err = mapscope(*args)
        return subprocess.CompletedProcess(list(map(str, args)), code, out, err)

    return run


@pytest.fixture()
def mapscope(capsys, real_data, monkeypatch):
    """The command line in-process, as the console script runs it: (exit code, stdout, stderr).
    Cheaper than ``cli`` (no new interpreter), for tests that run many commands."""
    from mapscope.cli.entry import run

    monkeypatch.setenv("MAPSCOPE_DATA", str(real_data))

    def call(*args):
        capsys.readouterr()
        with pytest.raises(SystemExit) as stop:
            run([str(a) for a in args])
        out, err = capsys.readouterr()
        assert "Traceback" not in out + err
        return stop.value.code or 0, out, err

    return call


ATLAS_LAYERS = ["Conv2D_1", "Max_Pool_2", "Conv2D_3", "Dense_1", "Dense_2"]


def small_atlas(run, data_root, site):
    """The atlas the tests browse: five layers, short OIP searches, image 1302 and the four
    most frequent confusions (cached beside the site)."""
    from mapscope.atlas import build_atlas
    from mapscope.atlas.build import cache_folder

    return build_atlas(
        run,
        layers=ATLAS_LAYERS,
        oip_steps=20,
        confused=4,
        images=[1302],
        data_root=data_root,
        cache_dir=cache_folder(site),
    )


@pytest.fixture(scope="session")
def atlas_site(cnn_run, real_data, tmp_path_factory):
    """The atlas of ``cnn_run``, built once: (Atlas, site folder)."""
    from mapscope.atlas import write_atlas

    site = tmp_path_factory.mktemp("atlas") / "site"
    atlas = small_atlas(cnn_run, real_data, site)
    write_atlas(atlas, site)
    return atlas, site


BROWSER_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.fail(
        "the browser test needs Chromium: `apt-get install -y chromium` (make test installs it "
        "when it may), or put a chromium binary on PATH."
    )


@pytest.fixture(scope="session")
def browser():
    """Debian's Chromium driven by Playwright, one per test session (atlas and live tests)."""
    from playwright.sync_api import sync_playwright

    executable = _chromium()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=BROWSER_FLAGS)
        yield browser
        browser.close()
