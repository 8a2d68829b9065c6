#!/bin/sh
# io_errors.sh PROGRAM SHARED — run test/reliab/io_errors.c; when this process may mount (root),
# a 64 KiB tmpfs gives it a full file system (ENOSPC), otherwise that part is skipped.
set -u
prog=$1
shared=$2
dir=$(mktemp -d "${TMPDIR:-/tmp}/qnpu-full-XXXXXX")
full=
if mount -t tmpfs -o size=64k tmpfs "$dir" 2>/dev/null; then
    full=$dir
else
    echo "io_errors.sh: cannot mount a small tmpfs here (not root?): the ENOSPC case is skipped"
fi
status=0
"$prog" "$shared" $full || status=$?
if [ -n "$full" ]; then
    umount "$dir" || status=1
fi
rmdir "$dir"
exit $status
