//! Packet conservation over the chain, in frames (datagrams on the wire), from the counters one
//! run of `pipeline_veth.sh` collected: `mcr.pipeline.conservation` v1 (`scripts/README.md`
//! documents it field by field; `analyzer ingest --conservation` reads it).
//!
//! Every stage says what went in, what a counter says it dropped, what came out, and the
//! unexplained rest (in − dropped − out). The end-to-end line is
//!   frames sent = frames the receiver got + every counted drop + unexplained
//! where frames include the end markers (kernel counters cannot tell them from data). The run
//! passes when the end-to-end and every stage's unexplained are 0; with veth GSO on, kernel
//! counters count GSO buffers, not datagrams, and only the receiver's count is checked.
//!
//! An IPv6 run (`family: ipv6`, minor version 1) has the kernel's own ICMPv6 frames (MLD
//! reports, neighbour discovery) on the veths beside the data: each stage takes the ICMPv6
//! messages the upstream out0 sent out of its `in` and those its own out0 sent out of its
//! `out`, and says how many in `icmp6` (the data relays never forward them: mcrd's capture
//! filter takes only its groups, socat's socket only UDP). Its UDP counters are the IPv6 MIB's.

use std::path::Path;

use serde::{Deserialize, Serialize};
use trafficgen::record::{RecvRecord, SendRecord};

use super::chain::{Chain, Counter, Family, LinkField, Namespace, RelayKind, Role, VifField};
use crate::error::{from_json, read_nonempty, Error, Result};

pub const SCHEMA: &str = "mcr.pipeline.conservation";
pub const VERSION: u32 = 1;
/// Minor version 1: `family` and the stages' `icmp6` (written only in IPv6 runs, whose
/// documents are 1.1; an IPv4 run's document is 1.0 as before).
pub const MINOR_VERSION: u32 = 1;

/// The conservation document.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Conservation {
    pub schema: &'static str,
    pub version: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub minor_version: Option<u32>,
    pub relay: &'static str,
    pub veth_gso: String,
    /// `ipv6` in an IPv6 run; absent (IPv4) otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub family: Option<&'static str>,
    pub data: Data,
    pub frames: Frames,
    pub stages: Vec<Stage>,
    /// The receiver's expected count falls short of what was sent when every end marker of a
    /// stream was dropped with the tail before it: those packets are still in the frames.
    pub receiver_expected_short_by: i64,
    /// Every packet accounted for.
    pub ok: bool,
}

/// The data view: datagrams of the probe streams, as the generator and receiver count them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Data {
    pub sent: u64,
    pub received: u64,
    pub lost: u64,
    pub expected_by_receiver: u64,
}

/// The frame view, end markers, duplicates and late datagrams included.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Frames {
    pub sent: i64,
    pub received: i64,
    pub explained_drops: i64,
    pub unexplained: i64,
}

/// One stage of the chain.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stage {
    pub stage: String,
    #[serde(rename = "in")]
    pub input: i64,
    pub dropped: i64,
    pub out: i64,
    /// The counters behind the figures.
    pub detail: Detail,
    /// IPv6 runs: the ICMPv6 frames the stage's counters saw beside the data, already taken
    /// out of `in` and `out`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icmp6: Option<Icmp6Frames>,
    /// `in − dropped − out`.
    pub unexplained: i64,
}

/// ICMPv6 frames (MLD reports, neighbour discovery) inside a stage's frame counters.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Icmp6Frames {
    /// Sent by the upstream namespace's out0 (`Icmp6OutMsgs` of its `dev_snmp6`), so in the
    /// frames this stage's in0 (or link) took in.
    pub in_frames: i64,
    /// Sent by this stage's out0, so in the frames it put out.
    pub out_frames: i64,
}

