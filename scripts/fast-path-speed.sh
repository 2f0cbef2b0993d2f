#!/usr/bin/env bash
# Makes the measurements behind reports/relay-speed-fastpath.md: mcrd's kernel fast path beside
# the kernel's own unicast forwarding (relay kind route), the kernel's multicast forwarding
# (kernel: only where the kernel has it, /proc/net/ip_mr_vif; otherwise it says once that it
# skips it), userspace mcrd, the floor of a hop (redirect: frames moved in0 -> out0 with no
# forwarding decision) and the direct generator -> receiver paths (multicast, and unicast for
# route):
# - at RATES, 1 and 3 hops of each;
# - for the zero-loss search, 3 hops of the fast path, route and kernel at SEARCH_RATES;
# - flat out (the generator unpaced, pipeline_veth.sh --pps 0, FLAT_OUT_PACKETS datagrams),
#   1 and 3 hops of the fast path, route, kernel and redirect.
# Each point runs in every generator mode of GEN_MODES: single (plain sendmmsg, one datagram per
# message and no UDP_SEGMENT, as cameras and encoders build them; still up to 8 messages per
# call) and gso (UDP GSO messages of 32 datagrams). The mode ends each record set's name:
# CONFIG-NHh-PPSpps-MODE, CONFIG-NHh-unpaced-MODE.
# Every configuration (path and mode) runs once per repeat, interleaved, and their order rotates
# from one repeat to the next, so the shared machine's background load and any drift fall on all
# alike. The generator runs with --gen-coalesce-us COALESCE_US everywhere: the same input for
# every path, and one at which it sleeps between batches at every paced rate (see the report).
# Then `analyzer compare` per mode, rate and hop count, and medians.md (`analyzer medians fast-path`),
# every table keyed by the generator's mode. The defaults make 480 runs, about an hour (in single
# mode the generator tops out near 100k pps on a chain, so its search and unpaced runs take longer).
# Needs root and the binaries (relay and trafficgen built with optimisation).
#
#   BIN=$CARGO_TARGET_DIR/release scripts/fast-path-speed.sh [OUT]
#   GEN_MODES=single ...                    # one generator mode only (default "single gso")
#   RATE_PATHS="fastpath mcrd" SEARCH_RATES= FLAT_OUT_PACKETS=0 ...   # some paths at RATES only
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
# Set but empty (SEARCH_RATES=), no search: hence `-`, not `:-`.
SEARCH_RATES=${SEARCH_RATES-"150000 200000 300000 400000 600000"}
GEN_MODES=${GEN_MODES:-"single gso"}
# The paths run at RATES (kernel is added wherever the kernel has multicast routing); mcrd is
# the userspace path (pipeline_veth.sh runs it with fast_path = "off").
RATE_PATHS=${RATE_PATHS:-"fastpath route mcrd redirect"}
COALESCE_US=${COALESCE_US:-200}
# Offered traffic per run, in seconds at the target rate (at least MIN_PACKETS datagrams).
RUN_SECONDS=${RUN_SECONDS:-3}
MIN_PACKETS=${MIN_PACKETS:-100000}
# Datagrams per unpaced run (0: no unpaced point). Default: RUN_SECONDS at the top search rate.
top=0
for pps in $SEARCH_RATES; do top=$pps; done
FLAT_OUT_PACKETS=${FLAT_OUT_PACKETS:-$((top * RUN_SECONDS > MIN_PACKETS ? top * RUN_SECONDS : MIN_PACKETS))}
STOP_AT=${STOP_AT:-}
PREFIX=${PREFIX:-plb}
# UDP GSO datagrams per message in mode gso: trafficgen's default, what the runs before modes used.
GSO_SEGMENTS=32

read -r -a MODES <<<"$GEN_MODES"
bad_modes() {
  echo "fast-path-speed: GEN_MODES takes single and/or gso, got '$GEN_MODES'" >&2
  exit 2
}
[ "${#MODES[@]}" -gt 0 ] || bad_modes
for mode in "${MODES[@]}"; do
  case $mode in single | gso) ;; *) bad_modes ;; esac
done

late() { [ -n "$STOP_AT" ] && [ "$(date +%s)" -ge "$STOP_AT" ]; }

rate_tag() { # PPS: how pipeline_veth.sh names a run's rate
  if [ "$1" -eq 0 ]; then echo unpaced; else echo "${1}pps"; fi
}

