//! The rule set as the user manages it: add, remove, list, replace.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};

use crate::config::RuleSpec;

/// A rule change the daemon refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error("a rule named `{0}` already exists")]
    DuplicateName(String),
    #[error("rule `{new}` matches the same traffic ({key}) as rule `{existing}`")]
    DuplicateMatch {
        new: String,
        existing: String,
        key: String,
    },
    #[error("no rule named `{0}`")]
    NoSuchRule(String),
    #[error("rule `{rule}`: {field}: interface `{interface}` does not exist ({reason})")]
    UnknownInterface {
        rule: String,
        field: String,
        interface: String,
        reason: String,
    },
    #[error("rule `{rule}`: {message}")]
    Invalid { rule: String, message: String },
}

/// The difference between two rule sets, for the reload log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleDiff {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
    pub unchanged: usize,
}

impl RuleDiff {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

impl std::fmt::Display for RuleDiff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list = |v: &[String]| {
            if v.is_empty() {
                "none".to_string()
            } else {
                v.join(", ")
            }
        };
        write!(
            f,
            "added {} ({}), removed {} ({}), changed {} ({}), unchanged {}",
            self.added.len(),
            list(&self.added),
            self.removed.len(),
            list(&self.removed),
            self.changed.len(),
            list(&self.changed),
            self.unchanged
        )
    }
}

/// What two rules must not share: input, group, port and source (`RuleSpec::match_key`).
type MatchKey = (String, IpAddr, u16, Option<IpAddr>);

/// Rules keyed by name, in name order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleSet {
    rules: BTreeMap<String, RuleSpec>,
    /// The name of the rule holding each match key: a duplicate is found in one lookup, not
    /// by comparing with every rule (which made adding N rules take time in N²).
    by_key: HashMap<MatchKey, String>,
}

impl RuleSet {
    /// A set from a config file's rules (which the config parser already checked for duplicates).
    pub fn from_specs(specs: Vec<RuleSpec>) -> Result<Self, RuleError> {
        let mut set = Self::default();
        for spec in specs {
            set.add(spec)?;
        }
        Ok(set)
    }

    pub fn add(&mut self, spec: RuleSpec) -> Result<(), RuleError> {
        if let Err(e) = crate::config::validate_rule(&spec) {
            return Err(RuleError::Invalid {
                // Escaped: the name may be what is wrong (a newline, an escape sequence).
                rule: spec.name.escape_debug().to_string(),
                message: e.to_string(),
            });
        }
        if self.rules.contains_key(&spec.name) {
            return Err(RuleError::DuplicateName(spec.name));
        }
        let key = spec.match_key();
        if let Some(existing) = self.by_key.get(&key) {
            return Err(RuleError::DuplicateMatch {
                key: format!(
                    "{} on {}",
                    SocketAddr::new(spec.group, spec.port),
                    spec.input
                ),
                new: spec.name,
                existing: existing.clone(),
            });
        }
        self.by_key.insert(key, spec.name.clone());
        self.rules.insert(spec.name.clone(), spec);
        Ok(())
    }

    pub fn remove(&mut self, name: &str) -> Result<RuleSpec, RuleError> {
        let spec = self
            .rules
            .remove(name)
            .ok_or_else(|| RuleError::NoSuchRule(name.escape_debug().to_string()))?;
        self.by_key.remove(&spec.match_key());
        Ok(spec)
    }

    /// The rule named `name`.
    pub fn get(&self, name: &str) -> Option<&RuleSpec> {
        self.rules.get(name)
    }

    /// What replacing this set with `next` adds, removes and changes (by rule name; changed =
    /// same name, different spec).
    pub fn diff(&self, next: &RuleSet) -> RuleDiff {
        let mut d = RuleDiff::default();
        for (name, spec) in &next.rules {
            match self.rules.get(name) {
                None => d.added.push(name.clone()),
                Some(old) if old != spec => d.changed.push(name.clone()),
                Some(_) => d.unchanged += 1,
            }
        }
        d.removed = self
            .rules
            .keys()
            .filter(|n| !next.rules.contains_key(*n))
            .cloned()
            .collect();
        d
    }

    /// The rules in name order after the one named `after` (all of them for `None`), for
    /// listing a page without walking the pages before it.
    pub fn after(&self, after: Option<&str>) -> impl Iterator<Item = &RuleSpec> {
        use std::ops::Bound;
        let from = match after {
            Some(name) => Bound::Excluded(name),
            None => Bound::Unbounded,
        };
        self.rules
            .range::<str, _>((from, Bound::Unbounded))
            .map(|(_, r)| r)
    }

