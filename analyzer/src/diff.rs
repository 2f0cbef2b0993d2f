//! What differs between runs' configuration and environment: the candidate causes of a change.
//!
//! Each record is flattened to `name -> value` (`config.relay.uring_entries`, `env.kernel`,
//! `hop.MCR-1.tunable.socket_sndbuf`, ...). A setting is listed when its value is not the same
//! in every set, including when one run did not record it (shown as "not recorded": an
//! unrecorded setting may be the cause, and the reader should know it is unknown).

use std::collections::{BTreeMap, BTreeSet};

use crate::record::{RunRecord, Setting};

/// One setting that differs, with its value in each set (`None` = not recorded).
#[derive(Debug, Clone, PartialEq)]
pub struct Difference {
    pub name: String,
    pub values: Vec<Option<String>>,
}

fn show(v: &Setting) -> String {
    match v {
        Setting::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Flattens the settings of one record; with `by_position`, hop settings are keyed by the hop's
/// position (`hop.1.relay`) rather than its name, so runs of different relays line up.
pub fn flatten(rec: &RunRecord, by_position: bool) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    let e = &rec.environment;
    for (k, v) in [
        ("env.kernel", e.kernel.clone()),
        ("env.cpu_model", e.cpu_model.clone()),
        ("env.cores", e.cores.map(|c| c.to_string())),
        ("env.hostname", e.hostname.clone()),
        ("env.git_revision", e.git_revision.clone()),
    ] {
        if let Some(v) = v {
            m.insert(k.to_string(), v);
        }
    }
    for (k, v) in &e.sysctls {
        m.insert(format!("env.sysctl.{k}"), v.clone());
    }
    for (k, v) in &e.other {
        m.insert(format!("env.{k}"), v.clone());
    }
    let c = &rec.configuration;
    for (section, map) in [
        ("generator", &c.generator),
        ("relay", &c.relay),
        ("harness", &c.harness),
    ] {
        for (k, v) in map {
            m.insert(format!("config.{section}.{k}"), show(v));
        }
    }
    if !rec.hops.is_empty() {
        let names: Vec<&str> = rec.hops.iter().map(|h| h.name.as_str()).collect();
        m.insert("pipeline.hops".into(), names.join(" → "));
    }
    for (i, hop) in rec.hops.iter().enumerate() {
        let id = if by_position {
            (i + 1).to_string()
        } else {
            hop.name.clone()
        };
        if let Some(r) = &hop.relay {
            m.insert(format!("hop.{id}.relay"), r.clone());
        }
        for (k, v) in &hop.tunables {
            m.insert(format!("hop.{id}.tunable.{k}"), show(v));
        }
    }
    m
}

/// The value of a setting in a set of repeats: the common value, or all values if they differ.
fn set_value(flat: &[BTreeMap<String, String>], name: &str) -> Option<String> {
    let values: BTreeSet<Option<&String>> = flat.iter().map(|m| m.get(name)).collect();
    match values.len() {
        1 => values.into_iter().next().flatten().cloned(),
        _ => Some(format!(
            "varies: {}",
            values
                .into_iter()
                .map(|v| v.map_or("not recorded".to_string(), |s| s.clone()))
                .collect::<Vec<_>>()
                .join(" | ")
        )),
    }
}

/// Settings whose value is not the same across all sets (or within a set of repeats).
pub fn differences(sets: &[Vec<RunRecord>]) -> Vec<Difference> {
    let by_position = crate::record::hops_differ(sets.iter().flatten());
    let flat: Vec<Vec<BTreeMap<String, String>>> = sets
        .iter()
        .map(|s| s.iter().map(|r| flatten(r, by_position)).collect())
        .collect();
    let names: BTreeSet<&String> = flat.iter().flatten().flat_map(|m| m.keys()).collect();
    let mut out = Vec::new();
    for name in names {
        let values: Vec<Option<String>> = flat.iter().map(|f| set_value(f, name)).collect();
        let first = &values[0];
        let varies = values
            .iter()
            .any(|v| v != first || v.as_deref().is_some_and(|s| s.starts_with("varies: ")));
        if varies {
            out.push(Difference {
                name: name.clone(),
                values,
            });
        }
    }
    merge_hops(out)
}

/// Folds `hop.A.tunable.K`, `hop.B.tunable.K`, ... with the same values in every set into one
/// row `hop.{A, B}.tunable.K`: a tunable changed on all three relays is one cause, not three.
fn merge_hops(diffs: Vec<Difference>) -> Vec<Difference> {
    let mut out: Vec<Difference> = Vec::new();
    struct Group {
        key: String,
        values: Vec<Option<String>>,
        hops: Vec<String>,
        /// Index of the group's row in `out`.
        at: usize,
    }
    let mut groups: Vec<Group> = Vec::new();
    for d in diffs {
        let split = d
            .name
            .strip_prefix("hop.")
            .and_then(|rest| rest.rsplit_once(".tunable."));
        match split {
            Some((hop, key)) => {
                let key = key.to_string();
                if let Some(g) = groups
                    .iter_mut()
                    .find(|g| g.key == key && g.values == d.values)
                {
                    g.hops.push(hop.to_string());
                } else {
                    groups.push(Group {
                        key,
                        values: d.values.clone(),
                        hops: vec![hop.to_string()],
                        at: out.len(),
                    });
                    out.push(d);
                }
            }
            None => out.push(d),
        }
    }
    for g in groups {
        if g.hops.len() > 1 {
            out[g.at].name = format!("hop.{{{}}}.tunable.{}", g.hops.join(", "), g.key);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_changed_and_unrecorded_settings_only() {
        let mut a = RunRecord::new("a");
        a.environment.kernel = Some("6.1".into());
        a.configuration
            .relay
            .insert("queue_depth".into(), Setting::from(64));
        a.configuration
            .generator
            .insert("size".into(), Setting::from(1400));
        let mut b = a.clone();
        b.name = "b".into();
        b.configuration
            .relay
            .insert("queue_depth".into(), Setting::from(1024));
        b.environment
            .sysctls
            .insert("net.core.wmem_max".into(), "4194304".into());
        let d = differences(&[vec![a], vec![b]]);
        let names: Vec<&str> = d.iter().map(|x| x.name.as_str()).collect();
        assert_eq!(
            names,
            ["config.relay.queue_depth", "env.sysctl.net.core.wmem_max"]
        );
        assert_eq!(d[0].values, vec![Some("64".into()), Some("1024".into())]);
        assert_eq!(d[1].values[0], None);
    }

    #[test]
    fn a_tunable_changed_on_every_hop_is_one_row() {
        let mut a = RunRecord::new("a");
        for h in ["MCR-1", "MCR-2"] {
            a.hops.push(crate::record::Hop {
                name: h.into(),
                ..Default::default()
            });
        }
        let mut b = a.clone();
        for hop in &mut a.hops {
            hop.tunables
                .insert("uring_entries".into(), Setting::from(64));
        }
        for hop in &mut b.hops {
            hop.tunables
                .insert("uring_entries".into(), Setting::from(1024));
        }
        b.hops[1]
            .tunables
            .insert("batch_size".into(), Setting::from(8));
        let d = differences(&[vec![a], vec![b]]);
        let names: Vec<&str> = d.iter().map(|x| x.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "hop.{MCR-1, MCR-2}.tunable.uring_entries",
                "hop.MCR-2.tunable.batch_size"
            ]
        );
    }

    #[test]
    fn repeats_that_disagree_are_flagged() {
        let mut a = RunRecord::new("a");
        a.environment.kernel = Some("6.1".into());
        let mut a2 = a.clone();
        a2.environment.kernel = Some("6.2".into());
        let d = differences(&[vec![a.clone(), a2], vec![a]]);
        assert_eq!(d.len(), 1);
        assert!(d[0].values[0].as_deref().unwrap().starts_with("varies"));
    }
}
