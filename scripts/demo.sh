#!/usr/bin/env bash
# The main job: verify the data, train the CNN and the MLP, evaluate them, look inside the CNN,
# run the clustering studies, and train and study autoencoders, each kept short (about 3 minutes
# on 2 cores; the README gives the full-length commands). Everything lands in one folder
# (default runs/demo).
set -euo pipefail
out=${1:-runs/demo}
mapscope() { .venv/bin/mapscope "$@"; }
mkdir -p "$out"

echo "== data"
mapscope data fetch mnist fashion-mnist wifi
mapscope data show mnist --split test --index 1302 --index 1816 --index 1270 --index 1249 --out "$out/digits.png"

echo "== CNN: train the reference network (2 epochs here, about 25 s on 2 cores), then use it"
mapscope cnn summary
mapscope cnn train --epochs 2 --out "$out/cnn" --overwrite  # a second demo replaces the first one's runs
mapscope evaluate --model "$out/cnn" --gallery 4 --out "$out/cnn/evaluation"

echo "== looking inside the CNN"
mapscope activations --model "$out/cnn" --layer Conv2D_1,Max_Pool_1,Conv2D_2,Max_Pool_2,Conv2D_3,Dense_1 \
  --index 1302 --out "$out/activations"  # one forward pass, one LAYER.png per layer
mapscope compare --model "$out/cnn" --layer Conv2D_3 --classes 4,9 --out "$out/compare_4_vs_9"
mapscope compare --model "$out/cnn" --layer Conv2D_2 --indices 1816,1270,1302 --vs 1249,1410,1858 \
  --out "$out/compare_groups"
mapscope oip --model "$out/cnn" --layer Conv2D_3 --maps 0..31 --snapshots 0,5 --out "$out/oip_Conv2D_3"

echo "== numpy MLP"
mapscope mlp train --epochs 15 --out "$out/mlp" --overwrite

echo "== the atlas: a website of each network (a page per layer, unit, class and chosen image)"
mapscope atlas --model "$out/cnn" --images 1302,1816,1270,1249 --out "$out/atlas"
mapscope atlas --model "$out/mlp" --images 1302 --out "$out/atlas_mlp"
mapscope attribute --model "$out/cnn" --index 1302 --index 1249 --out "$out/attributions.png"

echo "== clustering"
mapscope kmeans classify --dataset wifi --out "$out/kmeans_wifi"
mapscope kmeans analyze --dataset wifi --out "$out/kmeans_wifi_analysis"
mapscope pca --dataset wifi --out "$out/pca_wifi"

echo "== autoencoders: train, reconstruct, the latent space, generation judged by the CNN"
mapscope ae train --dataset mnist --latent 16 --epochs 1 --out "$out/ae" --overwrite
mapscope ae reconstruct --model "$out/ae" --index 0 --index 1 --index 2 --index 3 --index 1302 \
  --out "$out/ae/reconstructions.png"
mapscope ae latent --model "$out/ae" --out "$out/ae_latent"
mapscope ae generate --model "$out/ae" --judge "$out/cnn" --n 300 --out "$out/ae_generate"
mapscope activations --model "$out/ae" --layer Dec_Conv_1 --index 1302 --out "$out/ae/Dec_Conv_1.png"
mapscope ae train --dataset mnist --latent 2 --epochs 2 --max-train 5000 --out "$out/ae_2d" --overwrite
mapscope ae latent --model "$out/ae_2d" --out "$out/ae_2d_latent"  # manifold.png: the decoded plane
# faces: a folder of your photos (FACES=path/to/img_align_celeba), else the Olivetti faces that
# scikit-learn downloads when online
faces=${FACES:+folder:$FACES}
if mapscope ae train --dataset "${faces:-olivetti-faces}" --image-size 64 --filters 32,64,128 \
  --latent 32 --epochs 10 --max-train 20000 --out "$out/ae_faces" --overwrite; then
  mapscope ae latent --model "$out/ae_faces" --out "$out/ae_faces_latent"
  mapscope ae generate --model "$out/ae_faces" --out "$out/ae_faces_generate"
else
  echo "(no face images here: offline and FACES unset; the face runs are left out)"
fi

echo "demo outputs are in $out; open $out/atlas/index.html in a browser to browse the CNN"