/// The counters behind a stage's figures, by what the stage is.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Detail {
    Generator {
        packets_sent: u64,
        end_markers_sent: u64,
        send_errors: u64,
    },
    Link {
        veth_tx_dropped: i64,
        veth_rx_dropped: i64,
    },
    /// mcrd's totals (userspace or fast path).
    Mcrd {
        rx_frames: u64,
        rx: u64,
        kernel_drops: u64,
        matched: u64,
        buf_exhaust: u64,
        tx_sent: u64,
        tx_errors: u64,
        in_flight: u64,
        filtered: u64,
        no_match: u64,
        malformed: u64,
    },
    /// The kernel's multicast forwarding: its VIFs.
    Kernel {
        mr_vif_in0_pkts_in: i64,
        mr_vif_out0_pkts_out: i64,
    },
    Redirect {
        in0_rx_packets: i64,
        out0_tx_packets: i64,
    },
    /// The kernel's unicast forwarding: the namespace's IPv4 MIB.
    Route {
        ip_in_receives: i64,
        ip_forw_datagrams: i64,
        ip_in_delivers: i64,
        ip_in_hdr_errors: i64,
        ip_in_addr_errors: i64,
        ip_in_discards: i64,
        ip_out_discards: i64,
        ip_out_no_routes: i64,
    },
    /// A UDP relay (socat): the namespace's UDP MIB.
    Udp {
        udp_in_datagrams: i64,
        udp_in_errors: i64,
        udp_rcvbuf_errors: i64,
        udp_out_datagrams: i64,
        udp_sndbuf_errors: i64,
    },
    Receiver {
        udp_in_errors: i64,
        udp_rcvbuf_errors: i64,
        socket_drops: u64,
        received: u64,
        end_markers_received: u64,
        foreign: u64,
    },
}

use Counter::{Ip, Link, Udp, Vif};
use LinkField::{RxDropped, RxPackets, TxDropped, TxPackets};

/// A stage before its unexplained rest is known.
fn stage(stage: String, input: i64, dropped: i64, out: i64, detail: Detail) -> Stage {
    Stage {
        stage,
        input,
        dropped,
        out,
        detail,
        icmp6: None,
        unexplained: input - dropped - out,
    }
}

/// The ICMPv6 frames `up`'s out0 and `own`'s out0 sent over the run (either may be absent: the
/// generator has no upstream, the receiver no out0), as a stage's `icmp6`; `None` in an IPv4
/// run, whose namespaces have IPv6 off.
fn icmp6(
    chain: &Chain,
    up: Option<&Namespace>,
    own: Option<&Namespace>,
) -> Result<Option<Icmp6Frames>> {
    if chain.family != Family::Ipv6 {
        return Ok(None);
    }
    let out = |n: Option<&Namespace>| match n {
        Some(n) => chain.delta(n, Counter::Icmp6Out("out0")),
        None => Ok(0),
    };
    Ok(Some(Icmp6Frames {
        in_frames: out(up)?,
        out_frames: out(own)?,
    }))
}

/// `s` with its ICMPv6 frames taken out of `in` and `out`.
fn without_icmp6(mut s: Stage, frames: Option<Icmp6Frames>) -> Stage {
    if let Some(f) = &frames {
        s.input -= f.in_frames;
        s.out -= f.out_frames;
        s.unexplained = s.input - s.dropped - s.out;
    }
    s.icmp6 = frames;
    s
}

