//! What one plan asks of the kernel about output interfaces and neighbours, asked once per
//! interface, route or next hop instead of once per rule.
//!
//! mcrd re-plans every second while the fast path is on. Asking per rule made an idle
//! daemon's CPU grow with its rules (10,000 rules: 17% of a core, two ioctls and two
//! /proc reads per output every second) and held the controller that long, delaying control
//! replies. A plan is a snapshot: within it, an interface's MAC and address, a unicast
//! output's route, a next hop's neighbour entry and an IPv6 group's source on an interface
//! are the same for every rule that uses them. The rtnetlink socket is opened at the plan's
//! first question that needs it and closed with the plan.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::plan::{Host, Neighbour, NextHop};
use super::resolve::{self, Link, RouteQuery, Rtnl};
use crate::rules::EgressKey;

/// Answers cached for the length of one plan.
#[derive(Default)]
pub(super) struct Lookups {
    links: HashMap<String, Result<Link, String>>,
    addresses: HashMap<String, Result<Option<Ipv4Addr>, String>>,
    rtnl: Option<Result<Rtnl, String>>,
    /// Next hop and source per route lookup.
    hops: HashMap<RouteQuery, Result<resolve::Route, String>>,
    /// Usable MAC per (next hop, interface index).
    neighbours: HashMap<(IpAddr, u32), Result<[u8; 6], String>>,
    /// Source address per (interface index, IPv6 multicast group).
    multicast_sources: HashMap<(u32, Ipv6Addr), Result<Ipv6Addr, String>>,
    /// The name an output's interface was asked by (it appears in the answers).
    names: HashMap<u32, String>,
}

impl Lookups {
    /// Whether the kernel would now answer any question this plan asked differently: an
    /// interface's MAC or address, a route or a neighbour entry changed, appeared or went.
    /// Asking again costs one question per interface, route and next hop, not per rule, so
    /// an idle daemon can check every second and re-plan only when this says so.
    pub(super) fn changed(&self) -> bool {
        let mut now = Lookups::default();
        self.links.iter().any(|(name, a)| now.link(name) != *a)
            || self
                .addresses
                .iter()
                .any(|(name, a)| now.ipv4_address(name) != *a)
            || self.routes_changed()
    }

    fn routes_changed(&self) -> bool {
        if self.hops.is_empty() && self.multicast_sources.is_empty() {
            return false;
        }
        let mut rtnl = match Rtnl::open() {
            Ok(r) => r,
            // Cannot ask: say changed, and the plan that follows reports why.
            Err(_) => return true,
        };
        let name = |oif: u32| self.names.get(&oif).map_or("", String::as_str);
        let route_changed = self.hops.iter().any(|(q, a)| {
            resolve::next_hop(&mut rtnl, q, name(q.oif)).map_err(|e| e.to_string()) != *a
        });
        route_changed
            || self.neighbours.iter().any(|(&(hop, oif), a)| {
                resolve::neighbour_mac(&mut rtnl, hop, oif, name(oif)).map_err(|e| e.to_string())
                    != *a
            })
            || self.multicast_sources.iter().any(|(&(oif, group), a)| {
                resolve::multicast_source(&mut rtnl, oif, name(oif), group)
                    .map_err(|e| e.to_string())
                    != *a
            })
    }
}

/// The plan's rtnetlink socket, opened at its first use (and the error of that, once).
fn rtnl(slot: &mut Option<Result<Rtnl, String>>) -> Result<&mut Rtnl, String> {
    slot.get_or_insert_with(|| {
        Rtnl::open().map_err(|e| format!("opening an rtnetlink socket: {e}"))
    })
    .as_mut()
    .map_err(|e| e.clone())
}

impl Host for Lookups {
    /// [`resolve::link`], once per interface.
    fn link(&mut self, name: &str) -> Result<Link, String> {
        if let Some(l) = self.links.get(name) {
            return l.clone();
        }
        let l = resolve::link(name).map_err(|e| e.to_string());
        self.links.insert(name.to_string(), l.clone());
        l
    }

    /// [`resolve::ipv4_address`], once per interface.
    fn ipv4_address(&mut self, name: &str) -> Result<Option<Ipv4Addr>, String> {
        if let Some(a) = self.addresses.get(name) {
            return a.clone();
        }
        let a = resolve::ipv4_address(name).map_err(|e| e.to_string());
        self.addresses.insert(name.to_string(), a.clone());
        a
    }

    /// The kernel's next hop for `socket`'s datagrams ([`resolve::next_hop`]), once per
    /// lookup, and that hop's MAC ([`resolve::neighbour_mac`]), once per hop and interface.
    fn neighbour(&mut self, socket: &EgressKey, name: &str) -> Neighbour {
        let Some(q) = RouteQuery::of(socket) else {
            return Err(format!("output {name} is not a unicast output"));
        };
        self.names.entry(q.oif).or_insert_with(|| name.to_string());
        let rtnl = rtnl(&mut self.rtnl)?;
        let route = self
            .hops
            .entry(q)
            .or_insert_with(|| resolve::next_hop(rtnl, &q, name).map_err(|e| e.to_string()))
            .clone()?;
        let mac = self
            .neighbours
            .entry((route.hop, q.oif))
            .or_insert_with(|| {
                resolve::neighbour_mac(rtnl, route.hop, q.oif, name).map_err(|e| e.to_string())
            })
            .clone()?;
        Ok(NextHop {
            mac,
            source: route.source,
        })
    }

