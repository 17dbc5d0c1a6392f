#!/bin/bash
# exported_symbols.sh library|plugin FILE...
#
# Lists the dynamic symbols each shared library defines (nm -D --defined-only, demangled) and
# fails, naming the offenders, on any symbol that is not part of what it may export:
#   library: optreg's public API, i.e. names in the optreg namespace and the vtables, typeinfo,
#            thunks and guard variables of its classes (template instantiations of the standard
#            library over optreg types must not leak);
#   plugin:  the descriptor alias optreg_plugin_descriptor and nothing else.
set -euo pipefail
mode=$1
shift
case "$mode" in
  library) allowed='^((typeinfo|typeinfo name|vtable|VTT|guard variable) for |(non-)?virtual thunk to )?optreg::' ;;
  plugin) allowed='^optreg_plugin_descriptor$' ;;
  *) echo "usage: exported_symbols.sh library|plugin FILE..." >&2; exit 2 ;;
esac

status=0
for file in "$@"; do
  # The symbol's name follows its value and type letter (undefined ones are not listed).
  symbols=$(nm -D --defined-only -C "$file" | sed -E 's/^[0-9a-fA-F]* *[A-Za-z] //')
  if [ -z "$symbols" ]; then
    echo "$file: exports no symbol at all" >&2
    status=1
    continue
  fi
  offenders=$(grep -vE "$allowed" <<<"$symbols" || true)
  if [ -n "$offenders" ]; then
    echo "$file exports $(wc -l <<<"$offenders") symbol(s) outside its API:" >&2
    sed 's/^/  /' <<<"$offenders" >&2
    status=1
  else
    echo "$file: $(wc -l <<<"$symbols") dynamic symbol(s), all of its API"
  fi
done
exit $status
