#!/bin/sh
# check_debian.sh — debian/ agrees with the tree (run by make check-debian, no build needed):
#   - debian/libquantnpu0.symbols is what tools/gen_symbols.sh makes of lib/libquantnpu.map
#     (regenerate with `make deb-symbols`);
#   - the map's newest version node is not newer than the header's version;
#   - debian/changelog's version is the header's QNPU_VERSION_STRING;
#   - every build library, compiler and test module that `make deps` installs is in Build-Depends;
#   - libquantnpu-dev depends on the -dev package of every module in the .pc file's Requires lines.
set -eu
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
pass=0
fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }

# 1. the symbols file
sh tools/gen_symbols.sh lib/libquantnpu.map >"$TMP/symbols"
if diff -u debian/libquantnpu0.symbols "$TMP/symbols" >"$TMP/diff"; then
    ok
else
    bad "debian/libquantnpu0.symbols differs from lib/libquantnpu.map (run: make deb-symbols):"
    cat "$TMP/diff"
fi

# 2. the newest node against the header's MAJOR.MINOR
major=$(sed -n 's/^#define QNPU_VERSION_MAJOR \([0-9]*\)$/\1/p' include/quantnpu.h)
minor=$(sed -n 's/^#define QNPU_VERSION_MINOR \([0-9]*\)$/\1/p' include/quantnpu.h)
version=$(sed -n 's/^#define QNPU_VERSION_STRING "\(.*\)"$/\1/p' include/quantnpu.h)
newest=$(sed -n 's/^ *QNPU_\([0-9]*\.[0-9]*\) *{.*/\1/p' lib/libquantnpu.map | sort -t. -k1,1n -k2,2n | tail -n 1)
if [ -n "$newest" ] && [ "$((${newest%.*} * 1000 + ${newest#*.}))" -le "$((major * 1000 + minor))" ]; then
    ok
else
    bad "version node QNPU_$newest is newer than the library version $version: bump QNPU_VERSION_* in include/quantnpu.h and debian/changelog"
fi

# 3. debian/changelog
# (the upstream part: no epoch, no Debian revision should the package move to 3.0 (quilt))
deb_version=$(dpkg-parsechangelog -l debian/changelog -S Version | sed 's/^[0-9]*://; s/-[^-]*$//')
[ "$deb_version" = "$version" ] && ok ||
    bad "debian/changelog is at $deb_version, include/quantnpu.h at $version (add a changelog entry: dch -v $version)"

# 4. Build-Depends against `make deps`
sed -n '/^Build-Depends:/,/^[A-Z][A-Za-z-]*:/p' debian/control | sed '$d; s/^Build-Depends://' |
    tr ',' '\n' | sed 's/([^)]*)//g; s/<[^>]*>//g; s/\[[^]]*\]//g; s/:any//; s/[[:space:]]//g' |
    sed '/^$/d' | sort -u >"$TMP/build-depends"
${MAKE:-make} --no-print-directory -s -n deps | sed -e ':a' -e '/\\$/N; s/\\\n//; ta' | grep 'apt-get install' |
    sed 's/.*apt-get install//' | tr ' ' '\n' | sed '/^-/d; /^$/d; /^\\$/d' | sort -u >"$TMP/deps"
# needed to build or test the package: libraries, compilers, pkg-config, Check, Python modules;
# exempt: clang's sanitizer runtime, only for `make fuzz`
grep -E '^lib.*-dev$|-compiler$|^pkg-config$|^check$|^python3-' "$TMP/deps" |
    grep -vxE 'libclang-rt-[0-9]+-dev' >"$TMP/needed" || true
missing=$(comm -23 "$TMP/needed" "$TMP/build-depends" | tr '\n' ' ')
[ -z "$missing" ] && ok || bad "in make deps but not in debian/control Build-Depends: $missing"

# 5. the -dev package's Depends against the .pc file's Requires / Requires.private
sed -n '/^Package: libquantnpu-dev$/,/^$/p' debian/control | sed -n '/^Depends:/,/^[A-Z][A-Za-z-]*:/p' |
    sed 's/^Depends://' | tr ',' '\n' | sed 's/([^)]*)//g; s/[[:space:]]//g' | sed '/^$/d' | sort -u >"$TMP/dev-depends"
for mod in $(sed -n 's/^Requires\(\.private\)\{0,1\}: *//p' pkgconfig/libquantnpu.pc.in | tr ',' ' '); do
    case $mod in [\<\>=]*|[0-9]*) continue ;; esac
    dir=$(pkg-config --variable=pcfiledir "$mod" 2>/dev/null) || { bad "pkg-config module $mod is not installed"; continue; }
    pkg=$(dpkg -S "$dir/$mod.pc" 2>/dev/null | sed 's/[:,].*//' | head -n 1)
    if [ -z "$pkg" ]; then bad "no Debian package owns $dir/$mod.pc"
    elif grep -qx "$pkg" "$TMP/dev-depends"; then ok
    else bad "libquantnpu.pc requires $mod ($pkg), which libquantnpu-dev does not depend on"; fi
done

echo "debian: $pass passed, $fail failed"
[ "$fail" = 0 ]
