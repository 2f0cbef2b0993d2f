#!/usr/bin/env bash
# The nightly performance job (scripts/README.md): runs scripts/pipeline_veth.sh REPEATS times at each
# of a fixed set of rates, appends the run records to a history directory, compares each rate's
# repeats with the checked-in baseline (`analyzer compare`, Mann-Whitney over the repeats) and
# looks for change points over the history (`analyzer trend`), and writes one Markdown report
# with its charts. Needs root, like the pipeline.
#
#   scripts/nightly.sh                       # 5 repeats at 20k and 150k pps, 3 hops of mcrd
#   scripts/nightly.sh --repeats 3 --rates 20000 -- --workers 2   # after --: pipeline flags
#   scripts/nightly.sh --bisect              # and find the commit of a regressed change point
#
# Layout (defaults):
#   reports/pipeline/baseline/rate-PPS/*.json   the baseline, checked in (update: --update-baseline)
#   reports/pipeline/history/rate-PPS/*.json    every nightly record, oldest first by name
#   reports/pipeline/history/dataset/*.parquet    the same as rows (`analyzer history show`, `trend`), a part a night and rate
#   reports/pipeline/nightly/DATE/              this night: runs/, report.md, compare-*.md, trend-*.md, png-*/
# Exit: 0 no regression and every packet accounted for; 1 a regression (compare or trend);
# 2 bad flags; 3 a run had unexplained loss or failed.
set -euo pipefail
PL_PROG=nightly
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
# shellcheck source=scripts/lib/pl_common.sh
. "$HERE/lib/pl_common.sh"
# shellcheck source=scripts/lib/bisect_nightly.sh
. "$HERE/lib/bisect_nightly.sh"

usage() {
  cat <<'EOF'
Usage: scripts/nightly.sh [OPTIONS] [-- PIPELINE_FLAGS...]

  --repeats N         runs per rate (default 5)
  --rates LIST        comma list of target rates in pps (default 20000,150000: one the 3-hop chain sustains here, one it cannot)
  --packets N         datagrams per run (default 300000)
  --hops N            relays in the chain (default 3)
  --relay NAME        mcrd, socat or kernel (default mcrd)
  --history DIR       history of records (default reports/pipeline/history)
  --baseline DIR      baseline records (default reports/pipeline/baseline)
  --out DIR           this night's report (default reports/pipeline/nightly/<UTC date-time>)
  --threshold PCT     smallest change judged a regression, for compare (--threshold) and trend
                      (--min-effect); default 5, the analyzer's. On a shared machine the same build
                      varies 10-15% in CPU per packet from one night to the next: use 20 there.
  --update-baseline   replace the baseline with this night's records (after a reviewed change)
  --bisect            when trend finds a regressed change point, run scripts/perf-bisect.sh
                      between the commits of the nights either side of it (OUT/bisect-PPS/)
  --bin DIR, --analyzer PATH   as for pipeline_veth.sh
  -h, --help          this text
EOF
}

REPEATS=5 RATES=20000,150000 PACKETS=300000 HOPS=3 RELAY=mcrd UPDATE_BASELINE=0 THRESHOLD=5 BISECT=0
HISTORY=$ROOT/reports/pipeline/history BASELINE=$ROOT/reports/pipeline/baseline OUT=''
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release ANALYZER=''
EXTRA=()

