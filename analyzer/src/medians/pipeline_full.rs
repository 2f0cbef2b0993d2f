//! The full veth pipeline campaign (`scripts/pipeline-full-run.sh`, `reports/pipeline/full/`):
//! per configuration (`sets/CONFIG/repN/`, with the harness's `conservation.json` and
//! `host-cpu.json`, and the run records in `records/CONFIG/repN.json`), the medians of the
//! repeats: what was sent, the generator's and receiver's rates, loss, the drops counters
//! explain, the unexplained rest (summed: any is a failure), and the host CPU per delivered
//! packet, all of it and the run's own processes' and ksoftirqd's.
//!
//! The median here is the lower middle value (the one at `(n − 1) / 2` of the sorted values),
//! as this campaign's table has always been made: with 3 repeats it is the middle one.

use std::path::{Path, PathBuf};

use super::sorted_entries;
use crate::error::{Error, Result};
use crate::pipeline::conservation::ConservationFigures;
use crate::pipeline::host_cpu::HostCpuFigures;
use crate::record::RunRecord;

/// One configuration's row.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub config: String,
    /// Repeats with a conservation check.
    pub repeats: usize,
    pub sent: Option<f64>,
    pub gen_pps: Option<f64>,
    pub recv_pps: Option<f64>,
    pub loss_pct: Option<f64>,
    /// Drops a counter explains (frames).
    pub counted_drops: Option<f64>,
    /// Frames no counter explains, summed over the repeats.
    pub unexplained: i64,
    /// Host CPU the run caused per delivered packet, ns.
    pub host_ns_per_pkt: Option<f64>,
    /// The run's processes' and ksoftirqd's CPU per delivered packet, ns.
    pub ours_ns_per_pkt: Option<f64>,
}

/// The lower median: the value at `(n − 1) / 2` of the sorted values.
fn lower_median(mut v: Vec<f64>) -> Option<f64> {
    v.sort_by(f64::total_cmp);
    v.get(v.len().checked_sub(1)? / 2).copied()
}

fn ratio(a: f64, b: f64) -> Option<f64> {
    (b != 0.0).then(|| a / b)
}

/// The table of the campaign whose harness outputs are in `sets` and records in `records`.
pub fn pipeline_full(sets: &Path, records: &Path) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    for set in sorted_entries(sets)? {
        if !set.is_dir() {
            continue;
        }
        let Some(config) = set.file_name().and_then(|n| n.to_str()).map(str::to_string) else {
            continue;
        };
        if config.starts_with('.') {
            continue;
        }
        let reps: Vec<PathBuf> = sorted_entries(&set)?
            .into_iter()
            .filter(|p| {
                p.is_dir()
                    && p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("rep"))
            })
            .collect();
        let mut checks = Vec::new();
        for rep in &reps {
            let c = rep.join("conservation.json");
            if c.exists() {
                checks.push((
                    ConservationFigures::load(&c)?,
                    HostCpuFigures::load_with_unversioned(&rep.join("host-cpu.json"))?,
                ));
            }
        }
        let record_dir = records.join(&config);
        let mut recs = Vec::new();
        for f in sorted_entries(&record_dir)? {
            let is_rep = f
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("rep") && n.ends_with(".json"));
            if is_rep {
                recs.push((RunRecord::load(&f)?, f));
            }
        }
        let mut gen_pps = Vec::new();
        let mut recv_pps = Vec::new();
        for (r, path) in &recs {
            let p = path.as_path();
            let g = r.generator.as_ref();
            let sent = super::need(p, "generator.sent", g.and_then(|g| g.sent))?;
            let elapsed = super::need(p, "generator.elapsed_ns", g.and_then(|g| g.elapsed_ns))?;
            let received = super::need(
                p,
                "receiver.received",
                r.receiver.as_ref().and_then(|r| r.received),
            )?;
            let duration = super::need(p, "duration_ns", r.duration_ns)?;
            gen_pps.extend(ratio(sent as f64 * 1e9, elapsed as f64));
            recv_pps.extend(ratio(received as f64 * 1e9, duration as f64));
        }
        let per_packet = |f: &dyn Fn(&HostCpuFigures) -> i64| {
            lower_median(
                checks
                    .iter()
                    .filter_map(|(c, h)| ratio(f(h) as f64, c.data.received as f64))
                    .collect(),
            )
        };
        rows.push(Row {
            repeats: checks.len(),
            sent: lower_median(checks.iter().map(|(c, _)| c.data.sent as f64).collect()),
            gen_pps: lower_median(gen_pps),
            recv_pps: lower_median(recv_pps),
            loss_pct: lower_median(
                checks
                    .iter()
                    .filter_map(|(c, _)| ratio(c.data.lost as f64 * 100.0, c.data.sent as f64))
                    .collect(),
            ),
            counted_drops: lower_median(
                checks
                    .iter()
                    .map(|(c, _)| c.frames.explained_drops as f64)
                    .collect(),
            ),
            unexplained: checks.iter().map(|(c, _)| c.frames.unexplained).sum(),
            host_ns_per_pkt: per_packet(&|h| h.run_ns),
            ours_ns_per_pkt: per_packet(&|h| h.our_processes_ns + h.ksoftirqd_ns),
            config,
        });
    }
    if rows.is_empty() {
        return Err(Error::format(
            sets,
            "no sets: expected SETS/CONFIG/repN/conservation.json (pipeline-full-run.sh's sets/)",
        ));
    }
    Ok(rows)
}
