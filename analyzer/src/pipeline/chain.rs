//! `mcr.pipeline.chain` v1.1: the counters `pipeline_veth.sh` collected around one run, per
//! namespace in pipeline order (the generator's, each hop's, the receiver's). For each, two
//! snapshots (`pl_snap_ns`, before and after the traffic) of the veth statistics
//! (`ip -s -j link`), the UDP and IPv4 MIBs (`/proc/net/snmp`) and the multicast routing VIFs
//! (`/proc/net/ip_mr_vif`), and for an mcrd hop its final stats (`mcr.relay.stats`, read with
//! the relay's own types, so a stats file of another shape is an error, not a guess).
//!
//! Minor version 1 (issue 22) adds the address family of the traffic (`family`, absent =
//! `ipv4`) and, in an IPv6 run's snapshots, the UDP MIB of IPv6 (`udp6`, the `Udp6` lines of
//! `/proc/net/snmp6` without their prefix) and each interface's ICMPv6 messages (`icmp6`, from
//! `/proc/net/dev_snmp6/IF`): with IPv6 on, the kernel sends MLD reports (and ND, if anything
//! resolves a neighbour) on the veths, which the link counters count beside the data. An IPv6
//! run's UDP counters are the `udp6` ones ([`Counter::Udp`] reads the table of the family).
//!
//! Counters are read as deltas `after − before` ([`Chain::delta`]), which may be negative
//! (a counter that went back); a counter missing from either snapshot is an error naming it,
//! except a multicast VIF's (a VIF smcroute did not add counted nothing), as the harness's
//! jq read them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use relay::stats::report::{StatsReport, STATS_SCHEMA, STATS_VERSION};
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::record::check_schema;

pub const CHAIN_SCHEMA: &str = "mcr.pipeline.chain";
pub const CHAIN_VERSION: u32 = 1;
pub const CHAIN_MINOR_VERSION: u32 = 1;

/// What forwarded on the hops (`pipeline_veth.sh --relay`); `none`/`none-unicast` at 0 hops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RelayKind {
    /// mcrd's userspace path.
    Mcrd,
    /// mcrd with the kernel fast path required.
    Fastpath,
    /// mcrd with `fast_path` unset (its default, `auto`): the kernel fast path where a rule
    /// fits it, userspace where it does not (IPv6 rules).
    McrdAuto,
    Socat,
    /// The kernel's multicast forwarding (smcroute).
    Kernel,
    /// The kernel's unicast forwarding.
    Route,
    /// A TC program moving every frame from in0 to out0: the floor of a hop.
    Redirect,
    /// No hops: the generator straight to the receiver.
    None,
    NoneUnicast,
}

impl RelayKind {
    /// The name `--relay` and the documents use.
    pub fn name(self) -> &'static str {
        match self {
            RelayKind::Mcrd => "mcrd",
            RelayKind::Fastpath => "fastpath",
            RelayKind::McrdAuto => "mcrd-auto",
            RelayKind::Socat => "socat",
            RelayKind::Kernel => "kernel",
            RelayKind::Route => "route",
            RelayKind::Redirect => "redirect",
            RelayKind::None => "none",
            RelayKind::NoneUnicast => "none-unicast",
        }
    }

    /// Whether the hops are mcrd (and each has final stats).
    pub fn is_mcrd(self) -> bool {
        matches!(
            self,
            RelayKind::Mcrd | RelayKind::Fastpath | RelayKind::McrdAuto
        )
    }
}

/// The address family of the run's traffic (`pipeline_veth.sh --ipv6`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    #[default]
    Ipv4,
    Ipv6,
}

impl Family {
    pub fn name(self) -> &'static str {
        match self {
            Family::Ipv4 => "ipv4",
            Family::Ipv6 => "ipv6",
        }
    }
}

/// A namespace's part in the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Gen,
    Hop,
    Recv,
}

/// One veth end's counters (`ip -s -j link`'s `stats64`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkStats {
    pub rx_packets: u64,
    pub rx_dropped: u64,
    pub rx_errors: u64,
    pub tx_packets: u64,
    pub tx_dropped: u64,
    pub tx_errors: u64,
}

/// One multicast VIF's counters (`/proc/net/ip_mr_vif`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VifStats {
    pub bytes_in: u64,
    pub pkts_in: u64,
    pub bytes_out: u64,
    pub pkts_out: u64,
}

/// One interface's ICMPv6 messages (`Icmp6InMsgs`, `Icmp6OutMsgs` of `/proc/net/dev_snmp6/IF`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Icmp6Stats {
    pub in_msgs: u64,
    pub out_msgs: u64,
}

