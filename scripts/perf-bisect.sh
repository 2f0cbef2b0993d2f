#!/usr/bin/env bash
# Finds the commit that changed a metric (scripts/README.md, "Bisecting a regression"): lists
# GOOD..BAD (first parent), builds each candidate in its own worktree, runs the pipeline for it
# interleaved with the two endpoints (run again at each step, so that drift of the machine is not
# read as a difference), and asks `analyzer bisect-step` whether it is good, bad or undecided.
# Undecided adds repeats up to a bound, then stops with "could not decide": it never guesses.
# The analyzer decides; this script only builds and runs.
#
#   scripts/perf-bisect.sh v0.4 HEAD --pps 150000 -- --hops 3 --packets 300000
#   scripts/perf-bisect.sh A B --pipeline 'my-stand-in' --cargo-flags '--release --bins' --bins prog
#
# Exit: 0 a first bad commit named; 3 could not decide (noise, time or run limit); 2 bad flags;
# 1 a build or run failed.
set -euo pipefail
PL_PROG=perf-bisect
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
# shellcheck source=scripts/lib/pl_common.sh
. "$HERE/lib/pl_common.sh"
# shellcheck source=scripts/lib/bisect_build.sh
. "$HERE/lib/bisect_build.sh"

usage() {
  cat <<'EOF2'
Usage: scripts/perf-bisect.sh GOOD BAD [OPTIONS] [-- PIPELINE_FLAGS...]

  GOOD, BAD           commits (any git revision): GOOD has the old behaviour, BAD the new
  --pps N             pipeline rate, passed on as --pps N (default: none, the pipeline's own)
  --repeats N         runs of each side in a step's first try (default 5)
  --add N             runs added to each side after an undecided step (default 3)
  --max-repeats N     no side gets more runs; undecided there ends the bisection (default 14)
  --metric KEY        metric to judge, as in `analyzer compare --json` (default: the one whose
                      change made BAD bad, CPU per packet first, chosen at the first step and
                      kept)
  --threshold PCT     smallest change that counts, as for compare (default 5)
  --alpha A           significance level of each decision (default 0.05; each look is tested
                      at A / looks, see analyzer/README.md)
  --pipeline CMD      run command, given --bin DIR --out DIR and the pipeline flags; it must
                      leave a run.json under DIR (default scripts/pipeline_veth.sh)
  --cargo-flags STR   how to build a commit (default '--release -p relay -p trafficgen --bins')
  --bins LIST         binaries copied out of the build (default mcrd,mcrctl,trafficgen)
  --repo DIR          the git repository (default: this one)
  --analyzer PATH     analyzer binary (default $CARGO_TARGET_DIR/release/analyzer, built if missing)
  --max-commits N     refuse a range longer than this (default 64)
  --reuse-endpoints   run GOOD and BAD once for the whole bisection and judge every step
                      against those runs (half the runs; a machine that drifts during the
                      bisection is then read as a difference: reports/bisect-proof.md)
  --max-runs N        stop, undecided, after this many pipeline runs (default 400)
  --time-limit SECS   stop, undecided, after this long (default 14400)
  --out DIR           keep the records, step records and report here (default: removed at exit)
  -h, --help          this text
EOF2
}

REPEATS=5 ADD=3 MAX_REPEATS=14 METRIC='' THRESHOLD=5 ALPHA=0.05 PPS=''
BS_PIPELINE=$HERE/pipeline_veth.sh CARGO_FLAGS='--release -p relay -p trafficgen --bins'
BINS=mcrd,mcrctl,trafficgen BS_REPO=$ROOT ANALYZER='' MAX_COMMITS=64 MAX_RUNS=400
TIME_LIMIT=14400 OUT='' GOOD='' BAD='' REUSE_ENDPOINTS=0 BS_SET=''
BS_PIPELINE_FLAGS=()

parse_args() {
  local pos=()
  while [ $# -gt 0 ]; do
    case $1 in
      -h | --help) usage; exit 0 ;;
      --reuse-endpoints) REUSE_ENDPOINTS=1; shift; continue ;;
      --) shift; BS_PIPELINE_FLAGS=("$@"); break ;;
      --pps | --repeats | --add | --max-repeats | --metric | --threshold | --alpha | --pipeline | \
        --cargo-flags | --bins | --repo | --analyzer | --max-commits | --max-runs | --time-limit | --out)
        [ $# -ge 2 ] || pl_usage_error "$1 needs a value" ;;
      -*) pl_usage_error "unknown flag '$1'" ;;
      *) pos+=("$1"); shift; continue ;;
    esac
    case $1 in
      --pps) pl_need_uint "$1" "$2"; PPS=$2 ;;
      --repeats) pl_need_uint "$1" "$2"; REPEATS=$2 ;;
      --add) pl_need_uint "$1" "$2"; ADD=$2 ;;
      --max-repeats) pl_need_uint "$1" "$2"; MAX_REPEATS=$2 ;;
      --metric) METRIC=$2 ;;
      --threshold) pl_need_uint "$1" "$2"; THRESHOLD=$2 ;;
      --alpha) [[ $2 =~ ^0?\.[0-9]+$ ]] || pl_usage_error "--alpha takes a number between 0 and 1, got '$2'"; ALPHA=$2 ;;
      --pipeline) BS_PIPELINE=$2 ;;
      --cargo-flags) CARGO_FLAGS=$2 ;;
      --bins) BINS=$2 ;;
      --repo) BS_REPO=$2 ;;
      --analyzer) ANALYZER=$2 ;;
      --max-commits) pl_need_uint "$1" "$2"; MAX_COMMITS=$2 ;;
      --max-runs) pl_need_uint "$1" "$2"; MAX_RUNS=$2 ;;
      --time-limit) pl_need_uint "$1" "$2"; TIME_LIMIT=$2 ;;
      --out) OUT=$2 ;;
    esac
    shift 2
  done
  [ "${#pos[@]}" -eq 2 ] || pl_usage_error "expected two commits, GOOD and BAD (got ${#pos[@]})"
  GOOD=${pos[0]} BAD=${pos[1]}
  [ "$REPEATS" -ge 2 ] || pl_usage_error "--repeats must be at least 2 (the test needs repeats on both sides)"
  [ "$ADD" -ge 1 ] || pl_usage_error "--add must be at least 1"
  [ "$MAX_REPEATS" -ge "$REPEATS" ] || pl_usage_error "--max-repeats ($MAX_REPEATS) must be >= --repeats ($REPEATS)"
  [ -n "$PPS" ] && BS_PIPELINE_FLAGS=(--pps "$PPS" ${BS_PIPELINE_FLAGS[@]+"${BS_PIPELINE_FLAGS[@]}"})
  read -r -a BS_CARGO_FLAGS <<<"$CARGO_FLAGS"
  IFS=, read -r -a BS_BINS <<<"$BINS"
  BS_PROFILE=debug
  [[ " $CARGO_FLAGS " == *" --release "* ]] && BS_PROFILE=release
  BS_TARGET=${CARGO_TARGET_DIR:-$BS_REPO/target}
  ANALYZER=${ANALYZER:-${CARGO_TARGET_DIR:-$ROOT/target}/release/analyzer}
  # A commit's bin directory holds only what --bins copied: the pipeline's analyzer is this one.
  [ "$BS_PIPELINE" != "$HERE/pipeline_veth.sh" ] ||
    BS_PIPELINE_FLAGS=(--analyzer "$ANALYZER" ${BS_PIPELINE_FLAGS[@]+"${BS_PIPELINE_FLAGS[@]}"})
  # Bonferroni over the looks one step may take (analyzer/src/bisect/search.rs says why).
  LOOKS=$((1 + (MAX_REPEATS - REPEATS + ADD - 1) / ADD))
  STEP_ALPHA=$(awk -v a="$ALPHA" -v l="$LOOKS" 'BEGIN { printf "%.6g", a / l }')
}

