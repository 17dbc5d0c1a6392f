#!/usr/bin/env bash
# Builds checkpoint_fuzz with clang (libFuzzer, AddressSanitizer, UndefinedBehaviorSanitizer) in a
# build folder of its own and runs it for a bounded time over a corpus seeded with valid
# checkpoints. Exits non-zero when the fuzzer finds a crash, a leak, undefined behaviour or an
# exception other than optreg::CheckpointError; the input is then kept in the build folder.
#
#   tests/fuzz/run.sh [SECONDS]     (default 60)
#
# Environment: OPTREG_FUZZ_BUILD_DIR (default build-fuzz), OPTREG_JOBS (build jobs, default 1).
set -euo pipefail
seconds=${1:-60}
cd "$(dirname "$0")/../.."
build=${OPTREG_FUZZ_BUILD_DIR:-build-fuzz}

cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++ -DOPTREG_BUILD_PYTHON=OFF -DOPTREG_BUILD_TORCH=OFF \
  -DOPTREG_FUZZ=ON -DOPTREG_WERROR=ON -DOPTREG_BUILD_EXAMPLES=OFF >/dev/null
cmake --build "$build" -j "${OPTREG_JOBS:-1}" --target checkpoint_fuzz checkpoint_fuzz_seeds

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
work="$build/fuzz"
mkdir -p "$work/corpus"
plugin() { find "$build" -name "liboptreg_$1.so" -print -quit; }
"$build/bin/checkpoint_fuzz_seeds" "$work/seeds" "$(plugin sgd)" "$(plugin adam)"

# The first corpus folder receives what the fuzzer learns; the seeds are read only.
"$build/bin/checkpoint_fuzz" "$work/corpus" "$work/seeds" \
  -max_total_time="$seconds" -rss_limit_mb=512 -malloc_limit_mb=512 -max_len=8192 -timeout=30 \
  -dict=tests/fuzz/checkpoint.dict -artifact_prefix="$work/" -print_final_stats=1
