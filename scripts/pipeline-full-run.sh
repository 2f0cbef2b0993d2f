#!/usr/bin/env bash
# Makes the committed full run under reports/pipeline/full/: 3 hops of 1400-byte datagrams at
# rates the chain sustains (20k), sometimes sustains (150k) and cannot (400k), for mcrd, the
# kernel (smcroute) and socat, each beside the direct generator -> receiver path (0 hops), REPEATS times, interleaved so that the
# machine's background load falls on all of them alike. Then one `analyzer compare` per rate
# (baseline: the direct path) and a table of medians. Needs root and the release binaries.
#
#   sudo CARGO_TARGET_DIR=/work/target-pl scripts/pipeline-full-run.sh [OUT]
#   REPORT_ONLY=1 ... pipeline-full-run.sh    # only remake compare-*.md, png-*/ and medians.md
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${1:-$ROOT/reports/pipeline/full}
BIN=${BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release}
ANALYZER=${ANALYZER:-$BIN/analyzer}
REPEATS=${REPEATS:-3}
PACKETS=${PACKETS:-300000}
RATES=${RATES:-"20000 150000 400000"}
WORK=$(mktemp -d /tmp/pl-full.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

run_all() {
for ((r = 1; r <= REPEATS; r++)); do
  for pps in $RATES; do
    "$ROOT/scripts/pipeline_veth.sh" --hops 0 --pps "$pps" --packets "$PACKETS" --bin "$BIN" \
      --analyzer "$ANALYZER" --out "$WORK/rep$r" || echo "full-run: direct $pps rep $r exited $?" >&2
    "$ROOT/scripts/pipeline_veth.sh" --hops 3 --relay mcrd,kernel,socat --pps "$pps" \
      --packets "$PACKETS" --bin "$BIN" --analyzer "$ANALYZER" --out "$WORK/rep$r" || echo "full-run: 3 hops $pps rep $r exited $?" >&2
  done
done

# Keep what is small and says everything: record, conservation, summary, host CPU attribution.
rm -rf "$OUT"
for d in "$WORK"/rep*/*/; do
  [ -f "$d/run.json" ] || continue
  r=$(basename "$(dirname "$d")") run=$(basename "$d")
  mkdir -p "$OUT/sets/$run/$r" "$OUT/records/$run"
  cp "$d/conservation.json" "$d/summary.txt" "$d/raw/host-cpu.json" "$OUT/sets/$run/$r/"
  cp "$d/run.json" "$OUT/records/$run/$r.json"
done
rm -rf "$WORK"
}

# REPORT_ONLY=1 remakes the comparisons and medians from the records already in OUT.
[ -n "${REPORT_ONLY:-}" ] || run_all

for pps in $RATES; do
  sets=()
  for kind in direct-0h mcrd-3h kernel-3h socat-3h; do
    [ -d "$OUT/records/$kind-${pps}pps" ] && sets+=("$OUT/records/$kind-${pps}pps")
  done
  (cd "$ROOT" && "$ANALYZER" compare "${sets[@]}" --out "$OUT/compare-${pps}pps.md" \
    --png-dir "$OUT/png-${pps}pps") || echo "full-run: analyzer compare exited $? for $pps pps" >&2
done

# Medians per configuration: delivered rate, loss, where the loss was counted, unexplained, host CPU.
"$ANALYZER" medians pipeline-full "$OUT/records" --sets "$OUT/sets" --out "$OUT/medians.md"
echo "full-run: $OUT/medians.md"
