#!/usr/bin/env bash
# The main job: verify the data, train the CNN and the MLP, evaluate them, look inside the CNN,
# and run the clustering studies. Everything lands in one folder (default runs/demo).
set -euo pipefail
out=${1:-runs/demo}
mapscope() { .venv/bin/mapscope "$@"; }
mkdir -p "$out"

echo "== data"
mapscope data fetch mnist fashion-mnist wifi
mapscope data check
mapscope data show mnist --split test --index 1302 --index 1816 --index 1270 --index 1249 --out "$out/digits.png"

echo "== CNN: train the reference network (about a minute on 2 cores), then use it"
mapscope cnn summary
mapscope cnn train --out "$out/cnn" --overwrite  # a second demo replaces the first one's runs
mapscope cnn predict --model "$out/cnn" --index 1302 --index 1816
mapscope evaluate --model "$out/cnn" --gallery 4 --out "$out/cnn/evaluation"

echo "== looking inside the CNN"
for layer in Conv2D_1 Max_Pool_1 Conv2D_2 Max_Pool_2 Conv2D_3 Dense_1; do
  mapscope activations --model "$out/cnn" --layer "$layer" --index 1302 --out "$out/activations/$layer.png"
done
mapscope compare --model "$out/cnn" --layer Conv2D_3 --classes 4,9 --out "$out/compare_4_vs_9"
mapscope compare --model "$out/cnn" --layer Conv2D_2 --indices 1816,1270,1302 --vs 1249,1410,1858 \
  --out "$out/compare_groups"
mapscope oip --model "$out/cnn" --layer Conv2D_3 --snapshots 0,5 --out "$out/oip_Conv2D_3"

echo "== numpy MLP"
mapscope mlp train --out "$out/mlp" --overwrite
mapscope evaluate --model "$out/mlp" --gallery 4 --out "$out/mlp/evaluation"

echo "== clustering"
mapscope kmeans classify --dataset wifi --out "$out/kmeans_wifi"
mapscope kmeans analyze --dataset wifi --out "$out/kmeans_wifi_analysis"
mapscope pca --dataset wifi --out "$out/pca_wifi"
mapscope kmeans classify --dataset mnist --clusters 10,40,100 --mode split --out "$out/kmeans_mnist"

echo "demo outputs are in $out"