/// One `pl_snap_ns` snapshot of a namespace.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Snapshot {
    /// By interface name.
    pub links: BTreeMap<String, LinkStats>,
    /// The `Udp:` table of `/proc/net/snmp`, by column name (`InErrors`).
    pub udp: BTreeMap<String, i64>,
    /// The `Ip:` table (`InReceives`, `ForwDatagrams`, `OutDiscards`, …).
    pub ip: BTreeMap<String, i64>,
    /// By interface name; empty without multicast routing (IPv6 runs: `/proc/net/ip6_mr_vif`).
    pub mr_vif: BTreeMap<String, VifStats>,
    /// IPv6 runs (minor version 1): the `Udp6` table of `/proc/net/snmp6`, without the prefix.
    #[serde(default)]
    pub udp6: BTreeMap<String, i64>,
    /// IPv6 runs (minor version 1): ICMPv6 messages by interface name.
    #[serde(default)]
    pub icmp6: BTreeMap<String, Icmp6Stats>,
}

/// A counter of a snapshot.
#[derive(Debug, Clone, Copy)]
pub enum Counter {
    /// A veth end's: interface and `rx_packets` … `tx_errors`.
    Link(&'static str, LinkField),
    /// A column of the UDP MIB of the run's family (`udp`, or `udp6` in an IPv6 run).
    Udp(&'static str),
    /// The ICMPv6 messages an interface sent (MLD reports, neighbour discovery).
    Icmp6Out(&'static str),
    /// A column of the IPv4 MIB.
    Ip(&'static str),
    /// A VIF's packets in or out.
    Vif(&'static str, VifField),
}

#[derive(Debug, Clone, Copy)]
pub enum LinkField {
    RxPackets,
    RxDropped,
    TxPackets,
    TxDropped,
}

#[derive(Debug, Clone, Copy)]
pub enum VifField {
    PktsIn,
    PktsOut,
}

impl Counter {
    fn read(self, s: &Snapshot, family: Family) -> Option<i64> {
        match self {
            Counter::Link(dev, f) => {
                let l = s.links.get(dev)?;
                let v = match f {
                    LinkField::RxPackets => l.rx_packets,
                    LinkField::RxDropped => l.rx_dropped,
                    LinkField::TxPackets => l.tx_packets,
                    LinkField::TxDropped => l.tx_dropped,
                };
                Some(v as i64)
            }
            Counter::Udp(k) => match family {
                Family::Ipv4 => s.udp.get(k).copied(),
                Family::Ipv6 => s.udp6.get(k).copied(),
            },
            Counter::Icmp6Out(dev) => s.icmp6.get(dev).map(|m| m.out_msgs as i64),
            Counter::Ip(k) => s.ip.get(k).copied(),
            Counter::Vif(dev, f) => {
                let v = s.mr_vif.get(dev)?;
                Some(match f {
                    VifField::PktsIn => v.pkts_in,
                    VifField::PktsOut => v.pkts_out,
                } as i64)
            }
        }
    }

    /// Its path inside a snapshot (`links.out0.tx_packets`, `udp.InErrors`).
    fn path(self, family: Family) -> String {
        match self {
            Counter::Link(dev, f) => {
                let f = match f {
                    LinkField::RxPackets => "rx_packets",
                    LinkField::RxDropped => "rx_dropped",
                    LinkField::TxPackets => "tx_packets",
                    LinkField::TxDropped => "tx_dropped",
                };
                format!("links.{dev}.{f}")
            }
            Counter::Udp(k) => match family {
                Family::Ipv4 => format!("udp.{k}"),
                Family::Ipv6 => format!("udp6.{k}"),
            },
            Counter::Icmp6Out(dev) => format!("icmp6.{dev}.out_msgs"),
            Counter::Ip(k) => format!("ip.{k}"),
            Counter::Vif(dev, f) => {
                let f = match f {
                    VifField::PktsIn => "pkts_in",
                    VifField::PktsOut => "pkts_out",
                };
                format!("mr_vif.{dev}.{f}")
            }
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChainDoc {
    #[allow(dead_code)]
    schema: String,
    #[allow(dead_code)]
    version: u32,
    relay: RelayKind,
    veth_gso: String,
    #[serde(default)]
    family: Family,
    ns: Vec<NamespaceDoc>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NamespaceDoc {
    name: String,
    role: Role,
    before: Snapshot,
    after: Snapshot,
    stats: Option<serde_json::Value>,
}

/// One namespace of the chain.
#[derive(Debug, Clone)]
pub struct Namespace {
    /// Its position in the chain (0 = the generator's), for errors.
    pub index: usize,
    pub name: String,
    pub role: Role,
    pub before: Snapshot,
    pub after: Snapshot,
    /// mcrd's final stats, on an mcrd hop.
    pub stats: Option<StatsReport>,
}

/// The chain of one run.
#[derive(Debug, Clone)]
pub struct Chain {
    /// The file it was read from, for errors.
    pub path: PathBuf,
    pub relay: RelayKind,
    /// `on` or `off`: whether the veths segmented UDP (then their counters count GSO buffers).
    pub veth_gso: String,
    /// The traffic's address family (`ipv4` in files before minor version 1).
    pub family: Family,
    /// The generator's first, the receiver's last.
    pub ns: Vec<Namespace>,
}

impl Chain {
    /// Reads and checks `raw/chain.json`.
    pub fn load(path: &Path) -> Result<Chain> {
        let text = crate::error::read_nonempty(path)?;
        let doc: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| Error::format(path, format!("not valid JSON: {e}")))?;
        let (c, _): (ChainDoc, _) = crate::ingest::compat::read_versioned(
            path,
            &doc,
            CHAIN_SCHEMA,
            CHAIN_VERSION,
            CHAIN_MINOR_VERSION,
        )?;
        if c.ns.len() < 2 {
            return Err(Error::field(
                path,
                "ns",
                format!(
                    "{} namespaces: a chain has at least the generator's and the receiver's",
                    c.ns.len()
                ),
            ));
        }
        if !matches!(c.veth_gso.as_str(), "on" | "off") {
            return Err(Error::field(
                path,
                "veth_gso",
                format!("is {:?}, expected \"on\" or \"off\"", c.veth_gso),
            ));
        }
        let last = c.ns.len() - 1;
        let mut ns = Vec::with_capacity(c.ns.len());
        for (index, n) in c.ns.into_iter().enumerate() {
            let expected = match index {
                0 => Role::Gen,
                i if i == last => Role::Recv,
                _ => Role::Hop,
            };
            if n.role != expected {
                return Err(Error::field(
                    path,
                    format!("ns[{index}].role"),
                    format!("is {:?}, expected {expected:?} at this position", n.role),
                ));
            }
            let stats = match n.stats {
                None | Some(serde_json::Value::Null) => None,
                Some(v) => Some(stats(path, index, &v)?),
            };
            if c.relay.is_mcrd() && n.role == Role::Hop && stats.is_none() {
                return Err(Error::field(
                    path,
                    format!("ns[{index}].stats"),
                    format!(
                        "missing: an {} hop's final stats (mcrd --final-stats) are needed for its drops",
                        c.relay.name()
                    ),
                ));
            }
            ns.push(Namespace {
                index,
                name: n.name,
                role: n.role,
                before: n.before,
                after: n.after,
                stats,
            });
        }
        Ok(Chain {
            path: path.to_path_buf(),
            relay: c.relay,
            veth_gso: c.veth_gso,
            family: c.family,
            ns,
        })
    }

    /// `after − before` of a counter of namespace `ns`, or the error naming it.
    pub fn delta(&self, ns: &Namespace, c: Counter) -> Result<i64> {
        if let Counter::Vif(..) = c {
            let f = self.family;
            return Ok(c.read(&ns.after, f).unwrap_or(0) - c.read(&ns.before, f).unwrap_or(0));
        }
        match self.delta_if_known(ns, c) {
            Some(d) => Ok(d),
            None => {
                let side = if c.read(&ns.before, self.family).is_none() {
                    "before"
                } else {
                    "after"
                };
                Err(Error::field(
                    &self.path,
                    format!("ns[{}].{side}.{}", ns.index, c.path(self.family)),
                    "missing from the snapshot",
                ))
            }
        }
    }

    /// `after − before` of a counter, when both snapshots have it.
    pub fn delta_if_known(&self, ns: &Namespace, c: Counter) -> Option<i64> {
        Some(c.read(&ns.after, self.family)? - c.read(&ns.before, self.family)?)
    }
}

/// An mcrd hop's stats, checked against the relay's contract.
fn stats(path: &Path, index: usize, v: &serde_json::Value) -> Result<StatsReport> {
    let prefix = format!("ns[{index}].stats");
    check_schema(path, v, STATS_SCHEMA, STATS_VERSION).map_err(|e| match e {
        Error::Field {
            path,
            field,
            message,
        } => Error::Field {
            path,
            field: format!("{prefix}.{field}"),
            message,
        },
        e => e,
    })?;
    serde_path_to_error::deserialize(v).map_err(|e| {
        let field = format!("{prefix}.{}", e.path());
        Error::field(path, field, e.into_inner().to_string())
    })
}