    /// [`resolve::multicast_source`], once per interface and group.
    fn multicast_source(
        &mut self,
        ifindex: u32,
        name: &str,
        group: Ipv6Addr,
    ) -> Result<Ipv6Addr, String> {
        if let Some(a) = self.multicast_sources.get(&(ifindex, group)) {
            return a.clone();
        }
        self.names
            .entry(ifindex)
            .or_insert_with(|| name.to_string());
        let a = resolve::multicast_source(rtnl(&mut self.rtnl)?, ifindex, name, group)
            .map_err(|e| e.to_string());
        self.multicast_sources.insert((ifindex, group), a.clone());
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddrV4;

    #[test]
    fn each_interface_is_asked_once_and_answers_stay_the_same() {
        let mut l = Lookups::default();
        let a = l.link("lo");
        assert!(a.as_ref().is_ok_and(|k| !k.ethernet), "{a:?}");
        assert_eq!(l.links.len(), 1);
        assert_eq!(l.link("lo").map(|k| k.mac), a.map(|k| k.mac));
        assert_eq!(l.links.len(), 1);
        assert!(l.link("mcr-no-such0").is_err());
        assert_eq!(l.ipv4_address("lo"), Ok(Some(Ipv4Addr::LOCALHOST)));
    }

    #[test]
    fn answers_asked_again_are_unchanged_until_one_differs() {
        let mut l = Lookups::default();
        let _ = l.link("lo");
        let _ = l.ipv4_address("lo");
        let _ = l.link("mcr-no-such0");
        let local = EgressKey {
            ifindex: 1,
            ipv6: false,
            ttl: 16,
            bind: None,
            unicast: Some(SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 2), 7000).into()),
        };
        let _ = l.neighbour(&local, "lo");
        assert!(
            !l.changed(),
            "the same questions, asked again, have the same answers"
        );

        let mut moved = Lookups {
            links: l.links.clone(),
            ..Default::default()
        };
        moved.links.insert("lo".into(), Err("was gone".into()));
        assert!(moved.changed(), "an interface that came back is a change");

        let mut readdressed = Lookups::default();
        readdressed
            .addresses
            .insert("lo".into(), Ok(Some(Ipv4Addr::new(10, 9, 9, 9))));
        assert!(readdressed.changed(), "a new address is a change");

        let mut rerouted = Lookups {
            names: l.names.clone(),
            ..Default::default()
        };
        for q in l.hops.keys() {
            rerouted.hops.insert(*q, Err("no route".into()));
        }
        assert!(!rerouted.hops.is_empty());
        assert!(rerouted.changed(), "a route that appeared is a change");
    }

    #[test]
    fn each_interface_and_groups_multicast_source_is_asked_once_and_rechecked() {
        let mut l = Lookups::default();
        let group: Ipv6Addr = "ff3e::1".parse().unwrap();
        // lo sends no multicast: the kernel has no route, and the answer says so.
        let a = l.multicast_source(1, "lo", group);
        assert!(a.as_ref().is_err_and(|e| e.contains("ff3e::1")), "{a:?}");
        assert_eq!(l.multicast_source(1, "lo", group), a);
        assert_eq!(l.multicast_sources.len(), 1);
        let _ = l.multicast_source(1, "lo", "ff3e::2".parse().unwrap());
        assert_eq!(
            l.multicast_sources.len(),
            2,
            "another group is another lookup"
        );
        assert!(!l.changed(), "asked again, the same answers");

        let mut sourced = Lookups {
            names: l.names.clone(),
            ..Default::default()
        };
        sourced
            .multicast_sources
            .insert((1, group), Ok("fd00::1".parse().unwrap()));
        assert!(sourced.changed(), "a source that went is a change");
    }

    #[test]
    fn an_ipv6_unicast_output_is_routed_in_the_ipv6_tables() {
        let mut l = Lookups::default();
        let local = EgressKey {
            ifindex: 1,
            ipv6: true,
            ttl: 16,
            bind: None,
            unicast: Some("[::1]:7000".parse().unwrap()),
        };
        assert_eq!(
            l.neighbour(&local, "lo"),
            Err("::1 is an address of this host: the kernel delivers it locally".into())
        );
        assert_eq!(l.hops.len(), 1);
    }

    #[test]
    fn each_route_and_next_hop_is_asked_once() {
        let mut l = Lookups::default();
        let key = |dest: [u8; 4], port| EgressKey {
            ifindex: 1,
            ipv6: false,
            ttl: 16,
            bind: None,
            unicast: Some(SocketAddrV4::new(Ipv4Addr::from(dest), port).into()),
        };
        // 127.0.0.2 is local: no next hop, and the answer says so.
        let local = l.neighbour(&key([127, 0, 0, 2], 7000), "lo");
        assert_eq!(
            local,
            Err("127.0.0.2 is an address of this host: the kernel delivers it locally".into())
        );
        assert_eq!(l.neighbour(&key([127, 0, 0, 2], 7000), "lo"), local);
        assert_eq!((l.hops.len(), l.neighbours.len()), (1, 0));
        let _ = l.neighbour(&key([127, 0, 0, 2], 7001), "lo");
        assert_eq!(l.hops.len(), 2, "another port is another lookup");
        let multicast = EgressKey {
            unicast: None,
            ..key([127, 0, 0, 2], 7000)
        };
        assert!(l.neighbour(&multicast, "lo").is_err());
    }
}
