//! Which counter slot of the program each rule owns.
//!
//! A rule keeps its slot while its spec and input stay the same (as its userspace counters
//! do), also while it runs in userspace for a while, so its kernel counts are never lost or
//! counted twice. A removed or changed rule's slot leaves the book at the plan and becomes
//! free again only once the workers run a table without it (`FastPath::finish`): until then
//! the old map entry may still count into it.

use std::collections::HashMap;

use crate::config::RuleSpec;
use crate::rules::Rule;

pub(super) struct SlotBook {
    owners: HashMap<String, Owner>,
    free: Vec<u32>,
    /// Output count of each slot's rule, to sum only its outputs when it retires.
    outputs: HashMap<u32, usize>,
}

struct Owner {
    spec: RuleSpec,
    ifindex: u32,
    slot: u32,
}

impl SlotBook {
    /// A book of `capacity` free slots, handed out lowest first.
    pub(super) fn new(capacity: u32) -> Self {
        Self {
            owners: HashMap::new(),
            free: (0..capacity).rev().collect(),
            outputs: HashMap::new(),
        }
    }

    /// Takes out of the book the slots whose rule is not in `rules` any more, or is there
    /// changed (spec or input); hand them to [`Self::release`] once no table uses them.
    pub(super) fn drop_changed(&mut self, rules: &[Rule]) -> Vec<u32> {
        // By name: searching every rule for each slot's owner took time in slots x rules.
        let by_name: HashMap<&str, &Rule> =
            rules.iter().map(|r| (r.spec.name.as_str(), r)).collect();
        let mut dropped = Vec::new();
        self.owners.retain(|name, owner| {
            let same = by_name
                .get(name.as_str())
                .is_some_and(|r| r.spec == owner.spec && r.ifindex == owner.ifindex);
            if !same {
                dropped.push(owner.slot);
            }
            same
        });
        dropped
    }

    /// The slot `name` owns.
    pub(super) fn owned(&self, name: &str) -> Option<u32> {
        self.owners.get(name).map(|o| o.slot)
    }

    /// A free slot, now `rule`'s; `None` when every slot is in use.
    pub(super) fn take(&mut self, rule: &Rule) -> Option<u32> {
        let slot = self.free.pop()?;
        self.owners.insert(
            rule.spec.name.clone(),
            Owner {
                spec: rule.spec.clone(),
                ifindex: rule.ifindex,
                slot,
            },
        );
        self.outputs.insert(slot, rule.outputs.len());
        Some(slot)
    }

    /// Gives back the slot [`Self::take`] just gave `name` (it could not be prepared).
    pub(super) fn untake(&mut self, name: &str) {
        if let Some(owner) = self.owners.remove(name) {
            self.outputs.remove(&owner.slot);
            self.free.push(owner.slot);
        }
    }

    /// Frees slots [`Self::drop_changed`] took out: each with its rule's output count.
    pub(super) fn release(&mut self, slots: Vec<u32>) -> Vec<(u32, Option<usize>)> {
        let released = slots.iter().map(|s| (*s, self.outputs.remove(s))).collect();
        self.free.extend(slots);
        released
    }

    /// The output count of a slot's rule, until the slot is released.
    pub(super) fn outputs_of(&self, slot: u32) -> Option<usize> {
        self.outputs.get(&slot).copied()
    }

    /// Slots not owned nor waiting for release.
    #[cfg(test)]
    pub(super) fn free_count(&self) -> usize {
        self.free.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::{RuleSet, RuleTable};

    fn rules(specs: &[(&str, &str, u16)]) -> Vec<Rule> {
        let specs = specs
            .iter()
            .map(|(name, input, port)| RuleSpec {
                name: name.to_string(),
                input: input.to_string(),
                group: "239.1.1.1".parse().unwrap(),
                port: *port,
                source: None,
                outputs: vec!["239.2.2.2:6000@lo".parse().unwrap()],
                monitor: None,
                min_ttl: None,
            })
            .collect();
        let set = RuleSet::from_specs(specs).unwrap();
        let index = |name: &str| -> std::io::Result<u32> {
            Ok(match name {
                "lo" => 1,
                "in0" => 10,
                _ => 11,
            })
        };
        RuleTable::build(&set, 1, &index).unwrap().rules
    }

    #[test]
    fn a_rule_keeps_its_slot_while_it_is_unchanged() {
        let mut book = SlotBook::new(3);
        let first = rules(&[("a", "in0", 5000), ("b", "in0", 5001)]);
        let a = book.take(&first[0]).unwrap();
        let b = book.take(&first[1]).unwrap();
        assert_eq!((a, b), (0, 1));
        assert!(book.drop_changed(&first).is_empty());
        assert_eq!(book.owned("a"), Some(0));

        // b's port changes, a goes: both slots leave the book, but are not free before release.
        let next = rules(&[("b", "in0", 5002), ("c", "in0", 5003)]);
        let mut dropped = book.drop_changed(&next);
        dropped.sort();
        assert_eq!(dropped, [0, 1]);
        assert_eq!(book.owned("a"), None);
        assert_eq!(book.free_count(), 1);
        assert_eq!(book.take(&next[0]), Some(2));
        assert_eq!(
            book.take(&next[1]),
            None,
            "the dropped slots are not free yet"
        );
        let released = book.release(dropped);
        assert_eq!(released, [(0, Some(1)), (1, Some(1))]);
        assert_eq!(book.take(&next[1]), Some(1));
    }

    #[test]
    fn a_rule_moved_to_another_input_gets_a_new_slot() {
        let mut book = SlotBook::new(2);
        let first = rules(&[("a", "in0", 5000)]);
        book.take(&first[0]).unwrap();
        let moved = rules(&[("a", "in1", 5000)]);
        assert_eq!(book.drop_changed(&moved), [0]);
    }

    #[test]
    fn a_slot_given_back_is_free_at_once() {
        let mut book = SlotBook::new(1);
        let r = rules(&[("a", "in0", 5000)]);
        assert_eq!(book.take(&r[0]), Some(0));
        book.untake("a");
        assert_eq!(book.owned("a"), None);
        assert_eq!(book.take(&r[0]), Some(0));
    }
}
