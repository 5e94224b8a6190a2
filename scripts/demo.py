"""The main job: verify the data, train the CNN and the MLP, evaluate them, look inside the CNN,
build the atlas of both, run the clustering studies, and train and study an autoencoder, each
kept short (under 3 minutes on 2 cores; the README gives the full-length commands). Everything
lands in one folder (default runs/demo).

Each step is an ordinary `mapscope ...` command, printed before it runs, so the transcript can be
replayed in a shell. They run in this one Python process through the same entry point as the
console script: a shell pays about 3 s per command for starting Python and importing torch,
which would be a quarter of the demo.

    python scripts/demo.py [OUT]         (make demo)
    FACES=path/to/img_align_celeba python scripts/demo.py   also trains on faces
"""

from __future__ import annotations

import os
import shlex
import sys
import time
from pathlib import Path

from mapscope.cli.main import run


def mapscope(command: str) -> None:
    """Run one command line as the console script would; stop the demo at the first failure."""
    print(f"\n$ mapscope {command}", flush=True)
    try:
        run(shlex.split(command))
    except SystemExit as stop:
        if stop.code:
            sys.exit(stop.code)


def section(title: str) -> None:
    print(f"\n== {title}", flush=True)


def main(out: Path) -> None:
    began = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    o, cnn, ae = (shlex.quote(str(p)) for p in (out, out / "cnn", out / "ae"))

    section("data")
    mapscope("data fetch mnist fashion-mnist wifi")
    mapscope(
        f"data show mnist --split test --index 1302 --index 1816 --index 1270 --index 1249 "
        f"--out {o}/digits.png"
    )

    section("CNN: the reference network (1 epoch here: 99.0 %, about 10 s on 2 cores), then use it")
    mapscope("cnn summary")
    mapscope(f"cnn train --epochs 1 --out {cnn} --overwrite")  # replaces an earlier demo's run
    mapscope(f"evaluate --model {cnn} --gallery 4 --out {cnn}/evaluation")

    section("looking inside the CNN")
    layers = "Conv2D_1,Max_Pool_1,Conv2D_2,Max_Pool_2,Conv2D_3,Dense_1"  # one forward pass
    mapscope(f"activations --model {cnn} --layer {layers} --index 1302 --out {o}/activations")
    mapscope(f"compare --model {cnn} --layer Conv2D_3 --classes 4,9 --out {o}/compare_4_vs_9")
    mapscope(
        f"compare --model {cnn} --layer Conv2D_2 --indices 1816,1270,1302 --vs 1249,1410,1858 "
        f"--out {o}/compare_groups"
    )
    mapscope(
        f"oip --model {cnn} --layer Conv2D_3 --maps 0..31 --snapshots 0,5 --out {o}/oip_Conv2D_3"
    )
    mapscope(f"attribute --model {cnn} --index 1302 --index 1249 --out {o}/attributions.png")

    section("numpy MLP")
    mapscope(f"mlp train --epochs 10 --out {o}/mlp --overwrite")

    section("the atlas: a website of each network (a page per layer, unit, class and chosen image)")
    mapscope(f"atlas --model {cnn} --images 1302,1816,1270,1249 --oip-steps 150 --out {o}/atlas")
    mapscope(f"atlas --model {o}/mlp --images 1302 --out {o}/atlas_mlp")

    section("clustering")
    mapscope(f"kmeans classify --dataset wifi --out {o}/kmeans_wifi")
    mapscope(f"kmeans analyze --dataset wifi --out {o}/kmeans_wifi_analysis")
    mapscope(f"pca --dataset wifi --out {o}/pca_wifi")

    section("autoencoders: train, reconstruct, the latent space, generation judged by the CNN")
    mapscope(f"ae train --dataset mnist --latent 16 --epochs 1 --out {ae} --overwrite")
    mapscope(
        f"ae reconstruct --model {ae} --index 0 --index 1 --index 2 --index 3 --index 1302 "
        f"--out {ae}/reconstructions.png"
    )
    mapscope(f"ae latent --model {ae} --out {o}/ae_latent")
    mapscope(f"ae generate --model {ae} --judge {cnn} --n 300 --out {o}/ae_generate")
    mapscope(f"activations --model {ae} --layer Dec_Conv_1 --index 1302 --out {ae}/Dec_Conv_1.png")
    mapscope(
        f"ae train --dataset mnist --latent 2 --epochs 4 --max-train 20000 --out {o}/ae_2d "
        "--overwrite"
    )  # 4 x 20000 images are about the least that unfolds the plane (BCE 0.223 per pixel);
    # 2 x 5000 left the codes on a line that decodes to one blur everywhere
    mapscope(f"ae latent --model {o}/ae_2d --out {o}/ae_2d_latent")  # manifold.png: the plane

    faces = os.environ.get("FACES")  # an image folder (e.g. CelebA's), or olivetti-faces online
    if faces:
        section("faces")
        data = shlex.quote(f"folder:{faces}" if Path(faces).is_dir() else faces)
        mapscope(
            f"ae train --dataset {data} --image-size 64 --filters 32,64,128 --latent 32 "
            f"--epochs 10 --max-train 20000 --out {o}/ae_faces --overwrite"
        )
        mapscope(f"ae latent --model {o}/ae_faces --out {o}/ae_faces_latent")
        mapscope(f"ae generate --model {o}/ae_faces --out {o}/ae_faces_generate")
    else:
        print("\n(faces left out: set FACES to an image folder, or to olivetti-faces when online)")

    minutes, seconds = divmod(time.perf_counter() - began, 60)
    print(
        f"\ndemo done in {int(minutes)} min {seconds:.0f} s; outputs are in {out}; open "
        f"{out / 'atlas' / 'index.html'} in a browser to browse the CNN"
    )
    print(
        "draw a digit and watch the CNN think, live (Ctrl-C stops it):\n"
        f"  mapscope live --model {out / 'cnn'} --atlas {out / 'atlas'} --open"
    )


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/demo"))
