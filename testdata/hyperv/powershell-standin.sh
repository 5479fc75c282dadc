#!/bin/sh
# A stand-in for powershell.exe (DEVCLUSTER_POWERSHELL points here in the
# tests). It records each call — the decoded -EncodedCommand script, the
# DEVCLUSTER_PARAMS JSON and the arguments — under $HYPERV_REPLAY_DIR/calls/
# and prints the next recorded reply of $HYPERV_REPLAY_DIR/replies/
# (NN-<op>.txt, in order). A reply for another operation than the script's
# ("# devcluster op: <op>" on its first line) exits 97, so a test sees a
# call it did not expect. Exit status: NN-<op>.rc if present, else 0.
set -eu
dir=${HYPERV_REPLAY_DIR:?HYPERV_REPLAY_DIR is not set}
mkdir -p "$dir/calls"
n=1
for f in "$dir"/calls/*.ps1; do
    if [ -e "$f" ]; then n=$((n + 1)); fi
done
id=$(printf '%02d' "$n")
encoded=""
prev=""
for arg in "$@"; do
    if [ "$prev" = "-EncodedCommand" ]; then encoded=$arg; fi
    printf '%s\n' "$arg" >>"$dir/calls/$id.argv"
    prev=$arg
done
printf '%s' "$encoded" | base64 -d | iconv -f UTF-16LE -t UTF-8 >"$dir/calls/$id.ps1"
printf '%s' "${DEVCLUSTER_PARAMS:-}" >"$dir/calls/$id.params.json"
op=$(sed -n '1s/^# devcluster op: \([a-z_]*\).*/\1/p' "$dir/calls/$id.ps1")
reply=""
for f in "$dir/replies/$id"-*.txt; do
    if [ -e "$f" ]; then reply=${f##*/}; break; fi
done
if [ -z "$reply" ]; then
    echo "stand-in: no reply $id for $op" >&2
    exit 98
fi
case "$reply" in
"$id-$op.txt") ;;
*)
    echo "stand-in: call $id is $op, the next reply is $reply" >&2
    exit 97
    ;;
esac
cat "$dir/replies/$reply"
rc_file="$dir/replies/$id-$op.rc"
if [ -f "$rc_file" ]; then exit "$(cat "$rc_file")"; fi
exit 0
