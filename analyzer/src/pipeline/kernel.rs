//! Kernel counters outside the relays, as `analyzer ingest --kernel` reads them
//! (`mcr.pipeline.kernel` v1, `analyzer/README.md`): per veth link and per namespace's UDP
//! MIB, deltas over the run, and the host's softnet drops from the host CPU document.
//!
//! A counter missing from either snapshot is left out, never written as 0. With veth GSO on,
//! veth counts GSO buffers, not datagrams, so no link counters are written (a buffer count
//! would be misread as datagrams).

use serde::Serialize;

use super::chain::{Chain, Counter, LinkField, Role};

pub const SCHEMA: &str = "mcr.pipeline.kernel";
pub const VERSION: u32 = 1;

/// The kernel document.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KernelDoc {
    pub schema: &'static str,
    pub version: u32,
    pub links: Vec<LinkDelta>,
    pub namespaces: Vec<NamespaceDelta>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub softnet_dropped: Option<i64>,
}

/// One leg: the sending end's tx counters and the receiving end's rx counters.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LinkDelta {
    pub from: String,
    pub to: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tx_packets: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tx_dropped: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rx_packets: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rx_dropped: Option<i64>,
}

/// One namespace's UDP MIB.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NamespaceDelta {
    pub name: String,
    pub role: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_errors: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rcvbuf_errors: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sndbuf_errors: Option<i64>,
}

/// The kernel document of a chain; `softnet_dropped` is the host CPU document's
/// `softnet_dropped_host`.
pub fn kernel(chain: &Chain, softnet_dropped: Option<i64>) -> KernelDoc {
    use Counter::{Link, Udp};
    use LinkField::{RxDropped, RxPackets, TxDropped, TxPackets};
    let d = |n, c| chain.delta_if_known(n, c);
    let links = if chain.veth_gso == "on" {
        Vec::new()
    } else {
        chain
            .ns
            .windows(2)
            .map(|p| LinkDelta {
                from: format!("{}:out0", p[0].name),
                to: format!("{}:in0", p[1].name),
                tx_packets: d(&p[0], Link("out0", TxPackets)),
                tx_dropped: d(&p[0], Link("out0", TxDropped)),
                rx_packets: d(&p[1], Link("in0", RxPackets)),
                rx_dropped: d(&p[1], Link("in0", RxDropped)),
            })
            .collect()
    };
    let namespaces = chain
        .ns
        .iter()
        .map(|n| NamespaceDelta {
            name: n.name.clone(),
            role: match n.role {
                Role::Gen => "generator",
                Role::Hop => "hop",
                Role::Recv => "receiver",
            },
            in_errors: d(n, Udp("InErrors")),
            rcvbuf_errors: d(n, Udp("RcvbufErrors")),
            sndbuf_errors: d(n, Udp("SndbufErrors")),
        })
        .collect();
    KernelDoc {
        schema: SCHEMA,
        version: VERSION,
        links,
        namespaces,
        softnet_dropped,
    }
}
