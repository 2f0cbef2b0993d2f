# keep_records WORK OUT: of the pipeline runs under WORK/repN/RUN/, keep what is small and says
# everything (the run record and the printed summary) as OUT/records/RUN/repN.json and
# repN.summary.txt, replacing OUT/records. Used by the benchmarks that repeat pipeline runs.
keep_records() {
  local work=$1 out=$2 d r run
  rm -rf "$out/records"
  for d in "$work"/rep*/*/; do
    [ -f "$d/run.json" ] || continue
    r=$(basename "$(dirname "$d")") run=$(basename "$d")
    mkdir -p "$out/records/$run"
    cp "$d/run.json" "$out/records/$run/$r.json"
    cp "$d/summary.txt" "$out/records/$run/$r.summary.txt"
  done
}
