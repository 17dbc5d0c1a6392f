#!/usr/bin/env bash
# Builds the host program of host/ in a temporary folder and runs it, with optreg's source tree
# added by add_subdirectory(), or with optreg's build folder installed into a temporary prefix
# and found by find_package().
#   consume.sh subdirectory SOURCE_DIR CXX_COMPILER
#   consume.sh package SOURCE_DIR CXX_COMPILER BUILD_DIR
#   consume.sh torch-package SOURCE_DIR CXX_COMPILER BUILD_DIR   (torch_host/: optreg::torch)
# A compiler launcher (ccache) is taken from CMAKE_CXX_COMPILER_LAUNCHER in the environment.
set -euo pipefail
mode=$1
source_dir=$2
compiler=$3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
host=$work/host
# Paths below the temporary folder read the same in every run, so that ccache can hit.
export CCACHE_BASEDIR=$work
export OPTREG_PLUGIN_PATH=

# The value of a cache entry of the host's build folder.
cache_value() { sed -n "s/^$1:[A-Z]*=//p" "$host/CMakeCache.txt"; }

host_source=$source_dir/tests/consumer/host
[ "$mode" = torch-package ] && host_source=$source_dir/tests/consumer/torch_host
configure=(cmake -S "$host_source" -B "$host" -G Ninja -DCMAKE_CXX_COMPILER="$compiler")
if [ "$mode" = subdirectory ]; then
  "${configure[@]}" -DHOST_OPTREG_SOURCE_DIR="$source_dir" > "$work/configure.log"
  # A subproject leaves the build type to its host and builds no tests, examples or tools.
  for option in OPTREG_BUILD_TESTS OPTREG_BUILD_EXAMPLES OPTREG_BUILD_TOOLS OPTREG_INSTALL; do
    value=$(cache_value "$option")
    [ "$value" = OFF ] || { echo "$option is '$value' in a subproject, expected OFF"; exit 1; }
  done
  value=$(cache_value CMAKE_BUILD_TYPE)
  [ -z "$value" ] || { echo "the host's build type was set to '$value'"; exit 1; }
else
  cmake --install "$4" --prefix "$work/prefix" > "$work/install.log"
  "${configure[@]}" -DCMAKE_PREFIX_PATH="$work/prefix" > "$work/configure.log"
fi
cmake --build "$host" -j2 > "$work/build.log" || { cat "$work/build.log"; exit 1; }
if [ "$mode" = subdirectory ]; then
  # Only what the host needs was built: of the plugins, the one it loads.
  plugins=$(find "$host" -name 'liboptreg_*.so' ! -name liboptreg_base.so -printf '%f ')
  [ "$plugins" = "liboptreg_sgd.so " ] || { echo "built plugins: $plugins; expected liboptreg_sgd.so alone"; exit 1; }
fi
"$host/host" | tee "$work/run.txt"
if [ "$mode" = torch-package ]; then
  grep -qx 'host: libtorch tensor stepped by sgd to 0.500 0.500' "$work/run.txt"
  echo "host: builds against optreg::torch ($mode) and steps sgd"
  exit 0
fi
grep -qx 'host: sgd stepped w to 0.950 2.050' "$work/run.txt"
echo "host: builds against optreg ($mode) and steps sgd"
