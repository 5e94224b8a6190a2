"""The GPU paths, checked on a machine with a CUDA GPU: the project never needs one, so the test
suite (which runs on CPUs) cannot check them.

Runs the commands a GPU user runs, with ``--device auto`` (the GPU): the CNN trained (default
recipe, 2 epochs; then resumed for one more; then ``--recipe fast``), OIPs of ``Conv2D_3``, the
autoencoder trained and its latent study, and the live app's answer through its WebSocket with
the network on the GPU, compared with the same answer on the CPU. Prints one line per check
and where the runs went; exits 1 if any check fails.
Usage: MAPSCOPE_DATA=... python scripts/gpu_check.py [--out DIR]
"""

from __future__ import annotations

import argparse
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def mapscope(*args: str) -> float:
    """Run one command of the CLI; returns its wall-clock seconds."""
    began = time.perf_counter()
    subprocess.run([sys.executable, "-m", "mapscope", *args], check=True)
    return time.perf_counter() - began


def run_file(run: Path, name: str):
    """One of a run's JSON files (``metrics``, ``history``) as the run folder names it."""
    from mapscope.io import read_json
    from mapscope.runs import Run

    return read_json(Run.open(run).files[name])


def live_answers(run: Path) -> tuple[np.ndarray, np.ndarray, str]:
    """The live app's probabilities for one test image, network on the GPU and on the CPU."""
    from starlette.testclient import TestClient

    from mapscope.live import LiveModel, create_app, protocol
    from mapscope.runs import Run

    answers, where = [], ""
    for device in ("cuda", "cpu"):
        inspection = Run.open(run).inspection()
        inspection.net.to(device)
        live = LiveModel(inspection, alike_images=500)
        pixels = inspection.bundle.raw("test", [0])[0]
        h, w = pixels.shape
        frame = struct.pack("<BIBHH", protocol.DRAW, 1, 0, h, w) + pixels.tobytes()
        with TestClient(create_app(live)) as client, client.websocket_connect("/ws") as ws:
            ws.receive()  # hello
            ws.send_bytes(frame)
            answer = ws.receive()["bytes"]
        _, _, _, n = struct.unpack_from("<BIfH", answer)
        answers.append(np.frombuffer(answer, "<f4", n, 11).copy())
        where = where or str(live.device)  # where the first (the GPU's) answer came from
        live.close()
    return answers[0], answers[1], where


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=None, help="where the runs go (a temp dir)")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA GPU seen by torch: nothing to check here", file=sys.stderr)
        return 2
    out = args.out or Path(tempfile.mkdtemp(prefix="mapscope-gpu-"))
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}", flush=True)
    results: list[tuple[str, bool, str]] = []

    def check(name: str, ok: bool, detail: str) -> None:
        results.append((name, ok, detail))
        print(f"{'ok  ' if ok else 'FAIL'} {name}: {detail}", flush=True)

    cnn = out / "cnn"
    seconds = mapscope("cnn", "train", "--epochs", "2", "--out", str(cnn), "--overwrite")
    m = run_file(cnn, "metrics")
    history = run_file(cnn, "history")
    epochs = ", ".join(f"{h['seconds']:.2f}" for h in history)
    check(
        "cnn train --epochs 2",
        m["device"].startswith("cuda") and m["test_accuracy"] > 0.985,
        f"device {m['device']}, {m['precision']}, epochs {epochs} s, "
        f"test {m['test_accuracy']:.4f}, command {seconds:.1f} s",
    )
    mapscope("cnn", "train", "--epochs", "1", "--resume", str(cnn))
    resumed = run_file(cnn, "metrics")
    check(
        "cnn train --resume",
        resumed["epochs"] == 3 and resumed["device"].startswith("cuda"),
        f"{resumed['epochs']} epochs, test {resumed['test_accuracy']:.4f}",
    )
    fast = out / "fast"
    mapscope("cnn", "train", "--recipe", "fast", "--out", str(fast), "--overwrite")
    f = run_file(fast, "metrics")
    check(
        "cnn train --recipe fast",
        f["test_accuracy"] > 0.985,
        f"{f['train_seconds']:.2f} s of training, test {f['test_accuracy']:.4f}",
    )
    oip = out / "oip"
    seconds = mapscope("oip", "--model", str(cnn), "--layer", "Conv2D_3", "--out", str(oip))
    images = sorted(p.name for p in oip.rglob("*.png"))
    check("oip --layer Conv2D_3", bool(images), f"{len(images)} images in {seconds:.1f} s")
    ae = out / "ae"
    seconds = mapscope(
        "ae", "train", "--epochs", "2", "--latent", "2", "--out", str(ae), "--overwrite"
    )
    a = run_file(ae, "metrics")
    check(
        "ae train --epochs 2 --latent 2",
        a["device"].startswith("cuda") and np.isfinite(a["test_loss"]),
        f"device {a['device']}, {a['precision']}, test loss {a['test_loss']:.4f}, "
        f"command {seconds:.1f} s",
    )
    latent = out / "latent"
    seconds = mapscope("ae", "latent", "--model", str(ae), "--out", str(latent))
    check("ae latent", any(latent.rglob("*.png")), f"{seconds:.1f} s")
    on_gpu, on_cpu, where = live_answers(cnn)
    check(
        "live answer, network on the GPU",
        where.startswith("cuda") and np.allclose(on_gpu, on_cpu, atol=1e-4),
        f"answered on {where}; largest difference from the CPU's probabilities "
        f"{np.abs(on_gpu - on_cpu).max():.2e}",
    )
    print(f"runs in {out}")
    return 0 if all(ok for _, ok, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
