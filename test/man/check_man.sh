#!/bin/sh
# check_man.sh CLI MANDIR — the man pages render without a single groff or man warning, and
# quantnpu.1 names every command and every option that `CLI --help` prints.
set -eu
CLI=$1 DIR=$2
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
pass=0
fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }

for page in "$DIR"/quantnpu.1 "$DIR"/libquantnpu.3; do
    # groff: every warning category, no output
    if groff -ww -z -man "$page" >"$TMP/groff" 2>&1 && [ ! -s "$TMP/groff" ]; then ok
    else bad "groff warns on $page:"; cat "$TMP/groff"; fi
    # the rendering users get (man-db, which also runs preconv), when man is installed
    if command -v man >/dev/null 2>&1; then
        LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -l "$page" >/dev/null 2>"$TMP/man" || true
        [ ! -s "$TMP/man" ] && ok || { bad "man warns on $page:"; cat "$TMP/man"; }
    fi
    LC_ALL=C grep -n '[^[:print:][:space:]]' "$page" >"$TMP/ascii" && { bad "$page is not plain ASCII:"; cat "$TMP/ascii"; } || ok
done

# quantnpu.1 as plain text, one long line per paragraph, no hyphenation
groff -man -Tascii -P-cbou -rLL=250n -rHY=0 "$DIR/quantnpu.1" 2>/dev/null >"$TMP/page"
"$CLI" --help >"$TMP/help"
sed -n '/^commands:/,/^$/p' "$TMP/help" | sed -n 's/^  \([a-z][a-z-]*\)  .*/\1/p' >"$TMP/commands"
[ -s "$TMP/commands" ] && ok || bad "no commands found in $CLI --help"
grep -oE '(^|[ (/,[])--?[a-z][a-z0-9-]*' "$TMP/help" | sed 's/^[ (/,[]//' | sort -u >"$TMP/options"
[ -s "$TMP/options" ] && ok || bad "no options found in $CLI --help"
for c in $(cat "$TMP/commands"); do
    grep -qE "quantnpu $c( |\$)" "$TMP/page" && grep -qE "^ +$c( |\$)" "$TMP/page" && ok ||
        bad "quantnpu.1 lacks the command '$c' (in SYNOPSIS and COMMANDS)"
done
for o in $(cat "$TMP/options"); do
    grep -qE -- "(^|[^a-z-])$o([^a-z0-9-]|\$)" "$TMP/page" && ok || bad "quantnpu.1 does not mention the option $o"
done

echo "man: $pass passed, $fail failed"
[ "$fail" = 0 ]
