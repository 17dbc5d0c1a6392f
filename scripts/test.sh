#!/usr/bin/env bash
# Builds optreg with warnings as errors and runs the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
optreg_install_deps
cmake -S . -B build-test -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DOPTREG_WERROR=ON
cmake --build build-test -j2
cd build-test
ctest --output-on-failure -j2
