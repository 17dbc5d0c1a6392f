#!/usr/bin/env bash
# Builds the benchmarks (Release, with libtorch as the peer when libtorch-dev is installed) and
# runs them: step throughput against each optimizer's same-traffic ceiling and libtorch, then checkpoint
# throughput against plain write()/read(), then optreg.torch.Optimizer against torch.optim.
# Arguments go to step_bench (--threads 1,2 ...).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
optreg_install_deps
cmake -S . -B build-bench -G Ninja -DCMAKE_BUILD_TYPE=Release -DOPTREG_BUILD_BENCHMARKS=ON -DOPTREG_BUILD_TESTS=OFF
cmake --build build-bench -j2
build-bench/bin/step_bench "$@"
echo
build-bench/bin/checkpoint_bench "${TMPDIR:-/tmp}"
if [ -d build-bench/python/optreg ]; then
  echo
  PYTHONPATH=build-bench/python /usr/bin/python3 tests/bench/torch_optimizer_bench.py
fi
