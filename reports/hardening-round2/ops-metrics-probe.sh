#!/bin/bash
# usage: ops-metrics-probe.sh MCRD ; starts MCRD with 1500 rules and /metrics in namespace opsprobe-$$, runs the probes
set -u
MCRD=$1; NS=opsprobe-$$; D=$(mktemp -d)
ip netns add $NS; ip -n $NS link set lo up
ip -n $NS link add in0 type veth peer name out0; ip -n $NS link set in0 up; ip -n $NS link set out0 up
{ printf '[control]\nsocket = "%s/s"\n[metrics]\nlisten = "127.0.0.1:19108"\n[dataplane]\nworkers = 1\n' $D
  for k in $(seq 0 1499); do printf '[[rule]]\nname = "r%d"\ninput = "in0"\ngroup = "239.3.%d.%d"\nport = 5000\noutputs = [{ dest = "239.4.0.1", port = 5000, interface = "out0" }]\n' $k $((k/250)) $((k%250+1)); done; } > $D/relay.toml
ip netns exec $NS $MCRD --config $D/relay.toml >$D/out 2>$D/log & P=$!
sleep 3
for m in "idle 5" "idle 16" "idle 50" slowloris slowreader bigline; do timeout 120 ip netns exec $NS python3 "$(dirname "$0")/ops-metrics-probe.py" $m; done
kill $P; wait $P; ip netns del $NS; rm -rf $D
