# `scripts/nightly.sh --bisect` (sourced by it): when trend finds the newest runs of a rate in a
# regressed segment, the night before the change point and the night after it name two commits
# (each record's env.commit); scripts/perf-bisect.sh finds the first bad one between them, at
# the same rate and pipeline flags. Uses nightly.sh's HERE, OUT, ANALYZER, RELAY, HOPS, PACKETS,
# EXTRA and pl_log.

# bs_record_commit FILE: the commit a record ran (`env.commit` of pipeline_veth.sh, stored as
# environment.other.commit; else environment.git_revision), empty when it has none.
bs_record_commit() {
  jq -r '.environment.other.commit // .environment.git_revision // empty' "$1"
}

# bs_nightly_bisect PPS TREND_JSON: bisect the regressed change point of this rate, if any.
bs_nightly_bisect() {
  local pps=$1 trend=$2 pair before after good bad rc=0
  pair=$(jq -r '[.series[] | select(.verdict == "regressed") | .segments
    | select(length >= 2) | [.[-2].last_run, .[-1].first_run]] | first // empty | @tsv' "$trend")
  if [ -z "$pair" ]; then
    pl_log "bisect at $pps pps: trend has no regressed change point"
    return 0
  fi
  read -r before after <<<"$pair"
  before=$(jq -r --argjson i "$before" '.runs[$i].source' "$trend")
  after=$(jq -r --argjson i "$after" '.runs[$i].source' "$trend")
  good=$(bs_record_commit "$before") bad=$(bs_record_commit "$after")
  if [ -z "$good" ] || [ -z "$bad" ] || [[ $good == *-dirty ]] || [[ $bad == *-dirty ]]; then
    pl_log "bisect at $pps pps: the runs around the change point ($before, $after) carry no clean commit ('$good', '$bad'): cannot tell which code ran"
    return 0
  fi
  if [ "$good" = "$bad" ]; then
    pl_log "bisect at $pps pps: both sides of the change point ran $good: the change is not in the code"
    return 0
  fi
  pl_log "bisect at $pps pps: $good..$bad (log: $OUT/bisect-$pps.log)"
  "$HERE/perf-bisect.sh" "$good" "$bad" --pps "$pps" --analyzer "$ANALYZER" --out "$OUT/bisect-$pps" \
    -- --relay "$RELAY" --hops "$HOPS" --packets "$PACKETS" ${EXTRA[@]+"${EXTRA[@]}"} \
    >"$OUT/bisect-$pps.log" 2>&1 || rc=$?
  case $rc in
    0) pl_log "bisect at $pps pps: $(grep -m1 '^First bad commit' "$OUT/bisect-$pps.log")" ;;
    3) pl_log "bisect at $pps pps: $(grep -m1 '^Could not decide' "$OUT/bisect-$pps.log")" ;;
    *) pl_log "bisect at $pps pps failed (exit $rc): see $OUT/bisect-$pps.log" ;;
  esac
}
