#!/bin/sh
# run_deb.sh OUT SHARED — build the Debian packages and use them (make deb).
#
#   1. copy the tree (tracked and untracked files, not build/ or ignored files) into
#      OUT/src/libquantnpu-VERSION, so the build never writes into the working tree;
#   2. dpkg-buildpackage -us -uc -b there, with DEB_BUILD_OPTIONS=nocheck (make check runs the
#      tests; `debian/rules` runs them when nocheck is not set);
#   3. lintian on the .changes: no error allowed (warnings are printed);
#   4. apt-get install the .debs, then as a user would: pkg-config, a program built against the
#      installed -dev package (shared and static) and run on SHARED/models/stories260K.bin when
#      present, the quantnpu command, `import quantnpu` from the installed Python package, the
#      man pages;
#   5. apt-get purge the packages again (QNPU_DEB_KEEP=1 keeps them installed).
# The .debs, the .changes, build.log and lintian.log stay in OUT. QNPU_DEB_REUSE=1 skips steps 1-3
# and uses the packages already in OUT (to rerun the installation checks).
set -eu
OUT=$1 SHARED=$2
HERE=$(pwd)
PACKAGES="libquantnpu0 libquantnpu-dev python3-quantnpu quantnpu"
VERSION=$(dpkg-parsechangelog -l debian/changelog -S Version)
MA=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
pass=0
fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }
now() { date +%s; }
t0=$(now)

if [ "${QNPU_DEB_REUSE:-0}" = 1 ]; then
    OUT=$(cd "$OUT" && pwd)
    t1=$t0 t2=$t0
