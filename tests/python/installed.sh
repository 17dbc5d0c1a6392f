#!/usr/bin/env bash
# Installs this build into a temporary prefix with `cmake --install` and imports the installed
# package from elsewhere, with the build tree out of sight: the module must find optreg's
# libraries and in-tree plugins through its install RPATH.
# Usage: installed.sh BUILD_DIR PYTHON PACKAGE_DIR_RELATIVE_TO_PREFIX
set -euo pipefail
build=$1 python=$2 package=$3
prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
cmake --install "$build" --prefix "$prefix" >/dev/null
cd "$prefix"
PYTHONPATH="$prefix/$(dirname "$package")" OPTREG_PLUGIN_PATH= PYTHONDONTWRITEBYTECODE=1 "$python" - "$prefix" <<'PY'
import sys
import numpy as np
import optreg
prefix = sys.argv[1]
assert optreg.__file__.startswith(prefix), optreg.__file__
source = optreg.default_registry().describe("adam")["source"]
assert source.startswith(prefix), source
w = np.ones(3, np.float32)
opt = optreg.create("adam", [w], lr=0.5)
opt.set_grads([np.ones(3, np.float32)])
opt.step()
assert (w < 1).all()
print("installed package: %d optimizers from %s" % (len(optreg.names()), source))
PY