/// The conservation check of one run.
pub fn conservation(send: &SendRecord, recv: &RecvRecord, chain: &Chain) -> Result<Conservation> {
    let ns = &chain.ns;
    let d = |n: &Namespace, c: Counter| chain.delta(n, c);
    let t = &recv.totals;
    let frames_sent = (send.packets_sent + send.end_markers_sent) as i64;
    let frames_got = (t.received + t.end_markers_received + t.duplicated + t.late) as i64;
    let mut stages = Vec::new();

    // The generator: what trafficgen says it sent against what its veth took.
    let gen = &ns[0];
    // The generator's out0 puts its ICMPv6 frames out beside the data (trafficgen sent none).
    let gen_icmp6 = icmp6(chain, None, Some(gen))?;
    stages.push(without_icmp6(
        stage(
            "generator".into(),
            frames_sent,
            0,
            d(gen, Link("out0", TxPackets))? + d(gen, Link("out0", TxDropped))?,
            Detail::Generator {
                packets_sent: send.packets_sent,
                end_markers_sent: send.end_markers_sent,
                send_errors: send.send_errors,
            },
        ),
        gen_icmp6,
    ));
    for pair in ns.windows(2) {
        let (up, dn) = (&pair[0], &pair[1]);
        // The link: out0 of one namespace to in0 of the next.
        let tx_dropped = d(up, Link("out0", TxDropped))?;
        let rx_dropped = d(dn, Link("in0", RxDropped))?;
        // The link carries the upstream out0's ICMPv6 frames at both ends.
        let link_icmp6 = icmp6(chain, Some(up), None)?.map(|f| Icmp6Frames {
            out_frames: f.in_frames,
            ..f
        });
        stages.push(without_icmp6(
            stage(
                format!("link {} -> {}", up.name, dn.name),
                d(up, Link("out0", TxPackets))? + tx_dropped,
                tx_dropped + rx_dropped,
                d(dn, Link("in0", RxPackets))?,
                Detail::Link {
                    veth_tx_dropped: tx_dropped,
                    veth_rx_dropped: rx_dropped,
                },
            ),
            link_icmp6,
        ));
        if dn.role == Role::Hop {
            stages.push(without_icmp6(
                relay_stage(chain, dn)?,
                icmp6(chain, Some(up), Some(dn))?,
            ));
        }
    }
    // The receiver's namespace: in0 to the application.
    let rx = &ns[ns.len() - 1];
    let in_errors = d(rx, Udp("InErrors"))?;
    let rx_icmp6 = icmp6(chain, Some(&ns[ns.len() - 2]), None)?;
    stages.push(without_icmp6(
        stage(
            "receiver".into(),
            d(rx, Link("in0", RxPackets))?,
            in_errors,
            recv.datagrams_received as i64,
            Detail::Receiver {
                udp_in_errors: in_errors,
                udp_rcvbuf_errors: d(rx, Udp("RcvbufErrors"))?,
                socket_drops: recv.socket_drops,
                received: t.received,
                end_markers_received: t.end_markers_received,
                foreign: recv.foreign_datagrams,
            },
        ),
        rx_icmp6,
    ));

    let explained: i64 = stages.iter().map(|s| s.dropped).sum();
    let unexplained = frames_sent - frames_got - explained;
    let ok = if chain.veth_gso == "on" {
        t.expected == send.packets_sent
    } else {
        unexplained == 0 && stages.iter().all(|s| s.unexplained == 0)
    };
    Ok(Conservation {
        schema: SCHEMA,
        version: VERSION,
        minor_version: (chain.family == Family::Ipv6).then_some(MINOR_VERSION),
        relay: chain.relay.name(),
        veth_gso: chain.veth_gso.clone(),
        family: (chain.family == Family::Ipv6).then_some(chain.family.name()),
        data: Data {
            sent: send.packets_sent,
            received: t.received,
            lost: t.lost,
            expected_by_receiver: t.expected,
        },
        frames: Frames {
            sent: frames_sent,
            received: frames_got,
            explained_drops: explained,
            unexplained,
        },
        stages,
        receiver_expected_short_by: send.packets_sent as i64 - t.expected as i64,
        ok,
    })
}

