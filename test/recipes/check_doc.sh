#!/bin/sh
# check_doc.sh GENERATOR DOC — DOC (docs/recipes.md) is exactly what GENERATOR
# (tools/gen_recipes_doc.c) writes today; otherwise print the difference and fail.
set -eu
GEN=$1 DOC=$2
TMP=$(mktemp)
trap 'rm -f "$TMP"' EXIT
"$GEN" >"$TMP"
if diff -u "$DOC" "$TMP"; then
    echo "recipes-doc: $DOC is up to date"
else
    echo "FAIL: $DOC is stale (or edited by hand): run 'make recipes-doc' and commit the result"
    exit 1
fi