else
    rm -rf "$OUT"
    mkdir -p "$OUT/src/libquantnpu-$VERSION"
    OUT=$(cd "$OUT" && pwd)
    SRC=$OUT/src/libquantnpu-$VERSION
    if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        git ls-files -z -co --exclude-standard | rsync -a --from0 --ignore-missing-args --files-from=- ./ "$SRC/"
    else
        rsync -a --exclude=/build/ --exclude=__pycache__ --exclude='*.pyc' ./ "$SRC/"
    fi

    # 2. build
    echo "deb: dpkg-buildpackage in $SRC"
    if (cd "$SRC" && unset MAKEFLAGS MFLAGS MAKELEVEL && DEB_BUILD_OPTIONS="nocheck parallel=$(nproc)" DEB_BUILD_PROFILES=nocheck \
            dpkg-buildpackage -us -uc -b) >"$OUT/build.log" 2>&1; then
        ok
    else
        tail -n 60 "$OUT/build.log"
        bad "dpkg-buildpackage failed (log: $OUT/build.log)"
        echo "deb: $pass passed, $fail failed"
        exit 1
    fi
    t1=$(now)
    CHANGES=$(ls "$OUT"/src/libquantnpu_"$VERSION"_*.changes)
    for p in $PACKAGES; do
        ls "$OUT"/src/"${p}"_"$VERSION"_*.deb >/dev/null 2>&1 && ok || bad "no package $p"
    done
    mv "$OUT"/src/*.deb "$OUT"/src/*.changes "$OUT"/src/*.buildinfo "$OUT"/
    CHANGES=$OUT/$(basename "$CHANGES")

    # 3. lintian: errors fail, warnings are shown
    lintian --info --display-info --pedantic --fail-on error "$CHANGES" >"$OUT/lintian.log" 2>&1 && ok ||
        bad "lintian reports errors (log: $OUT/lintian.log)"
    echo "deb: lintian: $(grep -c '^E:' "$OUT/lintian.log" || true) errors, $(grep -c '^W:' "$OUT/lintian.log" || true) warnings," \
         "$(grep -c '^I:' "$OUT/lintian.log" || true) info, $(grep -c '^P:' "$OUT/lintian.log" || true) pedantic"
    grep -E '^(E|W):' "$OUT/lintian.log" || true
    t2=$(now)
fi

# 4. install and use (not the -dbgsym packages)
DEBS=
for p in $PACKAGES; do DEBS="$DEBS $(ls "$OUT"/"${p}"_"$VERSION"_*.deb)"; done
if apt-get install -y --no-install-recommends -o DPkg::Lock::Timeout=600 $DEBS >"$OUT/install.log" 2>&1; then
    ok
else
    tail -n 30 "$OUT/install.log"
    bad "apt-get install of the packages failed"
    echo "deb: $pass passed, $fail failed"
    exit 1
fi
cleanup() {
    if [ "${QNPU_DEB_KEEP:-0}" != 1 ]; then
        apt-get purge -y -o DPkg::Lock::Timeout=600 $PACKAGES >>"$OUT/install.log" 2>&1 ||
            echo "deb: apt-get purge $PACKAGES failed (see $OUT/install.log)"
    fi
}
trap cleanup EXIT
TMP=$OUT/use
mkdir -p "$TMP"

[ -e "/usr/lib/$MA/libquantnpu.so.0" ] && ok || bad "/usr/lib/$MA/libquantnpu.so.0 is not installed"
[ "$(pkg-config --modversion libquantnpu)" = "$VERSION" ] && ok || bad "pkg-config --modversion libquantnpu"
[ "$(pkg-config --variable=libdir libquantnpu)" = "/usr/lib/$MA" ] && ok || bad "the .pc file's libdir is not /usr/lib/$MA"
# the example as a user builds it: shared
if cc -std=c11 -Wall -Werror "$HERE/examples/01_generate.c" $(pkg-config --cflags --libs libquantnpu) -o "$TMP/ex_shared"; then
    ok
    ldd "$TMP/ex_shared" | grep -Eq "libquantnpu.so.0 => (/usr)?/lib/$MA/libquantnpu.so.0 " && ok ||
        bad "the example does not load /usr/lib/$MA/libquantnpu.so.0"
    "$TMP/ex_shared" | grep -qx "libquantnpu $VERSION" && ok || bad "the example against the shared library"
    if [ -r "$SHARED/models/stories260K.bin" ]; then
        "$TMP/ex_shared" "$SHARED/models/stories260K.bin" >"$TMP/out" && grep -q '^perplexity [0-9.]* over' "$TMP/out" && ok ||
            bad "the example on stories260K.bin: $(cat "$TMP/out")"
    else
        echo "deb: $SHARED/models/stories260K.bin not found, the example only checks the version"
    fi
else
    bad "the example does not build against the installed libquantnpu-dev"
fi
# static
if cc -std=c11 "$HERE/examples/01_generate.c" $(pkg-config --cflags libquantnpu) -o "$TMP/ex_static" \
        "/usr/lib/$MA/libquantnpu.a" $(pkg-config --static --libs-only-l libquantnpu | sed 's/-lquantnpu//'); then
    "$TMP/ex_static" | grep -qx "libquantnpu $VERSION" && ok || bad "the static example"
else
    bad "the example does not link against the installed libquantnpu.a"
fi
# the command
[ "$(quantnpu --version)" = "quantnpu $VERSION" ] && ok || bad "quantnpu --version: $(quantnpu --version 2>&1)"
if [ -r "$SHARED/models/stories260K.bin" ]; then
    quantnpu info "$SHARED/models/stories260K.bin" >/dev/null && ok || bad "quantnpu info stories260K.bin"
fi
# the Python package, from outside the tree and without QNPU_LIBRARY, with Debian's python3
py=$(cd / && env -u QNPU_LIBRARY -u PYTHONPATH /usr/bin/python3 -c 'import quantnpu, quantnpu.library as l; print(quantnpu.__file__, l.version())') &&
    ok || bad "import quantnpu from the installed package"
case $py in
    "/usr/lib/python3/dist-packages/quantnpu/__init__.py $VERSION") ok ;;
    *) bad "python3-quantnpu: expected the installed package at version $VERSION, got: $py" ;;
esac
# man pages
[ -e /usr/share/man/man1/quantnpu.1.gz ] && [ -e /usr/share/man/man3/libquantnpu.3.gz ] && ok || bad "the man pages are not installed"
t3=$(now)

echo "deb: build $((t1 - t0)) s, lintian $((t2 - t1)) s, install and use $((t3 - t2)) s; packages in $OUT"
echo "deb: $pass passed, $fail failed"
[ "$fail" = 0 ]
