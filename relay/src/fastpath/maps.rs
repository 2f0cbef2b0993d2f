//! Reads and writes of the program's maps: rule entries, per-CPU counter slots, stream-check
//! state and the pass counters. Every write the plan decides goes through here.

use std::collections::HashMap;
use std::net::IpAddr;

use libbpf_rs::{MapCore, MapFlags};

use super::counters;
use super::layout::{self, bytes_of};
use super::skel::{self, FastpathSkel};

/// The rule map's entries as mcrd wrote them (key bytes to value bytes): an entry whose
/// value is unchanged is not written again.
#[derive(Default)]
pub(super) struct Installed(HashMap<Vec<u8>, Vec<u8>>);

impl Installed {
    pub(super) fn contains(&self, key: &[u8]) -> bool {
        self.0.contains_key(key)
    }

    pub(super) fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.0.get(key).map(Vec::as_slice)
    }

    /// The keys of the entries of a flow (input, group, port), whatever their source.
    pub(super) fn keys_of(&self, ifindex: u32, group: IpAddr, port: u16) -> Vec<Vec<u8>> {
        self.0
            .keys()
            .filter(|k| layout::key_is_of_flow(k, ifindex, group, port))
            .cloned()
            .collect()
    }

    /// The keys not in `wanted`.
    pub(super) fn stale(&self, wanted: &HashMap<Vec<u8>, Vec<u8>>) -> Vec<Vec<u8>> {
        self.0
            .keys()
            .filter(|k| !wanted.contains_key(*k))
            .cloned()
            .collect()
    }
}

pub(super) struct Maps<'a> {
    skel: &'a FastpathSkel<'static>,
}

impl<'a> Maps<'a> {
    pub(super) fn of(skel: &'a FastpathSkel<'static>) -> Self {
        Self { skel }
    }

    /// The rule map a key belongs in: its length tells the families apart.
    fn rules_of(&self, key: &[u8]) -> &'a libbpf_rs::Map<'static> {
        if key.len() == layout::KEY6_LEN {
            &self.skel.maps.mcr_fp_rules6
        } else {
            &self.skel.maps.mcr_fp_rules
        }
    }

    /// Writes a rule entry unless it holds `value` already. One update per rule: a packet
    /// sees the rule's old output set or its new one, never a mix.
    pub(super) fn put_rule(
        &self,
        installed: &mut Installed,
        key: &[u8],
        value: &[u8],
    ) -> Result<(), libbpf_rs::Error> {
        if installed.0.get(key).map(Vec::as_slice) == Some(value) {
            return Ok(());
        }
        self.rules_of(key).update(key, value, MapFlags::ANY)?;
        installed.0.insert(key.to_vec(), value.to_vec());
        Ok(())
    }

    pub(super) fn delete_rule(&self, installed: &mut Installed, key: &[u8]) {
        if let Err(e) = self.rules_of(key).delete(key) {
            tracing::warn!("deleting a kernel rule: {e}");
        }
        installed.0.remove(key);
    }

    /// Zeroes a slot's per-CPU counters and makes its stream check fresh, for a new owner.
    pub(super) fn reset_slot(&self, slot: u32) -> Result<(), libbpf_rs::Error> {
        let cpus = libbpf_rs::num_possible_cpus()?;
        let zero = vec![vec![0u8; size_of::<skel::types::mcr_fp_rule_counters>()]; cpus];
        let key = slot.to_ne_bytes();
        let maps = &self.skel.maps;
        maps.mcr_fp_counters
            .update_percpu(&key, &zero, MapFlags::ANY)?;
        // Under the lock (BPF_F_LOCK), like the program's updates.
        let fresh = layout::fresh_monitor();
        maps.mcr_fp_monitors
            .update(&key, bytes_of(&fresh), MapFlags::LOCK)
    }

    /// Forgets the stream position of a slot's check, keeping its counts (see
    /// `MonitorCells::restart`). Only while no map entry points to the slot: the read and
    /// the write are two steps.
    pub(super) fn restart_monitor(&self, slot: u32) {
        let map = &self.skel.maps.mcr_fp_monitors;
        let key = slot.to_ne_bytes();
        let Ok(Some(raw)) = map.lookup(&key, MapFlags::LOCK) else {
            return;
        };
        let Some(mut m) = layout::from_bytes::<skel::types::mcr_fp_monitor>(&raw) else {
            return;
        };
        m.last_seq = layout::fresh_monitor().last_seq;
        if let Err(e) = map.update(&key, bytes_of(&m), MapFlags::LOCK) {
            tracing::warn!("restarting the stream check of kernel slot {slot}: {e}");
        }
    }

    /// The stream check of a monitored rule's slot, read under its lock.
    pub(super) fn monitor_counters(&self, slot: u32) -> Option<counters::MonitorCounters> {
        let raw = self
            .skel
            .maps
            .mcr_fp_monitors
            .lookup(&slot.to_ne_bytes(), MapFlags::LOCK)
            .ok()??;
        counters::MonitorCounters::from_map(&raw)
    }

    /// The summed per-CPU counters of a rule's slot.
    pub(super) fn rule_counters(&self, slot: u32) -> Option<counters::RuleCounters> {
        let per_cpu = self
            .skel
            .maps
            .mcr_fp_counters
            .lookup_percpu(&slot.to_ne_bytes(), MapFlags::ANY)
            .ok()??;
        Some(counters::RuleCounters::sum(&per_cpu))
    }

    /// The summed counters of frames the program left to the stack.
    pub(super) fn pass_counters(&self) -> counters::PassCounters {
        self.skel
            .maps
            .mcr_fp_pass
            .lookup_percpu(&0u32.to_ne_bytes(), MapFlags::ANY)
            .ok()
            .flatten()
            .map(|v| counters::PassCounters::sum(&v))
            .unwrap_or_default()
    }
}
