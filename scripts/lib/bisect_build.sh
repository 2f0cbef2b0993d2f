# Building and running one commit for scripts/perf-bisect.sh (sourced). Each commit gets its own
# git worktree under BS_WORK; all share one CARGO_TARGET_DIR, so a build's binaries are copied to
# BS_WORK/bin/SHA right after it (the next build overwrites them in the target directory).
# Needs: BS_REPO, BS_WORK, BS_TARGET, BS_CARGO_FLAGS (array), BS_BINS (array), BS_PROFILE,
# BS_PIPELINE, BS_PIPELINE_FLAGS (array), pl_log/pl_die from pl_common.sh.
# BS_SET, when set, names the set of runs the next runs belong to (a bisection step): runs are
# kept, counted and judged per set, so that a step compares only runs made side by side.

# bs_bin_dir SHA: the directory of SHA's binaries, built on first use.
bs_bin_dir() {
  local sha=$1 wt=$BS_WORK/wt/$1 bin=$BS_WORK/bin/$1 b
  if [ ! -d "$bin" ]; then
    git -C "$BS_REPO" worktree add --detach --quiet "$wt" "$sha" >&2 ||
      pl_die "git worktree add $wt $sha failed"
    pl_log "building ${sha:0:12}"
    (cd "$wt" && CARGO_TARGET_DIR=$BS_TARGET cargo build --quiet "${BS_CARGO_FLAGS[@]}") \
      >"$BS_WORK/build-$sha.log" 2>&1 || pl_die "build of $sha failed: $(tail -n 20 "$BS_WORK/build-$sha.log")"
    mkdir -p "$bin.tmp"
    for b in "${BS_BINS[@]}"; do
      [ -x "$BS_TARGET/$BS_PROFILE/$b" ] || pl_die "build of $sha made no $BS_PROFILE/$b in $BS_TARGET"
      cp "$BS_TARGET/$BS_PROFILE/$b" "$bin.tmp/"
    done
    mv "$bin.tmp" "$bin"
    # The source is not needed once the binaries are out; the worktree goes now, not at exit.
    git -C "$BS_REPO" worktree remove --force "$wt" >&2 || true
  fi
  printf '%s\n' "$bin"
}

# bs_run_dir SHA: where SHA's run records of the current set are kept.
bs_run_dir() { printf '%s\n' "$BS_WORK/runs/${BS_SET:+$BS_SET/}$1"; }

# bs_runs SHA: how many runs SHA has in the current set.
bs_runs() {
  local d
  d=$(bs_run_dir "$1")
  [ -d "$d" ] || { echo 0; return; }
  find "$d" -maxdepth 1 -name '*.json' | wc -l
}

# bs_run_once SHA: one pipeline run of SHA; its run.json becomes $(bs_run_dir SHA)/repN.json.
bs_run_once() {
  local sha=$1 bin n out rec rc=0 runs
  bin=$(bs_bin_dir "$sha")
  runs=$(bs_run_dir "$sha")
  n=$(($(bs_runs "$sha") + 1))
  out=$BS_WORK/out/${BS_SET:+$BS_SET/}$sha/rep$n
  mkdir -p "$out" "$runs"
  # shellcheck disable=SC2086 # BS_PIPELINE is a command line, split on purpose.
  $BS_PIPELINE --bin "$bin" --out "$out" ${BS_PIPELINE_FLAGS[@]+"${BS_PIPELINE_FLAGS[@]}"} \
    >"$out.log" 2>&1 || rc=$?
  rec=$(find "$out" -name run.json -print -quit 2>/dev/null || true)
  [ "$rc" -eq 0 ] && [ -n "$rec" ] ||
    pl_die "pipeline run $n of ${sha:0:12} exited $rc with ${rec:-no run.json} (log: $out.log): $(tail -n 5 "$out.log")"
  cp "$rec" "$runs/rep$n.json"
  BS_RUNS_DONE=$((BS_RUNS_DONE + 1))
}

# bs_ensure N SHA...: every SHA gets N runs, taken in rounds (A, B, C, A, B, C, ...) so that a
# machine getting slower over the bisection slows every side alike.
bs_ensure() {
  local n=$1 sha
  shift
  while :; do
    local short=0
    for sha in "$@"; do
      if [ "$(bs_runs "$sha")" -lt "$n" ]; then
        short=1
        bs_check_limits
        bs_run_once "$sha"
      fi
    done
    [ "$short" -eq 1 ] || break
  done
}
