#!/bin/sh
# gen_symbols.sh [MAP] — print debian/libquantnpu0.symbols from the linker version script.
#
#   sh tools/gen_symbols.sh lib/libquantnpu.map > debian/libquantnpu0.symbols   (make deb-symbols)
#
# Every symbol of version node QNPU_X.Y gets the minimal version X.Y.0, the first release that
# exports it (docs/abi.md: one node per release), and the node itself is listed as
# QNPU_X.Y@QNPU_X.Y, as dpkg-gensymbols reports it. The packages built against the library then
# depend on libquantnpu0 (>= X.Y.0) for the newest node they use. test/deb/check_debian.sh
# compares the committed file with this output.
set -eu
MAP=${1:-lib/libquantnpu.map}
[ -r "$MAP" ] || { echo "gen_symbols.sh: cannot read $MAP" >&2; exit 1; }

echo "libquantnpu.so.0 libquantnpu0 #MINVER#"
echo "* Build-Depends-Package: libquantnpu-dev"
awk '
    /^[ \t]*QNPU_[0-9]+\.[0-9]+[ \t]*\{/ {
        node = $1; sub(/\{.*/, "", node)
        ver = node; sub(/^QNPU_/, "", ver)
        printf " %s@%s %s.0\n", node, node, ver
        next
    }
    /^[ \t]*}/ { node = ""; next }
    node != "" && /^[ \t]*qnpu_[A-Za-z0-9_]+[ \t]*;/ {
        sym = $1; sub(/;.*/, "", sym)
        printf " %s@%s %s.0\n", sym, node, ver
    }
' "$MAP" | LC_ALL=C sort
