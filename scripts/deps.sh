# Installs the Debian 12 packages that optreg needs to build and test, when any is missing
# (clang and its runtimes build the fuzzers: tests/fuzz/run.sh; OpenBLAS, zlib, the
# Fashion-MNIST files and gnuplot serve `optreg train` and `optreg compare`; xmllint checks
# the plots in the tests; CLI11 parses the tool's arguments and nlohmann-json writes its JSON,
# which the tests parse with it too; pybind11 builds the Python package, which pytest tests
# with numpy and PyTorch; libtorch builds optreg::torch, its test and example; Open MPI builds
# optreg::mpi and runs its tests and data-parallel `optreg train` with mpirun).
# Sourced by scripts/demo.sh and scripts/test.sh.
optreg_packages=(g++ cmake ninja-build pkg-config libboost-dev libboost-serialization-dev libboost-regex-dev libxxhash-dev libyaml-cpp-dev libgtest-dev
                 libcli11-dev nlohmann-json3-dev clang libclang-rt-14-dev
                 libopenblas-dev zlib1g-dev dataset-fashion-mnist gnuplot-nox libxml2-utils
                 pybind11-dev python3-dev python3-pytest python3-numpy python3-torch libtorch-dev
                 openmpi-bin libopenmpi-dev)

optreg_install_deps() {
  local missing=()
  local p
  for p in "${optreg_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "installing: ${missing[*]}"
  local sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  "${sudo[@]}" apt-get update -q
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
}
