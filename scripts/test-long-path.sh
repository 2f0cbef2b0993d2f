#!/usr/bin/env bash
# Issue 18: the nightly job and the pipeline run from a checkout 150 characters deep. The relays'
# control sockets once lived under the output tree, and a Unix socket path holds at most 107
# bytes, so every run from a checkout deeper than 8 characters failed at bind. This copies the
# working tree (tracked and untracked files, no build outputs) to such a path and runs there:
# the pipeline's quick preset, and one short night (one repeat at one rate). Needs root.
#
#   scripts/test-long-path.sh [--bin DIR]   # DIR: mcrd, mcrctl, trafficgen, analyzer
#
# Exit 0 when both ran and accounted for every packet; the night may find a regression against
# the checked-in baseline (debug binaries are slower): that is a verdict, not a failure here.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
case ${1:-} in
  --bin) BIN=${2:?--bin needs a directory} ;;
  '') ;;
  *) echo "test-long-path: unknown flag $1 (flags: --bin DIR)" >&2; exit 2 ;;
esac
BIN=$(realpath "$BIN")
for b in mcrd mcrctl trafficgen analyzer; do
  [ -x "$BIN/$b" ] || { echo "test-long-path: $BIN/$b missing" >&2; exit 2; }
done

BASE=$(mktemp -d /tmp/mcr-long.XXXXXX)
trap 'rm -rf "$BASE"' EXIT
deep=$BASE
while [ ${#deep} -lt 140 ]; do deep=$deep/a-long-checkout-path; done
deep=$deep/mcr
mkdir -p "$deep"
(cd "$ROOT" && git ls-files -z --cached --others --exclude-standard |
  tar --null -T - -cf - 2>/dev/null) | tar -xf - -C "$deep"
echo "test-long-path: checkout at $deep (${#deep} characters)"

fail() { echo "test-long-path: FAIL: $*" >&2; exit 1; }

rc=0
"$deep/scripts/pipeline_veth.sh" --quick --bin "$BIN" >"$BASE/pipeline.log" 2>&1 || rc=$?
[ "$rc" -eq 0 ] || { tail -20 "$BASE/pipeline.log" >&2; fail "pipeline exited $rc"; }
run=$(find "$deep/reports/pipeline/runs" -name run.json -print -quit)
[ -n "$run" ] || fail "the pipeline wrote no run record under $deep/reports/pipeline/runs"
echo "test-long-path: pipeline OK, record at a path of ${#run} characters"

rc=0
"$deep/scripts/nightly.sh" --repeats 1 --rates 20000 --packets 20000 --bin "$BIN" \
  >"$BASE/nightly.log" 2>&1 || rc=$?
case $rc in
  0 | 1) ;;
  *) tail -20 "$BASE/nightly.log" >&2; fail "nightly exited $rc" ;;
esac
report=$(find "$deep/reports/pipeline/nightly" -name report.md -print -quit)
[ -n "$report" ] || fail "the nightly job wrote no report"
grep -q '| rep1 |' "$report" || fail "the nightly report has no run line: $report"
find "$deep/reports/pipeline/history/dataset" -name '*.parquet' -print -quit | grep -q . ||
  fail "the nightly job appended no history part"
echo "test-long-path: nightly OK (exit $rc), report at ${#report} characters"
