"""The package as a user installs it: build the wheel and the sdist, install the wheel into a
fresh virtual environment, and run the command line from outside the checkout.

Run by ``make wheel-check`` (CI runs it after the tests). It checks that the templates,
JavaScript and stylesheets are inside the wheel (the atlas is built from the installed
package, not from ``src/``), that the version comes from ``mapscope.__version__``, and that
``mapscope --help``, ``mapscope data check`` and one short training work installed: on a CPU
with a level the wheel ships the kernels compiled for (``cnn/kernel_cache.py``), compiling
nothing; elsewhere the check having started the kernels' compile in the background and the
training having waited for it.

The fresh environment borrows the dependencies of the development environment through a
``.pth`` line (so torch is not installed a second time); the package itself comes only from the
wheel, and the script checks that ``import mapscope`` finds it there.
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import sysconfig
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def step(name: str, command: list[str], cwd: Path, env: dict[str, str]) -> str:
    began = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - began
    if done.returncode != 0:
        print(done.stdout[-3000:], done.stderr[-3000:], sep="\n", file=sys.stderr)
        raise SystemExit(f"wheel check failed at '{name}' (exit {done.returncode})")
    print(f"  {name:<52} {seconds:6.1f} s")
    return done.stdout + done.stderr


def main() -> None:
    from mapscope import __version__

    work = Path(tempfile.mkdtemp(prefix="mapscope-wheel-"))
    try:
        print(f"wheel check in {work}")
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        env["MAPSCOPE_BACKGROUND_COMPILE"] = "1"  # as a user's shell has it
        step(
            "build wheel and sdist",
            [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(work / "dist"), "."],
            ROOT,
            env,
        )
        wheel = next((work / "dist").glob("mapscope-*.whl"))
        sdist = next((work / "dist").glob("mapscope-*.tar.gz"))
        assert wheel.name.startswith(f"mapscope-{__version__}-"), wheel.name
        assert sdist.name == f"mapscope-{__version__}.tar.gz", sdist.name
        inside = set(zipfile.ZipFile(wheel).namelist())
        for needed in (
            "mapscope/atlas/templates/unit.html",
            "mapscope/atlas/static/viewer.js",
            "mapscope/live/static/live.js",
            "mapscope/cnn/kernel_cache/manifest.json",
        ):
            assert needed in inside, f"{needed} is missing from {wheel.name}"

        venv = work / "venv"
        step("fresh virtual environment", [sys.executable, "-m", "venv", str(venv)], work, env)
        python = venv / "bin" / "python"
        purelib = subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        borrowed = [sysconfig.get_paths()["purelib"], *site.getsitepackages()]
        (Path(purelib) / "borrowed-dependencies.pth").write_text(
            "\n".join(dict.fromkeys(borrowed)) + "\n"
        )
        step(
            "install the wheel (no index, no dependencies)",
            [str(python), "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", str(wheel)],
            work,
            env,
        )
        where = step(
            "import mapscope from the wheel",
            [str(python), "-c", "import mapscope; print(mapscope.__file__, mapscope.__version__)"],
            work,
            env,
        )
        assert where.startswith(purelib) and __version__ in where, where
        mapscope = str(venv / "bin" / "mapscope")
        step("mapscope --help", [mapscope, "--help"], work, env)
        shipped = subprocess.run(
            [
                str(python),
                "-c",
                "from mapscope.cnn import kernel_cache as k; print(k.ships_here())",
            ],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        # where the wheel ships the kernels compiled for this CPU's level, nothing compiles;
        # elsewhere the first command that does not train starts their compile in the
        # background, and the training right after waits for it
        checked = step("mapscope data check mnist", [mapscope, "data", "check", "mnist"], work, env)
        compiling = "compiling the CPU training kernels in the background" in checked
        assert compiling == (shipped == "False"), checked
        trained = step(
            "mapscope cnn train (1 epoch, 2000 images)",
            [
                mapscope,
                "cnn",
                "train",
                "--epochs",
                "1",
                "--max-train",
                "2000",
                "--max-test",
                "500",
                "--out",
                "run",
            ],
            work,
            env,
        )
        done = list(Path(purelib, "mapscope", "cnn", "__pycache__").glob("kernels-*.done"))
        assert done, "the background compile did not mark the installed kernels compiled"
        for line in trained.splitlines():
            if line.startswith("compiled the CPU training kernels"):
                assert shipped == "False", f"the shipped kernels were compiled again: {line}"
                print(f"    (the training waited for the background compile: {line})")
        if shipped == "True":
            print("    (the kernels came compiled with the wheel: kernel_cache)")
        step(
            "mapscope atlas (2 layers, templates from the wheel)",
            [
                mapscope,
                "atlas",
                "--model",
                "run",
                "--layers",
                "Conv2D_1,Dense_2",
                "--oip-steps",
                "5",
                "--confused",
                "1",
                "--methods",
                "saliency",
                "--out",
                "atlas",
            ],
            work,
            env,
        )
        for page in ("index.html", "images/view.html", "viewer.js", "layers/Conv2D_1/units/0.html"):
            assert (work / "atlas" / page).is_file(), f"the installed atlas lacks {page}"
        print(f"the wheel works installed: {wheel.name}, {sdist.name}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
