#!/usr/bin/env bash
# The main job: installs what is missing, builds optreg (libraries, plugins, tool, examples),
# lists the registry, and compares SGD, SGD with momentum, Adam and AdamW on a Fashion-MNIST
# MLP, printing a table and writing a plot (runs/fmnist-compare/compare.svg); then Adam in
# float32, bfloat16 and with bfloat16 or int8 state (runs/fmnist-precision/).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
optreg_install_deps
# The test suite is built by scripts/test.sh, in its own folder.
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DOPTREG_BUILD_TESTS=OFF
cmake --build build -j2
echo
echo "== optreg list"
build/bin/optreg list
echo
echo "== optreg compare examples/configs/fmnist-compare.yaml"
build/bin/optreg compare examples/configs/fmnist-compare.yaml
echo
echo "== optreg compare examples/configs/fmnist-precision.yaml"
build/bin/optreg compare examples/configs/fmnist-precision.yaml
