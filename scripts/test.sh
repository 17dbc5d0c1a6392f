#!/usr/bin/env bash
# Builds optreg with warnings as errors and runs the whole test suite; then builds and runs it a
# second time under AddressSanitizer and UndefinedBehaviorSanitizer (build-asan), and fuzzes the
# checkpoint reader for a bounded time (tests/fuzz/run.sh). Fails when any pass fails.
#
# Environment: OPTREG_JOBS (build and test jobs, default 2), OPTREG_FUZZ_SECONDS (default 60).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
optreg_install_deps

jobs=${OPTREG_JOBS:-2}
fuzz_seconds=${OPTREG_FUZZ_SECONDS:-60}

echo "== pass 1: the test suite"
cmake -S . -B build-test -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DOPTREG_WERROR=ON
cmake --build build-test -j"$jobs"
(cd build-test && ctest --output-on-failure -j"$jobs") | tee build-test/ctest.log

echo "== pass 2: the test suite under AddressSanitizer and UndefinedBehaviorSanitizer"
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DOPTREG_WERROR=ON -DOPTREG_SANITIZE=ON \
  -DOPTREG_BUILD_PYTHON=OFF -DOPTREG_BUILD_TORCH=OFF -DOPTREG_BUILD_MPI=OFF
cmake --build build-asan -j"$jobs"
# The third-party author's and the host's tests link uninstrumented projects against the
# installed, here instrumented, libraries, which AddressSanitizer cannot run (and the host's
# build of optreg's sources is the same in both passes); pass 1 covers them. For the same
# reason the Python package (loaded by an uninstrumented interpreter) and optreg::torch (with
# the uninstrumented libtorch) are tested in pass 1 only, and so is optreg::mpi, whose ranks
# run inside the uninstrumented Open MPI runtime (its own allocations would be reported as
# leaks); the sharded checkpoint reader it shares with the core is tested in both passes.
(cd build-asan &&
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --output-on-failure -j"$jobs" -E '^(Sdk\.ThirdPartyAuthor|Consumer\.)') | tee build-asan/ctest.log

echo "== pass 3: fuzzing the checkpoint reader for ${fuzz_seconds} s"
OPTREG_JOBS=$jobs bash tests/fuzz/run.sh "$fuzz_seconds"

# One closing line over both test passes (each pass already stopped the script on a failure).
awk '/tests passed, [0-9]+ tests failed out of/ { total += $NF; failed += $4 }
     END { printf "optreg: %d passed, %d failed\n", total - failed, failed }' build-test/ctest.log build-asan/ctest.log