    pub fn iter(&self) -> impl Iterator<Item = &RuleSpec> {
        self.rules.values()
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_list_remove() {
        let mut s = RuleSet::default();
        s.add(RuleSpec::on_lo("b", [239, 1, 1, 2], 5000)).unwrap();
        s.add(RuleSpec::on_lo("a", [239, 1, 1, 1], 5000)).unwrap();
        let names: Vec<_> = s.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(s.remove("a").unwrap().name, "a");
        assert_eq!(s.remove("a"), Err(RuleError::NoSuchRule("a".into())));
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn duplicates_are_refused_and_leave_the_set_unchanged() {
        let mut s = RuleSet::default();
        s.add(RuleSpec::on_lo("a", [239, 1, 1, 1], 5000)).unwrap();
        let before = s.clone();
        assert!(matches!(
            s.add(RuleSpec::on_lo("a", [239, 1, 1, 2], 5000)),
            Err(RuleError::DuplicateName(_))
        ));
        let e = s
            .add(RuleSpec::on_lo("c", [239, 1, 1, 1], 5000))
            .unwrap_err();
        assert!(e.to_string().contains("same traffic"), "{e}");
        assert_eq!(s, before);
    }

    #[test]
    fn diff_names_added_removed_and_changed_rules() {
        let mut old = RuleSet::default();
        old.add(RuleSpec::on_lo("keep", [239, 1, 1, 1], 5000))
            .unwrap();
        old.add(RuleSpec::on_lo("gone", [239, 1, 1, 2], 5000))
            .unwrap();
        old.add(RuleSpec::on_lo("edit", [239, 1, 1, 3], 5000))
            .unwrap();
        let mut new = RuleSet::default();
        new.add(RuleSpec::on_lo("keep", [239, 1, 1, 1], 5000))
            .unwrap();
        new.add(RuleSpec::on_lo("edit", [239, 1, 1, 3], 5001))
            .unwrap();
        new.add(RuleSpec::on_lo("new", [239, 1, 1, 4], 5000))
            .unwrap();
        let d = old.diff(&new);
        assert_eq!(
            (d.added, d.removed, d.changed, d.unchanged),
            (
                vec!["new".into()],
                vec!["gone".into()],
                vec!["edit".into()],
                1
            )
        );
        assert!(old.diff(&old).is_empty());
    }

    #[test]
    fn a_removed_rule_s_traffic_may_be_taken_by_another() {
        let mut s = RuleSet::default();
        s.add(RuleSpec::on_lo("a", [239, 1, 1, 1], 5000)).unwrap();
        s.remove("a").unwrap();
        s.add(RuleSpec::on_lo("b", [239, 1, 1, 1], 5000)).unwrap();
        let e = s
            .add(RuleSpec::on_lo("c", [239, 1, 1, 1], 5000))
            .unwrap_err();
        assert!(
            matches!(&e, RuleError::DuplicateMatch { existing, .. } if existing == "b"),
            "{e}"
        );
    }

    #[test]
    fn adding_many_rules_takes_time_linear_in_their_number() {
        // 50,000 rules on one input: 1.25 billion comparisons when each rule was compared
        // with all before it (minutes in a debug build); a hash lookup each takes well under
        // a second. A generous bound that catches N², not noise.
        let specs: Vec<RuleSpec> = (0..50_000u32)
            .map(|i| {
                let g = (0xef01_0000 + i).to_be_bytes();
                RuleSpec::on_lo(&format!("r{i}"), g, 5000)
            })
            .collect();
        let t = std::time::Instant::now();
        let s = RuleSet::from_specs(specs).unwrap();
        assert_eq!(s.len(), 50_000);
        assert!(
            t.elapsed() < std::time::Duration::from_secs(20),
            "{:?}",
            t.elapsed()
        );
    }

    #[test]
    fn rule_without_outputs_is_refused() {
        let mut r = RuleSpec::on_lo("a", [239, 1, 1, 1], 5000);
        r.outputs.clear();
        assert!(RuleSet::default().add(r).is_err());
    }

    #[test]
    fn the_file_s_checks_apply_to_rules_added_at_run_time() {
        let mut r = RuleSpec::on_lo("evil\n\u{1b}[2J", [239, 1, 1, 1], 5000);
        let e = RuleSet::default().add(r.clone()).unwrap_err().to_string();
        assert!(
            e.contains("name") && !e.contains('\n') && !e.contains('\u{1b}'),
            "{e}"
        );
        r.name = "ok".into();
        r.outputs[0].dest = std::net::Ipv4Addr::UNSPECIFIED.into();
        let e = RuleSet::default().add(r.clone()).unwrap_err().to_string();
        assert!(e.contains("outputs[0].dest"), "{e}");
        r.outputs[0].dest = [239, 2, 2, 2].into();
        r.outputs[0].ttl = 0;
        let e = RuleSet::default().add(r).unwrap_err().to_string();
        assert!(e.contains("outputs[0].ttl"), "{e}");
    }
}
