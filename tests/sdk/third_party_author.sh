#!/usr/bin/env bash
# Plays a third-party plugin author: installs optreg into a temporary prefix, builds the
# template project and the plugin guide's files out of tree against that prefix alone, then
# checks that `optreg list` shows each new optimizer and that the conformance kit passes.
#   third_party_author.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build_dir=$1
source_dir=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
prefix=$work/prefix

cmake --install "$build_dir" --prefix "$prefix" > "$work/install.log"
export OPTREG_PLUGIN_PATH=

echo "== sdk/template"
cp -r "$source_dir/sdk/template" "$work/template"
cmake -S "$work/template" -B "$work/template/build" -G Ninja -DCMAKE_PREFIX_PATH="$prefix" > "$work/template.log"
cmake --build "$work/template/build" -j2 >> "$work/template.log"
(cd "$work/template/build" && ctest --output-on-failure)
"$prefix/bin/optreg" list --plugin-path "$work/template/build" | tee "$work/list.txt"
grep -q '^signum  1.0.0' "$work/list.txt"
"$prefix/bin/optreg" conformance "$work/template/build/liboptreg_signum.so"

echo "== docs/plugin-guide.md, followed literally"
mkdir "$work/guide"
# Every fenced block preceded by '<!-- file: NAME -->' is the file NAME (a second block for the
# same NAME is appended to it).
awk -v dir="$work/guide" '
  /^<!-- file: .* -->$/ { name = $3; next }
  name != "" && /^```/ && !inside { inside = 1; next }
  inside && /^```$/ { inside = 0; name = ""; next }
  inside { print > (dir "/" name) }
' "$source_dir/docs/plugin-guide.md"
test -s "$work/guide/CMakeLists.txt" && test -s "$work/guide/adabelief.cpp"
cd "$work/guide"
cmake -S . -B build -DCMAKE_PREFIX_PATH="$prefix" > "$work/guide.log"
cmake --build build >> "$work/guide.log"
"$prefix/bin/optreg" list --plugin-path build | tee "$work/list.txt"
grep -q '^adabelief  1.0.0' "$work/list.txt"
grep -q '^inverse_sqrt  1.0.0' "$work/list.txt"
"$prefix/bin/optreg" show adabelief --plugin-path build
"$prefix/bin/optreg" conformance build/libadabelief.so
"$prefix/bin/optreg" conformance build/libmy_schedulers.so
echo "third-party author: template and guide plugins build, load and conform"
