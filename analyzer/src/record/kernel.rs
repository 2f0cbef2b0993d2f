//! Kernel counters of a run, outside any relay: per veth link, per namespace's UDP MIB, and the
//! host's softnet backlog drops. All are deltas over the measured window; a counter the source
//! did not report is absent, never 0.

use serde::{Deserialize, Serialize};

/// Kernel counters of the whole run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Kernel {
    /// veth links in pipeline order: the first leaves the generator's namespace, link *k* feeds
    /// hop *k+1*, and the last feeds the receiver.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<Link>,
    /// UDP MIB deltas per network namespace, in pipeline order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<NamespaceUdp>,
    /// Packets the host dropped because a CPU's input backlog was full (column 2 of
    /// `/proc/net/softnet_stat`, summed over CPUs). Host-wide: not attributable to one hop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub softnet_dropped: Option<u64>,
}

impl Kernel {
    pub fn is_empty(&self) -> bool {
        self.links.is_empty() && self.namespaces.is_empty() && self.softnet_dropped.is_none()
    }
}

/// One veth pair: the sending end's tx counters and the receiving end's rx counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Link {
    /// Sending side (`plx-gen:out0`).
    pub from: String,
    /// Receiving side (`plx-r1:in0`).
    pub to: String,
    /// Frames the sending end transmitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tx_packets: Option<u64>,
    /// Frames the sending end dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tx_dropped: Option<u64>,
    /// Frames the receiving end took in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rx_packets: Option<u64>,
    /// Frames the receiving end dropped (its backlog was full).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rx_dropped: Option<u64>,
}

impl Link {
    /// Frames a counter saw dropped on this link; known when either side reported its drops.
    pub fn dropped(&self) -> Option<u64> {
        match (self.tx_dropped, self.rx_dropped) {
            (None, None) => None,
            (t, r) => Some(t.unwrap_or(0).saturating_add(r.unwrap_or(0))),
        }
    }
}

/// UDP MIB deltas of one namespace (`/proc/net/snmp`, `Udp:` line).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamespaceUdp {
    /// Namespace name (`plx-r1`).
    pub name: String,
    /// Its part in the pipeline: `generator`, `hop`, `receiver`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// `InErrors`: datagrams UDP could not deliver (includes `RcvbufErrors`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_errors: Option<u64>,
    /// `RcvbufErrors`: datagrams dropped for a full socket receive buffer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rcvbuf_errors: Option<u64>,
    /// `SndbufErrors`: sends refused for a full socket send buffer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sndbuf_errors: Option<u64>,
}
