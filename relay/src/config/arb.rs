//! proptest strategies for rule specs, shared by the round-trip property tests of the config
//! file and the control protocol.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;

use super::spec::{OutputSpec, RuleSpec};

/// An address of either family.
fn addr() -> impl Strategy<Value = IpAddr> {
    any::<bool>().prop_flat_map(addr_of)
}

/// An IPv6 address when `ipv6`, else an IPv4 one.
fn addr_of(ipv6: bool) -> BoxedStrategy<IpAddr> {
    if ipv6 {
        any::<u128>()
            .prop_map(|a| IpAddr::V6(Ipv6Addr::from(a)))
            .boxed()
    } else {
        any::<u32>()
            .prop_map(|a| IpAddr::V4(Ipv4Addr::from(a)))
            .boxed()
    }
}

fn interface() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9._-]{0,14}"
}

pub fn output() -> impl Strategy<Value = OutputSpec> {
    (
        addr(),
        1..=u16::MAX,
        interface(),
        1..=u8::MAX,
        proptest::option::of(0..=super::spec::MAX_DSCP),
        proptest::option::of(1..=u16::MAX),
    )
        .prop_map(
            |(dest, port, interface, ttl, dscp, source_port)| OutputSpec {
                dscp,
                source_port,
                ..OutputSpec::new(dest, port, interface, ttl)
            },
        )
}

/// Rules that pass [`super::validate_rule`] (addresses that the validator refuses are rare
/// enough to be filtered by the tests).
pub fn rule() -> impl Strategy<Value = RuleSpec> {
    // A rule's group and source are of one family; its outputs of either.
    any::<bool>().prop_flat_map(|ipv6| {
        (
            "[A-Za-z0-9._:-]{1,64}",
            interface(),
            addr_of(ipv6),
            1..=u16::MAX,
            proptest::option::of(addr_of(ipv6)),
            proptest::collection::vec(output(), 1..4),
            proptest::option::of(1..=u8::MAX),
        )
            .prop_map(
                |(name, input, group, port, source, outputs, min_ttl)| RuleSpec {
                    name,
                    input,
                    group,
                    port,
                    source,
                    outputs,
                    monitor: Default::default(),
                    min_ttl,
                },
            )
    })
}
