//! What one plan asks of the kernel about output interfaces and neighbours, asked once per
//! interface or destination instead of once per rule.
//!
//! mcrd re-plans every second while the fast path is on. Asking per rule made an idle
//! daemon's CPU grow with its rules (10,000 rules: 17% of a core, two ioctls and two
//! /proc reads per output every second) and held the controller that long, delaying control
//! replies. A plan is a snapshot: within it, an interface's MAC and address and a
//! destination's neighbour are the same for every rule that uses them.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use super::plan::{Host, Neighbour};
use super::resolve::{self, Link};

/// Answers cached for the length of one plan.
#[derive(Default)]
pub(super) struct Lookups {
    links: HashMap<String, Result<Link, String>>,
    addresses: HashMap<String, Result<Option<Ipv4Addr>, String>>,
    neighbours: HashMap<(Ipv4Addr, String), Neighbour>,
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

    /// The next hop towards `dest` out of `name` and its link-layer address, once per
    /// destination and interface.
    fn neighbour(&mut self, dest: Ipv4Addr, name: &str) -> Neighbour {
        let key = (dest, name.to_string());
        if let Some(n) = self.neighbours.get(&key) {
            return *n;
        }
        let hop = resolve::next_hop(dest, name);
        let n = (hop, resolve::neighbour(hop, name));
        self.neighbours.insert(key, n);
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let _ = l.neighbour(Ipv4Addr::new(127, 0, 0, 2), "lo");
        let _ = l.neighbour(Ipv4Addr::new(127, 0, 0, 2), "lo");
        assert_eq!(l.neighbours.len(), 1);
    }
}