parse_args() {
  while [ $# -gt 0 ]; do
    case $1 in
      -h | --help) usage; exit 0 ;;
      --update-baseline) UPDATE_BASELINE=1; shift; continue ;;
      --bisect) BISECT=1; shift; continue ;;
      --) shift; EXTRA=("$@"); break ;;
      --repeats | --rates | --packets | --hops | --relay | --history | --baseline | --out | --bin | \
        --analyzer | --threshold) ;;
      *) pl_usage_error "unknown flag '$1'" ;;
    esac
    [ $# -ge 2 ] || pl_usage_error "$1 needs a value"
    case $1 in
      --repeats) pl_need_uint "$1" "$2"; REPEATS=$2 ;;
      --rates) [[ $2 =~ ^[0-9]+(,[0-9]+)*$ ]] || pl_usage_error "--rates takes a comma list of pps, got '$2'"; RATES=$2 ;;
      --packets) pl_need_uint "$1" "$2"; PACKETS=$2 ;;
      --hops) [[ $2 =~ ^[0-3]$ ]] || pl_usage_error "--hops takes 0..3"; HOPS=$2 ;;
      --relay) [[ $2 =~ ^(mcrd|socat|kernel)$ ]] || pl_usage_error "--relay takes mcrd, socat or kernel"; RELAY=$2 ;;
      --history) HISTORY=$2 ;;
      --baseline) BASELINE=$2 ;;
      --out) OUT=$2 ;;
      --bin) BIN=$2 ;;
      --analyzer) ANALYZER=$2 ;;
      --threshold) pl_need_uint "$1" "$2"; THRESHOLD=$2 ;;
    esac
    shift 2
  done
  [ "$REPEATS" -ge 1 ] || pl_usage_error "--repeats must be at least 1"
  ANALYZER=${ANALYZER:-$BIN/analyzer}
  STAMP=$(date -u +%Y%m%dT%H%M%SZ)
  OUT=${OUT:-$ROOT/reports/pipeline/nightly/$STAMP}
}

# run_rate PPS: REPEATS pipeline runs; their records go to OUT/sets/rate-PPS and the history.
# Sets RATE_FAILED when a run failed or had unexplained loss.
run_rate() {
  local pps=$1 r rc dir rec
  mkdir -p "$OUT/runs/rate-$pps" "$OUT/sets/rate-$pps" "$HISTORY/rate-$pps"
  for ((r = 1; r <= REPEATS; r++)); do
    dir=$OUT/runs/rate-$pps/rep$r
    rc=0
    "$HERE/pipeline_veth.sh" --relay "$RELAY" --hops "$HOPS" --pps "$pps" --packets "$PACKETS" \
      --bin "$BIN" --analyzer "$ANALYZER" --out "$dir" --name "$RELAY ${HOPS}h ${pps}pps" \
      ${EXTRA[@]+"${EXTRA[@]}"} >"$dir.log" 2>&1 || rc=$?
    rec=$(find "$dir" -name run.json -print -quit 2>/dev/null || true)
    if [ "$rc" -ne 0 ] || [ -z "$rec" ]; then
      pl_log "rate $pps repeat $r: pipeline exited $rc (log: $dir.log)"
      RATE_FAILED=1
    fi
    if [ -n "$rec" ]; then
      cp "$rec" "$OUT/sets/rate-$pps/rep$r.json"
      cp "$rec" "$HISTORY/rate-$pps/$STAMP-rep$r.json"
    fi
  done
  # The columnar history (`analyzer history show`, `analyzer trend`): this night's repeats as
  # one new part, appended from their copies in the history so that a row's source stays.
  if compgen -G "$HISTORY/rate-$pps/$STAMP-rep*.json" >/dev/null; then
    "$ANALYZER" history append --to "$HISTORY/dataset" "$HISTORY/rate-$pps/$STAMP"-rep*.json >"$OUT/history-$pps.log" 2>&1 ||
      pl_log "analyzer history append failed: $(cat "$OUT/history-$pps.log")"
  fi
}

# compare_rate PPS: this night's repeats against the baseline's. Sets REGRESSED on exit 1.
compare_rate() {
  local pps=$1 rc=0
  if ! compgen -G "$BASELINE/rate-$pps/*.json" >/dev/null; then
    echo "No baseline for $pps pps in ${BASELINE#"$ROOT"/} (make one with --update-baseline)." >"$OUT/compare-$pps.md"
    return 0
  fi
  (cd "$ROOT" && "$ANALYZER" compare "$BASELINE/rate-$pps" "$OUT/sets/rate-$pps" \
    --threshold "$THRESHOLD" --out "$OUT/compare-$pps.md" --png-dir "$OUT/png-$pps") >"$OUT/compare-$pps.log" 2>&1 || rc=$?
  pl_analyzer_said "compare at $pps pps" "$rc" "$OUT/compare-$pps.log"
  case $rc in 0) ;; 1) REGRESSED=1 ;; *) RATE_FAILED=1 ;; esac
}

