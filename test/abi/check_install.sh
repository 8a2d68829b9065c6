#!/bin/sh
# check_install.sh BUILD — install into a staging root, build the example through pkg-config
# (shared and static), run it, then uninstall and check that nothing is left behind.
set -eu
B=$1
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
ROOT=$TMP/root
PREFIX=/usr/local
pass=0
fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }

make --no-print-directory -s B="$B" DESTDIR="$ROOT" PREFIX="$PREFIX" install >/dev/null
export PKG_CONFIG_PATH="$ROOT$PREFIX/lib/pkgconfig" PKG_CONFIG_SYSROOT_DIR="$ROOT"
[ "$(pkg-config --modversion libquantnpu)" = "$(sed -n 's/^#define QNPU_VERSION_STRING "\(.*\)"/\1/p' include/quantnpu.h)" ] \
    && ok || bad "pkg-config version"
[ -x "$ROOT$PREFIX/bin/quantnpu" ] && ok || bad "quantnpu not installed"
[ -f "$ROOT$PREFIX/share/man/man1/quantnpu.1" ] && [ -f "$ROOT$PREFIX/share/man/man3/libquantnpu.3" ] \
    && ok || bad "the man pages are not installed"

# shared
${CC:-cc} examples/01_generate.c $(pkg-config --cflags --libs libquantnpu) -o "$TMP/ex_shared" && ok || bad "build against the shared library"
LD_LIBRARY_PATH="$ROOT$PREFIX/lib" "$TMP/ex_shared" >"$TMP/out" && ok || bad "run against the shared library"
readelf -d "$TMP/ex_shared" | grep -q 'NEEDED.*libquantnpu.so.0' && ok || bad "example does not need the SONAME"
# static
${CC:-cc} examples/01_generate.c $(pkg-config --cflags libquantnpu) -o "$TMP/ex_static" \
    "$ROOT$PREFIX/lib/libquantnpu.a" $(pkg-config --libs-only-l --static libquantnpu | sed 's/-lquantnpu//') \
    && ok || bad "build against the static library"
"$TMP/ex_static" >/dev/null && ok || bad "run the static example"

make --no-print-directory -s B="$B" DESTDIR="$ROOT" PREFIX="$PREFIX" uninstall >/dev/null
left=$(find "$ROOT" -type f -o -type l)
[ -z "$left" ] && ok || bad "uninstall left: $left"

echo "install: $pass passed, $fail failed"
[ "$fail" = 0 ]
