//! `scripts/bench-send.sh`: trafficgen's send rate into a veth pair, per sending mode. Each
//! case is a directory of trials (`CASE/repN.json`, `trafficgen send --json` records, read with
//! trafficgen's types); a case's row is the median over its trials of the achieved rate, the
//! CPU time per packet (task-clock of the sender threads / packets sent: steadier than the
//! rate on a shared machine) and the rate error against the target.

use std::path::{Path, PathBuf};

use trafficgen::record::{SendRecord, RECORD_MINOR_VERSION, RECORD_VERSION, SEND_SCHEMA};

use crate::error::{Error, Result};
use crate::medians::{rep_order, sorted_entries};
use crate::pipeline::read_contract;

/// One trial's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct Trial {
    /// `achieved_pps`, whole packets per second (rounded down).
    pub pps: f64,
    /// `perf.task_clock_ns / packets_sent`, ns, rounded down; none when task-clock was
    /// unavailable or nothing was sent.
    pub cpu_ns_per_pkt: Option<f64>,
    /// `rate_error_ratio` in percent; none for an unpaced sender (no target).
    pub rate_error_pct: Option<f64>,
}

/// One case: its trials in repeat order and their medians.
#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    /// The directory's name (`gso32-max`).
    pub name: String,
    pub trials: Vec<Trial>,
    pub median_pps: f64,
    /// Over the trials that measured it; none when none did.
    pub median_cpu_ns_per_pkt: Option<f64>,
    /// Over the trials that have one; none when none has.
    pub median_rate_error_pct: Option<f64>,
}

fn median_of(v: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    let v: Vec<f64> = v.flatten().collect();
    (!v.is_empty()).then(|| crate::stats::median(&v))
}

/// The figures of one `trafficgen send --json` record.
pub fn trial(r: &SendRecord) -> Trial {
    Trial {
        pps: r.achieved_pps.floor(),
        cpu_ns_per_pkt: r
            .perf
            .task_clock_ns
            .count()
            .filter(|_| r.packets_sent > 0)
            .map(|ns| (ns / r.packets_sent) as f64),
        rate_error_pct: r.rate_error_ratio.map(|x| x * 100.0),
    }
}

/// The case whose trials are `dir/repN.json`.
pub fn case(dir: &Path) -> Result<Case> {
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| Error::format(dir, "a case is a directory with a UTF-8 name"))?
        .to_string();
    let mut files: Vec<(String, PathBuf)> = sorted_entries(dir)?
        .into_iter()
        .filter_map(|p| {
            let stem = p.file_name()?.to_str()?.strip_suffix(".json")?.to_string();
            stem.starts_with("rep").then_some((stem, p))
        })
        .collect();
    files.sort_by(|a, b| rep_order(&a.0, &b.0));
    if files.is_empty() {
        return Err(Error::format(
            dir,
            "no trials: expected CASE/repN.json (trafficgen send --json records)",
        ));
    }
    let trials = files
        .iter()
        .map(|(_, p)| {
            let r: SendRecord =
                read_contract(p, SEND_SCHEMA, RECORD_VERSION, RECORD_MINOR_VERSION)?;
            Ok(trial(&r))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Case {
        name,
        median_pps: crate::stats::median(&trials.iter().map(|t| t.pps).collect::<Vec<_>>()),
        median_cpu_ns_per_pkt: median_of(trials.iter().map(|t| t.cpu_ns_per_pkt)),
        median_rate_error_pct: median_of(trials.iter().map(|t| t.rate_error_pct)),
        trials,
    })
}

/// The cases in the order given.
pub fn cases(dirs: &[PathBuf]) -> Result<Vec<Case>> {
    dirs.iter().map(|d| case(d)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_leave_out_trials_that_did_not_measure() {
        let t = |pps, cpu, err| Trial {
            pps,
            cpu_ns_per_pkt: cpu,
            rate_error_pct: err,
        };
        let trials = [
            t(3.0, Some(10.0), None),
            t(1.0, None, None),
            t(2.0, Some(20.0), None),
        ];
        assert_eq!(
            median_of(trials.iter().map(|t| t.cpu_ns_per_pkt)),
            Some(15.0)
        );
        assert_eq!(median_of(trials.iter().map(|t| t.rate_error_pct)), None);
    }
}
