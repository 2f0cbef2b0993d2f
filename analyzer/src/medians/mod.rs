//! Medians over the repeats of a benchmark campaign: a directory of record sets, one set per
//! configuration (`records/CONFIG-NHh-RATE…/repN.json`, as `scripts/relay-speed.sh` and
//! `scripts/fast-path-speed.sh` write them), reduced to one row per configuration and rate.
//!
//! Two layouts, one module each: [`relay_speed`] (mcrd beside the kernel and socat) and
//! [`fast_path`] (the fast path against the kernel's forwarding and the floor of a hop, per
//! generator mode). Both read the records through [`RunRecord::load`], so a record of another
//! version or with a missing field is an error naming the file and the field, and both return
//! structured results that `render::markdown::medians` writes as tables.
//!
//! What is shared is here: the records of a campaign ([`load`]), the figures every layout takes
//! from one run ([`Figures`]) and the median ([`median`]). The median of an even number of
//! values is the mean of the middle two; the order of repeats is their number (`rep2` before
//! `rep10`).

pub mod fast_path;
pub mod pipeline_full;
pub mod relay_speed;

use std::cmp::Ordering;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::record::RunRecord;

/// One record of a campaign: the set (directory) it is in, its repeat (file stem) and itself.
#[derive(Debug, Clone)]
pub struct Input {
    /// The set's directory name (`mcrd-3h-20000pps`).
    pub set: String,
    /// The file's stem (`rep3`).
    pub rep: String,
    /// Where it was read from, for errors.
    pub path: PathBuf,
    pub record: RunRecord,
}

/// Reads `DIR/*/rep*.json` (the scripts' `records/` directory), sets and files in byte order of
/// their names (the order the scripts' shell globs gave under the C locale). Hidden
/// directories and other files are not records.
pub fn load(dir: &Path) -> Result<Vec<Input>> {
    let mut out = Vec::new();
    for set_dir in sorted_entries(dir)? {
        if !set_dir.is_dir() {
            continue;
        }
        let Some(set) = visible_name(&set_dir) else {
            continue;
        };
        for file in sorted_entries(&set_dir)? {
            let Some(name) = visible_name(&file) else {
                continue;
            };
            let Some(rep) = name.strip_suffix(".json") else {
                continue;
            };
            if !rep.starts_with("rep") || !file.is_file() {
                continue;
            }
            let record = RunRecord::load(&file)?;
            out.push(Input {
                set: set.clone(),
                rep: rep.to_string(),
                path: file,
                record,
            });
        }
    }
    if out.is_empty() {
        return Err(Error::format(
            dir,
            "no records: expected DIR/SET/repN.json (the records/ directory of a campaign)",
        ));
    }
    Ok(out)
}

pub(crate) fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .map(|e| e.map(|e| e.path()).map_err(|e| Error::io(dir, e)))
        .collect::<Result<Vec<_>>>()?;
    v.sort();
    Ok(v)
}

fn visible_name(p: &Path) -> Option<String> {
    let name = p.file_name()?.to_str()?;
    (!name.starts_with('.')).then(|| name.to_string())
}

/// The figures of one run that every layout uses, each from a named field of the record.
#[derive(Debug, Clone, PartialEq)]
pub struct Figures {
    /// `generator.sent`.
    pub sent: u64,
    /// `receiver.received`.
    pub received: u64,
    /// Generator rate, `sent / generator.elapsed_ns`, packets/s.
    pub gen_pps: f64,
    /// Delivered rate, `received / duration_ns`, packets/s.
    pub recv_pps: f64,
    /// Host CPU per delivered packet, `host_cpu.busy_ns / received`, ns (none when nothing
    /// was delivered).
    pub host_ns_per_pkt: Option<f64>,
    /// Latency percentiles 50 and 99 of `receiver.latency`, µs.
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
}

impl Figures {
    /// `sent - received`: the datagrams that did not arrive.
    pub fn lost(&self) -> f64 {
        self.sent as f64 - self.received as f64
    }

    /// Loss in percent of what was sent.
    pub fn loss_pct(&self) -> f64 {
        self.lost() * 100.0 / self.sent as f64
    }