# pipeline DIR PPS MODE NAME FLAGS...: one pipeline_veth.sh run (PPS 0: unpaced) with the
# generator in MODE; its run directory CONFIG-NHh-RATE moves to DIR/CONFIG-NHh-RATE-MODE.
pipeline() {
  local dir=$1 pps=$2 mode=$3 name=$4 packets=$(($2 * RUN_SECONDS)) segments=1 d
  shift 4
  if late; then
    echo "fast-path-speed: past STOP_AT, skipped: $* at $(rate_tag "$pps"), $mode" >&2
    return 0
  fi
  [ "$pps" -gt 0 ] || packets=$FLAT_OUT_PACKETS
  [ "$packets" -ge "$MIN_PACKETS" ] || packets=$MIN_PACKETS
  [ "$mode" = single ] || segments=$GSO_SEGMENTS
  "$ROOT/scripts/pipeline_veth.sh" --prefix "$PREFIX" --pps "$pps" --packets "$packets" \
    --gen-gso-segments "$segments" --gen-coalesce-us "$COALESCE_US" --bin "$BIN" \
    --analyzer "$ANALYZER" --out "$dir/$mode" --name "$name" "$@" ||
    echo "fast-path-speed: $* at $(rate_tag "$pps"), $mode, exited $?" >&2
  for d in "$dir/$mode"/*/; do
    [ -d "$d" ] && mv -T "$d" "$dir/$(basename "$d")-$mode"
  done
  rm -rf "${dir:?}/$mode"
}

# rotate R WORD...: the words rotated left by R-1 places (the configurations' order in repeat R).
rotate() {
  local r=$1
  shift
  local a=("$@") n=$# i
  for ((i = 0; i < n; i++)); do echo "${a[$(((i + r - 1) % n))]}"; done
}

# each R DIR PPS HOPS RELAY...: one pipeline run per relay and generator mode, in repeat R's
# order. One relay per call: with a list, pipeline_veth.sh also draws an `analyzer compare` with
# charts (seconds each).
each() {
  local r=$1 dir=$2 pps=$3 hops=$4 relay mode item items=() rate
  shift 4
  rate=$(rate_tag "$pps")
  # The modes rotate too, so that neither mode always runs just before the other on a path.
  for relay in "$@"; do
    for mode in $(rotate "$r" "${MODES[@]}"); do items+=("$relay/$mode"); done
  done
  for item in $(rotate "$r" "${items[@]}"); do
    relay=${item%/*} mode=${item#*/}
    case $relay in
      direct) pipeline "$dir" "$pps" "$mode" "direct 0h $rate $mode" --hops 0 ;;
      direct-unicast)
        pipeline "$dir" "$pps" "$mode" "direct-unicast 0h $rate $mode" --hops 0 --relay route ;;
      *) pipeline "$dir" "$pps" "$mode" "$relay ${hops}h $rate $mode" --hops "$hops" --relay "$relay" ;;
    esac
  done
}

run_all() {
  local work r pps hops kernel=()
  # The kernel's multicast forwarding wherever the kernel has it (pipeline_veth.sh --relay
  # kernel stops at once without it).
  if [ -e /proc/net/ip_mr_vif ]; then
    kernel=(kernel)
  else
    echo "fast-path-speed: relay kind kernel skipped: this kernel ($(uname -r)) has no IPv4 multicast routing (CONFIG_IP_MROUTE unset: /proc/net/ip_mr_vif is missing); route stands in for it" >&2
  fi
  work=$(mktemp -d /tmp/fast-path-speed.XXXXXX)
  for ((r = 1; r <= REPEATS; r++)); do
    for pps in $RATES; do
      each "$r" "$work/rep$r" "$pps" 0 direct direct-unicast
      for hops in 1 3; do
        # shellcheck disable=SC2086 # RATE_PATHS is a word list
        each "$r" "$work/rep$r" "$pps" "$hops" $RATE_PATHS ${kernel[@]+"${kernel[@]}"}
      done
    done
    for pps in $SEARCH_RATES; do
      each "$r" "$work/rep$r" "$pps" 0 direct direct-unicast
      each "$r" "$work/rep$r" "$pps" 3 fastpath route ${kernel[@]+"${kernel[@]}"}
    done
    if [ "$FLAT_OUT_PACKETS" -gt 0 ]; then
      each "$r" "$work/rep$r" 0 0 direct direct-unicast
      for hops in 1 3; do
        each "$r" "$work/rep$r" 0 "$hops" fastpath route ${kernel[@]+"${kernel[@]}"} redirect
      done
    fi
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

# One comparison per cell (hops, rate and mode: NHh-RATE-MODE, or NHh-PPSpps in the records
# made before modes) that the records hold, route first (the baseline).
for cell in $(for d in "$OUT"/records/*/; do
  [[ $(basename "$d") =~ -([1-3]h-.+)$ ]] && echo "${BASH_REMATCH[1]}"
done | sort -u); do
  compare "compare-$cell" "route-$cell" "fastpath-$cell" "kernel-$cell" "mcrd-$cell" "redirect-$cell"
done

"$ANALYZER" medians fast-path "$OUT/records" --out "$OUT/medians.md"
echo "fast-path-speed: $OUT/medians.md"
