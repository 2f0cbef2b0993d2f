# Kernel counters outside the relays, as analyzer ingest --kernel reads them
# (mcr.pipeline.kernel v1, analyzer/README.md). Input (jq -n with --slurpfile):
#   $chain[0] {veth_gso, relay, ns: [{name, role: gen|hop|recv, before, after, stats}]}
#   $host[0]  pl_host_cpu output (softnet_dropped_host)
# Every value is a delta over the run. A counter missing from either snapshot is left out, never
# written as 0. With veth GSO on, veth counts GSO buffers, not datagrams, so no link counters are
# written (a buffer count would be misread as datagrams).

def delta($ns; f): (($ns.after | f) // null) as $a | (($ns.before | f) // null) as $b |
  if $a == null or $b == null then null else $a - $b end;
def known: with_entries(select(.value != null));

($chain[0]) as $c | $c.ns as $ns |
{
  schema: "mcr.pipeline.kernel", version: 1,
  links: (if $c.veth_gso == "on" then [] else
    [ range(0; ($ns | length) - 1) as $i | $ns[$i] as $up | $ns[$i + 1] as $dn |
      { from: "\($up.name):out0", to: "\($dn.name):in0" } + ({
        tx_packets: delta($up; .links.out0.tx_packets), tx_dropped: delta($up; .links.out0.tx_dropped),
        rx_packets: delta($dn; .links.in0.rx_packets), rx_dropped: delta($dn; .links.in0.rx_dropped) } | known) ]
    end),
  namespaces: [ $ns[] | { name, role: ({gen: "generator", hop: "hop", recv: "receiver"}[.role]) } + ({
      in_errors: delta(.; .udp.InErrors), rcvbuf_errors: delta(.; .udp.RcvbufErrors),
      sndbuf_errors: delta(.; .udp.SndbufErrors) } | known) ]
} + ({ softnet_dropped: ($host[0].softnet_dropped_host // null) } | known)
