#!/bin/bash
# IPv4 vs IPv6 on mcrd's userspace path, interleaved.
cd /work/main
export CARGO_TARGET_DIR=/var/tmp/mcr-t-main
for rep in 1 2 3; do
 for mode in 1 32; do
  for hops in 1 3; do
   for pps in 20000 100000; do
    packets=$((pps * 4))
    for fam in ipv4 ipv6; do
      flag=""; [ $fam = ipv6 ] && flag="--ipv6"
      out=${OUT:-/tmp/s6}/r$rep-g$mode-h$hops-$pps-$fam
      scripts/pipeline_veth.sh $flag --relay mcrd --hops $hops --pps $pps --packets $packets \
        --gen-gso-segments $mode --out $out > $out.log 2>&1
      echo "$rep $mode $hops $pps $fam rc=$? $(grep -o 'conservation: [A-Z]*' $out.log)"
    done
   done
  done
 done
done
