#!/usr/bin/env bash
# IPv4 against IPv6 on mcrd's kernel fast path (issue 22), interleaved: for every point (generator
# mode, rate, hops) one IPv4 run and one IPv6 run back to back, the family that goes first
# alternating from one repeat to the next and the points' order rotating, so drift and the shared
# machine's background load fall on both families alike. Points: relay kind fastpath
# (fast_path = "required") on 1 and 3 hops and the direct generator -> receiver run (hops 0, the
# reference the per-hop cost subtracts), in both generator modes (1 and 32 datagrams per message),
# at RATES (0 = flat out, the generator unpaced). 1400-byte datagrams, veth UDP segmentation
# offload off, --gen-coalesce-us 200 as in reports/relay-speed-fastpath.md.
#
# Keeps per run the run record and the conservation document, compacted, as
# records-fastpath/rREP-gMODE-hHOPS-RATE-FAMILY{.json,.conservation.json}, and one line per run
# in records-fastpath/runs.tsv with the pipeline's exit status and the path every hop's rule
# took (mcrd's final stats: "kernel" on every hop, or the run does not measure the fast path).
# medians-fastpath.py makes the report's table from them. Needs root and release binaries.
#
#   BIN=$CARGO_TARGET_DIR/release reports/relay-speed-ipv6/campaign-fastpath.sh [OUT]
#   REPEATS=3 RATES="100000 0" STOP_AT=$(date -d 19:20 +%s) ...   # fewer runs; none started late
#   FIRST_REPEAT=6 REPEATS=10 RATES="100000 0" ...   # repeats 6-10 of some rates, added to OUT
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
OUT=${1:-$HERE/records-fastpath}
BIN=${BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release}
REPEATS=${REPEATS:-5}
# More repeats later into the same records: FIRST_REPEAT=6 REPEATS=10.
FIRST_REPEAT=${FIRST_REPEAT:-1}
RATES=${RATES:-"20000 100000 0"}
STOP_AT=${STOP_AT:-}
PREFIX=${PREFIX:-pl6f}
# Offered traffic per paced run: RUN_SECONDS at the rate, at least MIN_PACKETS datagrams (one
# 10 ms tick of host CPU is 100 ns a datagram at 100,000). Flat out: FLAT_OUT_PACKETS per
# generator mode, about 3 s on 3 hops (single mode carries ~230k pps there, gso ~350k).
RUN_SECONDS=${RUN_SECONDS:-3}
MIN_PACKETS=${MIN_PACKETS:-100000}
FLAT_OUT_PACKETS_SINGLE=${FLAT_OUT_PACKETS_SINGLE:-600000}
FLAT_OUT_PACKETS_GSO=${FLAT_OUT_PACKETS_GSO:-1200000}

work=$(mktemp -d /tmp/campaign-fastpath.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$OUT"
[ -f "$OUT/runs.tsv" ] || printf 'rep\tsegments\thops\trate\tfamily\texit\tpaths\n' >"$OUT/runs.tsv"

# one REP SEGMENTS HOPS PPS FAMILY: one pipeline run, its records kept under OUT.
one() {
  local rep=$1 seg=$2 hops=$3 pps=$4 fam=$5 packets rate key rc=0 dir flags=() paths=-
  if [ "$pps" -eq 0 ]; then
    rate=unpaced packets=$FLAT_OUT_PACKETS_SINGLE
    [ "$seg" -eq 1 ] || packets=$FLAT_OUT_PACKETS_GSO
  else
    rate=$pps packets=$((pps * RUN_SECONDS))
    [ "$packets" -ge "$MIN_PACKETS" ] || packets=$MIN_PACKETS
  fi
  key=r$rep-g$seg-h$hops-$rate-$fam
  [ "$fam" = ipv6 ] && flags+=(--ipv6)
  [ "$hops" -gt 0 ] && flags+=(--relay fastpath)
  "$ROOT/scripts/pipeline_veth.sh" ${flags[@]+"${flags[@]}"} --prefix "$PREFIX" --hops "$hops" \
    --pps "$pps" --packets "$packets" --size 1400 --gen-gso-segments "$seg" --gen-coalesce-us 200 \
    --bin "$BIN" --out "$work/$key" >"$work/$key.log" 2>&1 || rc=$?
  dir=$(find "$work/$key" -mindepth 1 -maxdepth 1 -type d | head -1)
  if [ -n "$dir" ] && [ -f "$dir/run.json" ]; then
    jq -c . "$dir/run.json" >"$OUT/$key.json"
    jq -c . "$dir/conservation.json" >"$OUT/$key.conservation.json"
    if [ "$hops" -gt 0 ]; then
      paths=$(for f in "$dir"/raw/hop*/final.json; do jq -r '[.flows[].path] | join("+")' "$f"; done | paste -sd,)
    fi
  else
    tail -5 "$work/$key.log" >&2
  fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$rep" "$seg" "$hops" "$rate" "$fam" "$rc" "$paths" >>"$OUT/runs.tsv"
  echo "$(date -u +%H:%M:%S) $key exit $rc paths $paths $(grep -o 'conservation: [A-Z]*' "$work/$key.log" || true)"
  rm -rf "${work:?}/$key"
}

points=()
for seg in 1 32; do
  for pps in $RATES; do
    for hops in 0 1 3; do points+=("$seg/$pps/$hops"); done
  done
done
n=${#points[@]}
for ((rep = FIRST_REPEAT; rep <= REPEATS; rep++)); do
  fams=(ipv4 ipv6)
  [ $((rep % 2)) -eq 0 ] && fams=(ipv6 ipv4)
  for ((i = 0; i < n; i++)); do
    # Rotated by 5 places a repeat: each point meets other neighbours.
    IFS=/ read -r seg pps hops <<<"${points[$(((i + (rep - 1) * 5) % n))]}"
    for fam in "${fams[@]}"; do
      if [ -n "$STOP_AT" ] && [ "$(date +%s)" -ge "$STOP_AT" ]; then
        echo "campaign-fastpath: past STOP_AT, stopping in repeat $rep" >&2
        exit 0
      fi
      one "$rep" "$seg" "$hops" "$pps" "$fam"
    done
  done
done