# trend_rate PPS: change points over the whole history of this rate: the runs of the Parquet
# history whose generator targeted PPS, in the order they were appended.
trend_rate() {
  local pps=$1 rc=0 files=()
  mapfile -t files < <(find "$HISTORY/rate-$pps" -name '*.json' | sort)
  if [ "${#files[@]}" -lt 2 ] || ! compgen -G "$HISTORY/dataset/*.parquet" >/dev/null; then
    echo "History for $pps pps has ${#files[@]} record(s): a trend needs two." >"$OUT/trend-$pps.md"
    return 0
  fi
  (cd "$ROOT" && "$ANALYZER" trend "$HISTORY/dataset" --rate "$pps" --min-effect "$THRESHOLD" --out "$OUT/trend-$pps.md" --png-dir "$OUT/png-$pps" \
    --json "$OUT/trend-$pps.json") \
    >"$OUT/trend-$pps.log" 2>&1 || rc=$?
  pl_analyzer_said "trend at $pps pps" "$rc" "$OUT/trend-$pps.log"
  case $rc in 0) ;; 1) REGRESSED=1 ;; *) RATE_FAILED=1 ;; esac
  [ "$BISECT" -eq 0 ] || [ "$rc" -ne 1 ] || bs_nightly_bisect "$pps" "$OUT/trend-$pps.json"
}

# write_report: one page: what ran, each run's conservation line, links to compare and trend.
write_report() {
  local pps s
  {
    echo "# Nightly pipeline report $STAMP"
    echo
    echo "$RELAY, $HOPS hops, $PACKETS datagrams per run, $REPEATS repeats per rate, rates $RATES pps;"
    echo "git $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)."
    echo "Extra pipeline flags: ${EXTRA[*]:-none}. Regression threshold: $THRESHOLD%."
    echo
    for pps in ${RATES//,/ }; do
      echo "## $pps pps"
      echo
      echo "| repeat | sent | received | lost | counted drops | unexplained | host CPU ns/delivered pkt | other processes (% of a CPU) |"
      echo "|---|---|---|---|---|---|---|---|"
      for s in "$OUT"/runs/rate-"$pps"/rep*/*/conservation.json; do
        [ -f "$s" ] || continue
        "$ANALYZER" pipeline row --label "$(basename "$(dirname "$(dirname "$s")")")" \
          --conservation "$s" --host-cpu "$(dirname "$s")/raw/host-cpu.json"
      done
      echo
      echo "Other processes: CPU the machine spent on work that was not this run's, during it (the host"
      echo "CPU column has it subtracted, but it also takes cores from the relays: a verdict made while it"
      echo "was high says more about the machine than about the code)."
      echo
      echo "- Against the baseline: [compare-$pps.md](compare-$pps.md)"
      echo "- Over the history: [trend-$pps.md](trend-$pps.md)"
      echo
    done
  } >"$OUT/report.md"
}

update_baseline() {
  local pps
  for pps in ${RATES//,/ }; do
    rm -rf "$BASELINE/rate-$pps"
    mkdir -p "$BASELINE/rate-$pps"
    cp "$OUT/sets/rate-$pps"/*.json "$BASELINE/rate-$pps/"
  done
  pl_log "baseline replaced from $OUT/sets"
}

main() {
  parse_args "$@"
  pl_ensure_analyzer "$ANALYZER" "$ROOT"
  RATE_FAILED=0 REGRESSED=0
  local pps
  for pps in ${RATES//,/ }; do run_rate "$pps"; done
  for pps in ${RATES//,/ }; do compare_rate "$pps"; trend_rate "$pps"; done
  write_report
  [ "$UPDATE_BASELINE" -eq 1 ] && update_baseline
  pl_log "report: $OUT/report.md"
  [ "$RATE_FAILED" -eq 0 ] || exit 3
  [ "$REGRESSED" -eq 0 ] || exit 1
}

# Sourcing the file (for its functions) does not run it.
[ "${BASH_SOURCE[0]}" != "$0" ] || main "$@"
