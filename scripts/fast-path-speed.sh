#!/usr/bin/env bash
# Makes the measurements behind reports/relay-speed-fastpath.md: mcrd's kernel fast path beside
# the kernel's own unicast forwarding (relay kind route: the baseline on kernels without
# multicast routing), userspace mcrd, the floor of a hop (redirect: frames moved in0 -> out0 with
# no forwarding decision) and the direct generator -> receiver paths (multicast, and unicast for
# route), on 1 and 3 hops at RATES; then, for the zero-loss search, 3 hops of the fast path and
# route (with the direct paths) at SEARCH_RATES, and at the highest of them 1 hop of both and
# 3 hops of the floor.
# Every configuration runs once per repeat, interleaved, and the order of the relays rotates from
# one repeat to the next, so the shared machine's background load and any drift fall on all alike.
# The generator runs with --gen-coalesce-us COALESCE_US for every path: the same input
# everywhere, and one at which it sleeps between batches at every rate (see the report).
# Then `analyzer compare` per rate and hop count, and medians.md (lib/fast-path-medians.jq).
# Needs root and the binaries (relay and trafficgen built with optimisation).
#
#   BIN=$CARGO_TARGET_DIR/debug scripts/fast-path-speed.sh [OUT]
#   STOP_AT=$(date -d 03:45 +%s) ...        # starts no run after that time (the report uses what exists)
#   REPORT_ONLY=1 scripts/fast-path-speed.sh [OUT]   # only remake the comparisons and medians
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/lib/keep_records.sh
. "$HERE/lib/keep_records.sh"
ROOT=$(cd "$HERE/.." && pwd)
OUT=${1:-$ROOT/reports/relay-speed-fastpath}
BIN=${BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release}
ANALYZER=${ANALYZER:-$BIN/analyzer}
REPEATS=${REPEATS:-5}
RATES=${RATES:-"20000 100000"}
SEARCH_RATES=${SEARCH_RATES:-"150000 200000 300000 400000 600000"}
COALESCE_US=${COALESCE_US:-200}
# Offered traffic per run, in seconds at the target rate (at least MIN_PACKETS datagrams).
RUN_SECONDS=${RUN_SECONDS:-3}
MIN_PACKETS=${MIN_PACKETS:-100000}
STOP_AT=${STOP_AT:-}
PREFIX=${PREFIX:-plb}

late() { [ -n "$STOP_AT" ] && [ "$(date +%s)" -ge "$STOP_AT" ]; }

pipeline() { # OUT PPS FLAGS...
  local out=$1 pps=$2 packets=$(($2 * RUN_SECONDS))
  shift 2
  if late; then
    echo "fast-path-speed: past STOP_AT, skipped: $* at $pps pps" >&2
    return 0
  fi
  [ "$packets" -ge "$MIN_PACKETS" ] || packets=$MIN_PACKETS
  "$ROOT/scripts/pipeline_veth.sh" --prefix "$PREFIX" --pps "$pps" --packets "$packets" \
    --gen-coalesce-us "$COALESCE_US" --bin "$BIN" --analyzer "$ANALYZER" --out "$out" "$@" ||
    echo "fast-path-speed: $* at $pps pps exited $?" >&2
}

# rotate R WORD...: the words rotated left by R-1 places (the relays' order in repeat R).
rotate() {
  local r=$1
  shift
  local a=("$@") n=$# i
  for ((i = 0; i < n; i++)); do echo "${a[$(((i + r - 1) % n))]}"; done
}

# each R OUT PPS HOPS RELAY...: one pipeline run per relay, in repeat R's order. One relay per
# call: with a list, pipeline_veth.sh also draws an `analyzer compare` with charts (seconds each).
each() {
  local r=$1 out=$2 pps=$3 hops=$4 relay
  shift 4
  for relay in $(rotate "$r" "$@"); do
    case $relay in
      direct) pipeline "$out" "$pps" --hops 0 ;;
      direct-unicast) pipeline "$out" "$pps" --hops 0 --relay route ;;
      *) pipeline "$out" "$pps" --hops "$hops" --relay "$relay" ;;
    esac
  done
}

run_all() {
  local work r pps hops d run top
  work=$(mktemp -d /tmp/fast-path-speed.XXXXXX)
  top=${SEARCH_RATES##* }
  for ((r = 1; r <= REPEATS; r++)); do
    for pps in $RATES; do
      each "$r" "$work/rep$r" "$pps" 0 direct direct-unicast
      for hops in 1 3; do each "$r" "$work/rep$r" "$pps" "$hops" fastpath route mcrd redirect; done
    done
    for pps in $SEARCH_RATES; do
      each "$r" "$work/rep$r" "$pps" 0 direct direct-unicast
      each "$r" "$work/rep$r" "$pps" 3 fastpath route
      [ "$pps" != "$top" ] || each "$r" "$work/rep$r" "$pps" 1 route fastpath
      [ "$pps" != "$top" ] || each "$r" "$work/rep$r" "$pps" 3 redirect
    done
  done
  keep_records "$work" "$OUT"
  rm -rf "$work"
}

[ -n "${REPORT_ONLY:-}" ] || run_all

compare() { # OUTNAME BASELINE RUN...: no charts (the tables say it; the report stays small)
  local name=$1 sets=() s
  shift
  for s in "$@"; do [ -d "$OUT/records/$s" ] && sets+=("records/$s"); done
  [ "${#sets[@]}" -ge 2 ] || return 0
  # Exit 1 means a run is judged worse than the first set: expected here, the report says which.
  local rc=0
  (cd "$OUT" && "$ANALYZER" compare "${sets[@]}" --out "$name.md") || rc=$?
  [ "$rc" -le 1 ] || echo "fast-path-speed: analyzer compare failed ($rc) for $name" >&2
}

for pps in $RATES $SEARCH_RATES; do
  for hops in 1 3; do
    compare "compare-${hops}h-${pps}pps" "route-${hops}h-${pps}pps" "fastpath-${hops}h-${pps}pps" \
      "mcrd-${hops}h-${pps}pps" "redirect-${hops}h-${pps}pps"
  done
done

for f in "$OUT"/records/*/rep*.json; do
  jq -c --arg set "$(basename "$(dirname "$f")")" --arg rep "$(basename "$f" .json)" \
    '{set: $set, rep: $rep, record: .}' "$f"
done | jq -s -r -f "$HERE/lib/fast-path-medians.jq" >"$OUT/medians.md"
echo "fast-path-speed: $OUT/medians.md"
