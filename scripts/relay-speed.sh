#!/usr/bin/env bash
# Makes the measurements behind reports/relay-speed.md: 3 hops of 1400-byte datagrams through
# mcrd (its defaults, and with real-time workers), the kernel's multicast forwarding (smcroute)
# and socat, each beside the direct generator -> receiver path at the same offered rate, at
# RATES; plus, at ABLATION_RATES, mcrd with one tunable changed at a time. Every configuration
# runs once per repeat, interleaved, so the shared machine's background load falls on all alike.
# Then: `analyzer compare` per rate and per ablation rate, and medians.md (`analyzer medians relay-speed`).
# Needs root and the release binaries.
#
#   CARGO_TARGET_DIR=/work/target-main scripts/relay-speed.sh [OUT]
#   REPORT_ONLY=1 scripts/relay-speed.sh [OUT]   # only remake the comparisons and medians
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/lib/keep_records.sh
. "$HERE/lib/keep_records.sh"
ROOT=$(cd "$HERE/.." && pwd)
OUT=${1:-$ROOT/reports/relay-speed}
BIN=${BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release}
ANALYZER=${ANALYZER:-$BIN/analyzer}
REPEATS=${REPEATS:-5}
RATES=${RATES:-"20000 65000 100000 130000 200000 400000"}
ABLATION_RATES=${ABLATION_RATES:-"65000 200000"}
# Offered traffic per run, in seconds at the target rate (at least 60,000 datagrams).
RUN_SECONDS=${RUN_SECONDS:-3}
RT_PRIORITY=${RT_PRIORITY:-10}

# mcrd variants: configuration name -> the one pipeline flag that differs from mcrd's defaults.
declare -A VARIANT=(
  [mcrd-rt]="--realtime-priority $RT_PRIORITY"
  [mcrd-busypoll50]="--busy-poll-us 50"
  [mcrd-coalesce50]="--rx-coalesce-us 50"
  [mcrd-ring16k]="--ring-frames 16384"
)
# Run at every rate (the others only at ABLATION_RATES).
ALWAYS=(mcrd-rt)

pipeline() { # OUT PPS FLAGS...
  local out=$1 pps=$2 packets=$(($2 * RUN_SECONDS))
  shift 2
  [ "$packets" -ge 60000 ] || packets=60000
  "$ROOT/scripts/pipeline_veth.sh" --pps "$pps" --packets "$packets" --bin "$BIN" \
    --analyzer "$ANALYZER" --out "$out" "$@" || echo "relay-speed: $* at $pps pps exited $?" >&2
}

variant() { # WORK PPS NAME
  local work=$1 pps=$2 name=$3 flags
  read -r -a flags <<<"${VARIANT[$name]}"
  pipeline "$work/$name" "$pps" --hops 3 --relay mcrd --name "$name 3h ${pps}pps" "${flags[@]}"
  [ -d "$work/$name/mcrd-3h-${pps}pps" ] && mv "$work/$name/mcrd-3h-${pps}pps" "$work/$name-3h-${pps}pps"
  rm -rf "${work:?}/$name"
}

run_all() {
  local work r pps name d run
  work=$(mktemp -d /tmp/relay-speed.XXXXXX)
  for ((r = 1; r <= REPEATS; r++)); do
    for pps in $RATES; do
      pipeline "$work/rep$r" "$pps" --hops 0
      pipeline "$work/rep$r" "$pps" --hops 3 --relay mcrd,kernel,socat
      for name in "${ALWAYS[@]}"; do variant "$work/rep$r" "$pps" "$name"; done
      if [[ " $ABLATION_RATES " == *" $pps "* ]]; then
        for name in "${!VARIANT[@]}"; do
          [[ " ${ALWAYS[*]} " == *" $name "* ]] || variant "$work/rep$r" "$pps" "$name"
        done
      fi
    done
  done
  keep_records "$work" "$OUT"
  rm -rf "$work"
}

[ -n "${REPORT_ONLY:-}" ] || run_all

compare() { # OUTNAME BASELINE RUN...
  local name=$1 sets=()
  shift
  for s in "$@"; do [ -d "$OUT/records/$s" ] && sets+=("$OUT/records/$s"); done
  [ "${#sets[@]}" -ge 2 ] || return 0
  rm -rf "$OUT/png-$name"
  # Exit 1 means a run is judged worse than the first set: expected here, the report says which.
  local rc=0
  (cd "$OUT" && "$ANALYZER" compare "${sets[@]/#$OUT\//}" --out "$name.md" --png-dir "png-$name") || rc=$?
  [ "$rc" -le 1 ] || echo "relay-speed: analyzer compare failed ($rc) for $name" >&2
}

for pps in $RATES; do
  compare "compare-${pps}pps" "direct-0h-${pps}pps" "kernel-3h-${pps}pps" "mcrd-3h-${pps}pps" \
    "mcrd-rt-3h-${pps}pps" "socat-3h-${pps}pps"
done
for pps in $ABLATION_RATES; do
  runs=()
  for name in mcrd-busypoll50 mcrd-coalesce50 mcrd-ring16k mcrd-rt; do runs+=("$name-3h-${pps}pps"); done
  compare "ablation-${pps}pps" "mcrd-3h-${pps}pps" "${runs[@]}"
done

"$ANALYZER" medians relay-speed "$OUT/records" --out "$OUT/medians.md"
echo "relay-speed: $OUT/medians.md"
