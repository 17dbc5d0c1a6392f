#!/usr/bin/env bash
# The main job: installs what is missing, builds optreg, lists the registry and trains a small
# model with optimizers loaded by name.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
optreg_install_deps
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build build -j2
echo
echo "== optreg list"
build/bin/optreg list
echo
echo "== train_spirals: a two-layer perceptron on two spirals, optimizers loaded by name"
build/bin/train_spirals sgd:lr=0.5,momentum=0.9 adam:lr=0.02
echo
echo "== the same model with Adam from a config"
build/bin/optreg check examples/configs/spirals-adam.yaml
build/bin/train_spirals --config examples/configs/spirals-adam.yaml