cleanup() {
  local wt
  if [ -n "${BS_WORK:-}" ] && [ -d "$BS_WORK/wt" ]; then
    for wt in "$BS_WORK"/wt/*; do
      [ -d "$wt" ] && git -C "$BS_REPO" worktree remove --force "$wt" 2>/dev/null
    done
    git -C "$BS_REPO" worktree prune 2>/dev/null || true
  fi
  [ -n "${BS_TMP:-}" ] && rm -rf "$BS_TMP"
  return 0
}

# bs_check_limits: stop, undecided, when the run or time bound is reached.
bs_check_limits() {
  if [ "$BS_RUNS_DONE" -ge "$MAX_RUNS" ]; then
    give_up "the run limit ($MAX_RUNS pipeline runs) was reached"
  fi
  if [ $((SECONDS - START)) -ge "$TIME_LIMIT" ]; then
    give_up "the time limit (${TIME_LIMIT} s) was reached"
  fi
}

# give_up WHY: "could not decide between LO and HI", exit 3.
give_up() {
  report "Could not decide between ${COMMITS[$LO]:0:12} (good) and ${COMMITS[$HI]:0:12} (bad): $1."
  exit 3
}

# report LINE: the answer, with the time taken and the steps, on stdout and in OUT/bisect.md.
report() {
  local text
  text=$(
    echo "$1"
    echo "Metric: ${METRIC:-not chosen}. Wall time: $((SECONDS - START)) s, $BS_RUNS_DONE pipeline runs."
    [ -s "$BS_WORK/steps.txt" ] && { echo "Steps:"; cat "$BS_WORK/steps.txt"; }
  )
  printf '%s\n' "$text"
  [ -z "$OUT" ] || printf '# Bisection %s..%s\n\n%s\n' "$GOOD" "$BAD" "$text" >"$OUT/bisect.md"
}

# step SHA N: N runs of the endpoints and SHA, then `bisect-step`; sets ANSWER and STEP_JSON.
# Unless --reuse-endpoints, each step's runs are a set of their own (BS_SET is the candidate):
# the endpoints are run again beside each candidate, interleaved, and judged only with it.
step() {
  local sha=$1 n=$2 rc=0 metric_flag=()
  [ "$REUSE_ENDPOINTS" -eq 1 ] || BS_SET=step-${sha:0:12}
  bs_ensure "$n" "${COMMITS[0]}" "$sha" "${COMMITS[$LAST]}"
  [ -n "$METRIC" ] && metric_flag=(--metric "$METRIC")
  STEP_JSON=$BS_WORK/steps/${sha:0:12}-n$n.json
  "$ANALYZER" bisect-step --good "$(bs_run_dir "${COMMITS[0]}")" --bad "$(bs_run_dir "${COMMITS[$LAST]}")" \
    --candidate "$(bs_run_dir "$sha")" "${metric_flag[@]}" --threshold "$THRESHOLD" --alpha "$STEP_ALPHA" \
    --json "$STEP_JSON" >"$STEP_JSON.txt" 2>&1 || rc=$?
  case $rc in
    0) ANSWER=good ;; 1) ANSWER=bad ;; 3) ANSWER=undecided ;;
    *) pl_die "analyzer bisect-step on ${sha:0:12} failed: $(cat "$STEP_JSON.txt")" ;;
  esac
  [ -n "$METRIC" ] || METRIC=$(jq -r .metric.key "$STEP_JSON")
  # The step's line in the report is the analyzer's own text of it (rounded, with units).
  printf -- '- %s: %s, %s; %s; %s\n' "${sha:0:12}" "$ANSWER" \
    "$(sed -n 's/^reason: //p' "$STEP_JSON.txt")" \
    "$(sed -n 's/^candidate against good/against good/p' "$STEP_JSON.txt")" \
    "$(sed -n 's/^candidate against bad/against bad/p' "$STEP_JSON.txt")" >>"$BS_WORK/steps.txt"
}

main() {
  parse_args "$@"
  START=$SECONDS BS_RUNS_DONE=0
  git -C "$BS_REPO" rev-parse --git-dir >/dev/null 2>&1 || pl_usage_error "--repo $BS_REPO: not a git repository"
  local g b
  g=$(git -C "$BS_REPO" rev-parse --verify --quiet "$GOOD^{commit}") || pl_usage_error "GOOD '$GOOD': no such commit"
  b=$(git -C "$BS_REPO" rev-parse --verify --quiet "$BAD^{commit}") || pl_usage_error "BAD '$BAD': no such commit"
  git -C "$BS_REPO" merge-base --is-ancestor "$g" "$b" || pl_usage_error "GOOD $GOOD is not an ancestor of BAD $BAD"
  mapfile -t COMMITS < <(echo "$g"; git -C "$BS_REPO" rev-list --first-parent --reverse "$g..$b")
  LAST=$((${#COMMITS[@]} - 1)) LO=0 HI=$LAST
  [ "$LAST" -ge 1 ] || pl_usage_error "GOOD and BAD are the same commit"
  [ "$LAST" -le "$MAX_COMMITS" ] || pl_usage_error "$LAST commits in $GOOD..$BAD, more than --max-commits $MAX_COMMITS"
  pl_ensure_analyzer "$ANALYZER" "$ROOT"
  command -v jq >/dev/null || pl_die "jq is needed to read the step records"
  BS_TMP=$(mktemp -d "${TMPDIR:-/tmp}/perf-bisect.XXXXXX")
  trap cleanup EXIT
  trap 'exit 130' INT TERM
  if [ -n "$OUT" ]; then mkdir -p "$OUT"; BS_WORK=$(cd "$OUT" && pwd); else BS_WORK=$BS_TMP; fi
  mkdir -p "$BS_WORK/steps" "$BS_WORK/wt"
  : >"$BS_WORK/steps.txt"
  pl_log "$LAST commits after ${g:0:12}; alpha $ALPHA over $LOOKS looks a step: $STEP_ALPHA a look"
  local mid n direction=''
  while [ $((HI - LO)) -gt 1 ]; do
    mid=$(((LO + HI) / 2)) n=$REPEATS
    while :; do
      step "${COMMITS[$mid]}" "$n"
      [ -n "$direction" ] || direction=$(jq -r '.endpoints.change // 0 | if . < 0 then "-" else "+" end' "$STEP_JSON")
      [ "$ANSWER" = undecided ] && [ "$n" -lt "$MAX_REPEATS" ] || break
      n=$((n + ADD)); [ "$n" -le "$MAX_REPEATS" ] || n=$MAX_REPEATS
    done
    case $ANSWER in
      good) LO=$mid ;;
      bad) HI=$mid ;;
      *) give_up "${COMMITS[$mid]:0:12} stayed undecided with $n runs of each side: $(jq -r .reason "$STEP_JSON")" ;;
    esac
  done
  # The steps judged against the endpoints; the answer also needs the commit to differ from its
  # own parent, in the direction of the change (as bisect::search does).
  local parent=${COMMITS[$LO]} culprit=${COMMITS[$HI]} rc chg
  n=$REPEATS
  [ "$REUSE_ENDPOINTS" -eq 1 ] || BS_SET=parent
  while :; do
    bs_ensure "$n" "$parent" "$culprit"
    rc=0
    "$ANALYZER" bisect-step --good "$(bs_run_dir "$parent")" --bad "$(bs_run_dir "$culprit")" \
      --candidate "$(bs_run_dir "$culprit")" ${METRIC:+--metric "$METRIC"} --threshold "$THRESHOLD" \
      --alpha "$STEP_ALPHA" --json "$BS_WORK/steps/parent.json" >"$BS_WORK/steps/parent.txt" 2>&1 || rc=$?
    [ "$rc" -le 1 ] || [ "$rc" -eq 3 ] || pl_die "analyzer bisect-step on the parent failed: $(cat "$BS_WORK/steps/parent.txt")"
    [ -n "$METRIC" ] || METRIC=$(jq -r .metric.key "$BS_WORK/steps/parent.json")
    chg=$(jq -r '.endpoints.change // 0 | if . < 0 then "-" else "+" end' "$BS_WORK/steps/parent.json")
    if [ "$rc" -eq 1 ] && { [ -z "$direction" ] || [ "$chg" = "$direction" ]; }; then break; fi
    [ "$n" -lt "$MAX_REPEATS" ] ||
      give_up "the steps point at ${culprit:0:12}, but with $n runs of each it does not differ from its parent beyond noise"
    n=$((n + ADD)); [ "$n" -le "$MAX_REPEATS" ] || n=$MAX_REPEATS
  done
  report "$(jq -r --arg c "$culprit" --arg s "$(git -C "$BS_REPO" log -1 --format=%s "$culprit")" '
    "First bad commit: \($c) \"\($s)\": \(.metric.key) \(.endpoints.change * 100 | round / 100)% against its parent (p = \(if .endpoints.p then (.endpoints.p * 100000 | round / 100000 | tostring) else "threshold rule" end), n = \(.endpoints.n_reference) + \(.endpoints.n_other) runs)."' \
    "$BS_WORK/steps/parent.json")"
}

[ "${BASH_SOURCE[0]}" != "$0" ] || main "$@"
