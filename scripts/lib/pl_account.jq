# Packet conservation over the chain, in frames (datagrams on the wire), from the counters one
# run of pipeline_veth.sh collected. Input (jq -n with --slurpfile):
#   $send[0]  trafficgen send record      $recv[0]  trafficgen recv record
#   $chain[0] {veth_gso, relay, ns: [{name, role: gen|hop|recv, before, after, stats}]}
#             before/after: pl_snap_ns snapshots; stats: mcrd final stats or null
# Every stage says what went in, what a counter says it dropped, what came out, and the
# unexplained rest (in - dropped - out). The end-to-end line is
#   frames sent = frames the receiver got + every counted drop + unexplained
# where frames include the end markers (kernel counters cannot tell them from data). The run
# passes when the end-to-end and every stage's unexplained are 0.

def d($ns; f): (($ns.after | f) // 0) - (($ns.before | f) // 0);
def link($ns; $dev; $k): d($ns; .links[$dev][$k]);
# The kernel's unicast forwarding (relay route) counts its drops only in the namespace's IPv4 MIB:
# on input (header, address, protocol, discards) and on output (discards, no route, DF too big).
def route_drops($ns):
  d($ns; .ip.InHdrErrors) + d($ns; .ip.InAddrErrors) + d($ns; .ip.InUnknownProtos) + d($ns; .ip.InDiscards)
  + d($ns; .ip.OutDiscards) + d($ns; .ip.OutNoRoutes) + d($ns; .ip.FragFails);
def mcrd_drops($s):
  ($s.totals.kernel_drops + $s.totals.buf_exhaust + $s.totals.filtered + $s.totals.no_match
   + ($s.totals.malformed | if type == "object" then ([.[]] | add // 0) else . end)
   + ($s.totals.tx_errors | if type == "object" then ([.[]] | add // 0) else . end));

($send[0]) as $s | ($recv[0]) as $r | ($chain[0]) as $c | $c.ns as $ns |
($s.packets_sent + $s.end_markers_sent) as $frames_sent |
($r.totals.received + $r.totals.end_markers_received + $r.totals.duplicated + $r.totals.late) as $frames_got |
[
  # the generator: what trafficgen says it sent vs what its veth took
  { stage: "generator", in: $frames_sent, dropped: 0,
    out: (link($ns[0]; "out0"; "tx_packets") + link($ns[0]; "out0"; "tx_dropped")),
    detail: { packets_sent: $s.packets_sent, end_markers_sent: $s.end_markers_sent, send_errors: $s.send_errors } },
  ( range(0; ($ns | length) - 1) as $i | $ns[$i] as $up | $ns[$i + 1] as $dn |
    # the link: out0 of one namespace to in0 of the next
    { stage: "link \($up.name) -> \($dn.name)",
      in: (link($up; "out0"; "tx_packets") + link($up; "out0"; "tx_dropped")),
      dropped: (link($up; "out0"; "tx_dropped") + link($dn; "in0"; "rx_dropped")),
      out: link($dn; "in0"; "rx_packets"),
      detail: { veth_tx_dropped: link($up; "out0"; "tx_dropped"), veth_rx_dropped: link($dn; "in0"; "rx_dropped") } },
    ( select($dn.role == "hop") |
      { stage: "relay \($dn.name) (\($c.relay))",
        in: link($dn; "in0"; "rx_packets"),
        dropped: (if ($c.relay == "mcrd" or $c.relay == "fastpath") then mcrd_drops($dn.stats)
                  elif $c.relay == "route" then route_drops($dn)
                  elif $c.relay == "redirect" then 0
                  else d($dn; .udp.InErrors) + d($dn; .udp.SndbufErrors) end),
        out: (link($dn; "out0"; "tx_packets") + link($dn; "out0"; "tx_dropped")),
        detail: (if ($c.relay == "mcrd" or $c.relay == "fastpath") then ($dn.stats.totals | {rx_frames, rx, kernel_drops, matched, buf_exhaust, tx_sent, tx_errors, in_flight, filtered, no_match, malformed})
                 elif $c.relay == "kernel" then { mr_vif_in0_pkts_in: d($dn; .mr_vif.in0.pkts_in), mr_vif_out0_pkts_out: d($dn; .mr_vif.out0.pkts_out) }
                 elif $c.relay == "redirect" then { in0_rx_packets: link($dn; "in0"; "rx_packets"), out0_tx_packets: link($dn; "out0"; "tx_packets") }
                 elif $c.relay == "route" then { ip_in_receives: d($dn; .ip.InReceives), ip_forw_datagrams: d($dn; .ip.ForwDatagrams), ip_in_delivers: d($dn; .ip.InDelivers), ip_in_hdr_errors: d($dn; .ip.InHdrErrors), ip_in_addr_errors: d($dn; .ip.InAddrErrors), ip_in_discards: d($dn; .ip.InDiscards), ip_out_discards: d($dn; .ip.OutDiscards), ip_out_no_routes: d($dn; .ip.OutNoRoutes) }
                 else { udp_in_datagrams: d($dn; .udp.InDatagrams), udp_in_errors: d($dn; .udp.InErrors), udp_rcvbuf_errors: d($dn; .udp.RcvbufErrors), udp_out_datagrams: d($dn; .udp.OutDatagrams), udp_sndbuf_errors: d($dn; .udp.SndbufErrors) } end) } ) ),
  # the receiver's namespace: in0 to the application
  ($ns[-1] as $rx |
    { stage: "receiver",
      in: link($rx; "in0"; "rx_packets"),
      dropped: d($rx; .udp.InErrors),
      out: $r.datagrams_received,
      detail: { udp_in_errors: d($rx; .udp.InErrors), udp_rcvbuf_errors: d($rx; .udp.RcvbufErrors), socket_drops: $r.socket_drops,
                received: $r.totals.received, end_markers_received: $r.totals.end_markers_received,
                foreign: $r.foreign_datagrams } })
] | map(. + { unexplained: (.in - .dropped - .out) }) as $stages |
($stages | map(.dropped) | add) as $explained |
{
  schema: "mcr.pipeline.conservation", version: 1,
  relay: $c.relay, veth_gso: $c.veth_gso,
  data: { sent: $s.packets_sent, received: $r.totals.received, lost: $r.totals.lost,
          expected_by_receiver: $r.totals.expected },
  frames: { sent: $frames_sent, received: $frames_got, explained_drops: $explained,
            unexplained: ($frames_sent - $frames_got - $explained) },
  stages: $stages,
  # The receiver's expected count falls short of what was sent when every end marker of a stream
  # was dropped with the tail before it: those packets are still in the frame accounting above.
  receiver_expected_short_by: ($s.packets_sent - $r.totals.expected),
  # With veth GSO on, kernel counters count GSO buffers, not datagrams: only the data view holds.
  ok: (if $c.veth_gso == "on"
       then ($r.totals.expected == $s.packets_sent)
       else (($frames_sent - $frames_got - $explained) == 0 and ($stages | all(.unexplained == 0))) end)
}