/// A hop: frames into in0, what the relay (or the kernel for it) counted dropped, frames out
/// of out0.
fn relay_stage(chain: &Chain, hop: &Namespace) -> Result<Stage> {
    let d = |c: Counter| chain.delta(hop, c);
    let (dropped, detail) = match chain.relay {
        RelayKind::Mcrd | RelayKind::Fastpath | RelayKind::McrdAuto => {
            // Chain::load refuses an mcrd hop without stats.
            let t = &hop.stats.as_ref().expect("an mcrd hop has stats").totals;
            let dropped = t.kernel_drops
                + t.buf_exhaust
                + t.filtered
                + t.no_match
                + t.malformed
                + t.tx_errors;
            (
                dropped as i64,
                Detail::Mcrd {
                    rx_frames: t.rx_frames,
                    rx: t.rx,
                    kernel_drops: t.kernel_drops,
                    matched: t.matched,
                    buf_exhaust: t.buf_exhaust,
                    tx_sent: t.tx_sent,
                    tx_errors: t.tx_errors,
                    in_flight: t.in_flight,
                    filtered: t.filtered,
                    no_match: t.no_match,
                    malformed: t.malformed,
                },
            )
        }
        // The kernel's unicast forwarding counts its drops only in the namespace's IPv4 MIB: on
        // input (header, address, protocol, discards) and on output (discards, no route, DF
        // too big).
        RelayKind::Route => (
            d(Ip("InHdrErrors"))?
                + d(Ip("InAddrErrors"))?
                + d(Ip("InUnknownProtos"))?
                + d(Ip("InDiscards"))?
                + d(Ip("OutDiscards"))?
                + d(Ip("OutNoRoutes"))?
                + d(Ip("FragFails"))?,
            Detail::Route {
                ip_in_receives: d(Ip("InReceives"))?,
                ip_forw_datagrams: d(Ip("ForwDatagrams"))?,
                ip_in_delivers: d(Ip("InDelivers"))?,
                ip_in_hdr_errors: d(Ip("InHdrErrors"))?,
                ip_in_addr_errors: d(Ip("InAddrErrors"))?,
                ip_in_discards: d(Ip("InDiscards"))?,
                ip_out_discards: d(Ip("OutDiscards"))?,
                ip_out_no_routes: d(Ip("OutNoRoutes"))?,
            },
        ),
        RelayKind::Redirect => (
            0,
            Detail::Redirect {
                in0_rx_packets: d(Link("in0", RxPackets))?,
                out0_tx_packets: d(Link("out0", TxPackets))?,
            },
        ),
        RelayKind::Kernel => (
            d(Udp("InErrors"))? + d(Udp("SndbufErrors"))?,
            Detail::Kernel {
                mr_vif_in0_pkts_in: d(Vif("in0", VifField::PktsIn))?,
                mr_vif_out0_pkts_out: d(Vif("out0", VifField::PktsOut))?,
            },
        ),
        RelayKind::Socat | RelayKind::None | RelayKind::NoneUnicast => (
            d(Udp("InErrors"))? + d(Udp("SndbufErrors"))?,
            Detail::Udp {
                udp_in_datagrams: d(Udp("InDatagrams"))?,
                udp_in_errors: d(Udp("InErrors"))?,
                udp_rcvbuf_errors: d(Udp("RcvbufErrors"))?,
                udp_out_datagrams: d(Udp("OutDatagrams"))?,
                udp_sndbuf_errors: d(Udp("SndbufErrors"))?,
            },
        ),
    };
    Ok(stage(
        format!("relay {} ({})", hop.name, chain.relay.name()),
        d(Link("in0", RxPackets))?,
        dropped,
        d(Link("out0", TxPackets))? + d(Link("out0", TxDropped))?,
        detail,
    ))
}

/// The figures of a conservation document that tables over many runs use, read back from the
/// file (schema and version checked, a missing field named).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ConservationFigures {
    pub data: DataFigures,
    pub frames: FrameFigures,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct DataFigures {
    pub sent: u64,
    pub received: u64,
    pub lost: u64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct FrameFigures {
    pub explained_drops: i64,
    pub unexplained: i64,
}

impl ConservationFigures {
    pub fn load(path: &Path) -> Result<Self> {
        let text = read_nonempty(path)?;
        let doc: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| Error::format(path, format!("not valid JSON: {e}")))?;
        crate::record::check_schema(path, &doc, SCHEMA, VERSION)?;
        from_json(path, &text)
    }
}
