#!/bin/sh
# Rebuilds the seed's run records (reports/*.json) from the seed report's own numbers
# (reports/seed/*/*.txt), then the comparison report and its charts.
#
#   ANALYZER=path/to/analyzer OUT=reports sh scripts/make-seed-records.sh
#
# Exit status: that of `analyzer compare` is expected to be 1 (After Fix regressed against
# PHASE4 on egress), which this script treats as success.
set -eu
A=${ANALYZER:-analyzer}
cd "$(dirname "$0")/.."
OUT=${OUT:-reports}
S=reports/seed

"$A" ingest --name PHASE4 --date 2025-11-11 \
  --description "Historical reference run quoted by the seed report" \
  --generator $S/phase4/generator.txt --hop MCR-1=$S/phase4/mcr1.txt \
  --set hop.MCR-1.relay=mcr-seed \
  --out "$OUT/phase4.json"

"$A" ingest --name "Before Fix" --date 2025-11-16 \
  --description "Seed relay with per-packet logging on the hot path" \
  --generator $S/before-fix/generator.txt --hop MCR-1=$S/before-fix/mcr1.txt \
  --set hop.MCR-1.relay=mcr-seed \
  --set "config.relay.hot_path_logging=per-packet trace and format!() on ingress/egress, critical log per buffer exhaustion" \
  --set config.relay.egress_uring_queue_depth=64 \
  --set "config.relay.egress_so_sndbuf=not set (kernel default)" \
  --out "$OUT/before-fix.json"

"$A" ingest --name "After Fix" --date 2025-11-16 \
  --description "Seed relay after removing hot-path logging" \
  --generator $S/after-fix/generator.txt \
  --hop MCR-1=$S/after-fix/mcr1.txt --hop MCR-2=$S/after-fix/mcr2.txt \
  --set hop.MCR-1.relay=mcr-seed --set hop.MCR-2.relay=mcr-seed \
  --set config.relay.hot_path_logging=removed \
  --set config.relay.egress_uring_queue_depth=64 \
  --set "config.relay.egress_so_sndbuf=not set (kernel default)" \
  --set config.generator.count=10000000 --set config.generator.size=1400 \
  --set config.harness.script=tests/data_plane_pipeline_veth.sh \
  --set "config.harness.topology=Traffic Generator → MCR-1 → MCR-2 → MCR-3" \
  --out "$OUT/after-fix.json"

status=0
"$A" compare --chain "$OUT/phase4.json" "$OUT/before-fix.json" "$OUT/after-fix.json" \
  --out "$OUT/seed-comparison.md" --png-dir "$OUT/png" || status=$?
test "$status" -le 1
