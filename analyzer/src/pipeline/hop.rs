//! A hop's counters for relays that count nothing themselves (socat, the kernel's multicast or
//! unicast forwarding, the TC redirect), taken from the kernel's counters around it, as the
//! text lines `analyzer ingest --hop` reads (`rx=N`, `kernel_drops=N`, `tx_errors=N`,
//! `tx_sent=N`):
//!
//! - socat: `rx` = frames into in0 less the namespace's UDP `InErrors`, which are its
//!   `kernel_drops`;
//! - kernel: `rx` = the packets in0's multicast VIF took in;
//! - route: `rx` = the IPv4 MIB's `InReceives`, `kernel_drops` its input drops (`InHdrErrors +
//!   InAddrErrors + InUnknownProtos + InDiscards`), `tx_errors` its output drops
//!   (`OutDiscards + OutNoRoutes + FragFails`);
//! - redirect: `rx` = frames into in0;
//!
//! and `tx_sent` = frames out of out0. In an IPv6 run the ICMPv6 frames (MLD, ND) the upstream
//! out0 sent are taken out of socat's `rx`, and those this out0 sent out of `tx_sent`. mcrd counts for itself (its final stats are the hop's
//! input), so it has none of these.

use super::chain::{Chain, Counter, Family, LinkField, Namespace, RelayKind, Role, VifField};
use crate::error::{Error, Result};

/// The counters of one hop, deltas over the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HopCounters {
    pub rx: i64,
    pub kernel_drops: Option<i64>,
    pub tx_errors: Option<i64>,
    pub tx_sent: i64,
}

impl HopCounters {
    /// As text counter lines, one `key=value` a line.
    pub fn to_text(&self) -> String {
        let mut s = format!("rx={}\n", self.rx);
        if let Some(k) = self.kernel_drops {
            s.push_str(&format!("kernel_drops={k}\n"));
        }
        if let Some(e) = self.tx_errors {
            s.push_str(&format!("tx_errors={e}\n"));
        }
        s.push_str(&format!("tx_sent={}\n", self.tx_sent));
        s
    }
}

/// The counters of hop `n` (1-based) of the chain.
pub fn hop_counters(chain: &Chain, n: usize) -> Result<HopCounters> {
    use Counter::{Ip, Link, Udp, Vif};
    let hop: &Namespace = chain
        .ns
        .get(n)
        .filter(|h| h.role == Role::Hop)
        .ok_or_else(|| {
            Error::Usage(format!(
                "--hop {n}: {} has {} hops (1..={})",
                chain.path.display(),
                chain.ns.len() - 2,
                chain.ns.len() - 2
            ))
        })?;
    let d = |c: Counter| chain.delta(hop, c);
    let in0 = || d(Link("in0", LinkField::RxPackets));
    // An IPv6 run: the upstream out0's ICMPv6 frames (MLD, ND) came into in0 beside the data,
    // and this out0's own went out beside it; neither is the relay's.
    let ipv6 = chain.family == Family::Ipv6;
    let icmp6_in = || -> Result<i64> {
        if ipv6 {
            chain.delta(&chain.ns[n - 1], Counter::Icmp6Out("out0"))
        } else {
            Ok(0)
        }
    };
    let icmp6_out = if ipv6 {
        d(Counter::Icmp6Out("out0"))?
    } else {
        0
    };
    let (rx, kernel_drops, tx_errors) = match chain.relay {
        RelayKind::Kernel => (d(Vif("in0", VifField::PktsIn))?, None, None),
        RelayKind::Route => (
            d(Ip("InReceives"))?,
            Some(
                d(Ip("InHdrErrors"))?
                    + d(Ip("InAddrErrors"))?
                    + d(Ip("InUnknownProtos"))?
                    + d(Ip("InDiscards"))?,
            ),
            Some(d(Ip("OutDiscards"))? + d(Ip("OutNoRoutes"))? + d(Ip("FragFails"))?),
        ),
        RelayKind::Redirect => (in0()?, None, None),
        RelayKind::Socat => {
            let errors = d(Udp("InErrors"))?;
            (in0()? - icmp6_in()? - errors, Some(errors), None)
        }
        RelayKind::Mcrd
        | RelayKind::Fastpath
        | RelayKind::McrdAuto
        | RelayKind::None
        | RelayKind::NoneUnicast => {
            return Err(Error::Usage(format!(
            "{}: relay {} counts for itself (its final stats are the hop's input), or has no hops",
            chain.path.display(),
            chain.relay.name()
        )))
        }
    };
    Ok(HopCounters {
        rx,
        kernel_drops,
        tx_errors,
        tx_sent: d(Link("out0", LinkField::TxPackets))? - icmp6_out,
    })
}