    /// Reads the figures of `input`, naming the file and field that is missing.
    pub fn of(input: &Input) -> Result<Self> {
        let r = &input.record;
        let p = input.path.as_path();
        let g = r.generator.as_ref();
        let sent = need(p, "generator.sent", g.and_then(|g| g.sent))?;
        let elapsed = need(p, "generator.elapsed_ns", g.and_then(|g| g.elapsed_ns))?;
        let received = need(
            p,
            "receiver.received",
            r.receiver.as_ref().and_then(|r| r.received),
        )?;
        let duration = need(p, "duration_ns", r.duration_ns)?;
        let busy = need(
            p,
            "host_cpu.busy_ns",
            r.host_cpu.as_ref().and_then(|h| h.busy_ns),
        )?;
        nonzero(p, "generator.elapsed_ns", elapsed)?;
        nonzero(p, "duration_ns", duration)?;
        nonzero(p, "generator.sent", sent)?;
        let pct = |q: f64| {
            r.receiver
                .as_ref()?
                .latency
                .iter()
                .find(|l| l.percentile == q)
                .map(|l| l.latency_ns as f64 / 1000.0)
        };
        Ok(Figures {
            sent,
            received,
            gen_pps: sent as f64 * 1e9 / elapsed as f64,
            recv_pps: received as f64 * 1e9 / duration as f64,
            host_ns_per_pkt: (received > 0).then(|| busy as f64 / received as f64),
            p50_us: pct(50.0),
            p99_us: pct(99.0),
        })
    }
}

/// A field the medians need, or the error naming it.
pub(crate) fn need<T>(path: &Path, field: &str, v: Option<T>) -> Result<T> {
    v.ok_or_else(|| {
        Error::field(
            path,
            field,
            "missing: the medians tables need it (a record made by the pipeline harness has it)",
        )
    })
}

fn nonzero(path: &Path, field: &str, v: u64) -> Result<()> {
    if v == 0 {
        return Err(Error::field(
            path,
            field,
            "is 0: a rate over it is undefined",
        ));
    }
    Ok(())
}

/// The median: the middle value, or the mean of the two middle values; none of no values.
pub fn median(mut v: Vec<f64>) -> Option<f64> {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

/// The largest value; none of no values.
pub fn max(v: impl IntoIterator<Item = f64>) -> Option<f64> {
    v.into_iter().max_by(f64::total_cmp)
}

/// The order of repeats: `rep2` before `rep10` (by number); names that are not `repN` after
/// every numbered one, by name.
pub fn rep_order(a: &str, b: &str) -> Ordering {
    let num = |s: &str| s.strip_prefix("rep").unwrap_or(s).parse::<f64>().ok();
    match (num(a), num(b)) {
        (Some(x), Some(y)) => x.total_cmp(&y),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => a.cmp(b),
    }
}

/// A set name `CONFIG-NHh-TAIL`, split at the last `-Nh-` whose tail `accept` takes (the
/// configuration may itself hold dashes: `mcrd-rt-3h-65000pps`, `direct-unicast-0h-…`).
pub(crate) fn split_set<'a, T>(
    set: &'a str,
    accept: impl Fn(&'a str) -> Option<T>,
) -> Option<(&'a str, u32, T)> {
    let b = set.as_bytes();
    (1..b.len()).rev().find_map(|i| {
        // "-" digit "h-" at i
        if b.len() < i + 4
            || b[i] != b'-'
            || !b[i + 1].is_ascii_digit()
            || &b[i + 2..i + 4] != b"h-"
        {
            return None;
        }
        let tail = accept(&set[i + 4..])?;
        Some((&set[..i], u32::from(b[i + 1] - b'0'), tail))
    })
}

/// `PPSpps` as its number.
pub(crate) fn pps_tag(s: &str) -> Option<u64> {
    let n = s.strip_suffix("pps")?;
    (!n.is_empty() && n.bytes().all(|c| c.is_ascii_digit()))
        .then(|| n.parse().ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(vec![]), None);
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
    }

    #[test]
    fn set_names_split_at_the_last_hop_count() {
        assert_eq!(
            split_set("mcrd-rt-3h-65000pps", pps_tag),
            Some(("mcrd-rt", 3, 65000))
        );
        assert_eq!(
            split_set("direct-unicast-0h-100pps", pps_tag),
            Some(("direct-unicast", 0, 100))
        );
        assert_eq!(split_set("mcrd-3h-fast", pps_tag), None);
        assert_eq!(split_set("3h-100pps", pps_tag), None);
    }

    #[test]
    fn repeats_in_number_order() {
        let mut v = vec!["rep10", "x", "rep2", "rep1"];
        v.sort_by(|a, b| rep_order(a, b));
        assert_eq!(v, ["rep1", "rep2", "rep10", "x"]);
    }
}
