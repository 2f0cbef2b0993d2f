//! `scripts/scrape-cost.sh`: what a Prometheus scrape of mcrd's `/metrics` costs. From the
//! directory the script leaves (`OUT`):
//!
//! - `idle-scrapes.txt`: curl's `time_total size_download` (seconds, bytes) per scrape of an
//!   idle mcrd: the time per scrape ([`IdleScrapes`]);
//! - per run `COND-REP` of the traffic through one mcrd hop: `COND-REP.send.json` and
//!   `COND-REP.recv.json` (trafficgen's records), `COND-REP.stats-before.json` and
//!   `COND-REP.stats-after.json` (`mcrctl stats --json` around the run: the relay's drops) and,
//!   for a condition with a reader, `COND-REP.reads.txt` (seconds per read, one a line).
//!
//! Each run's loss, drops and one-way latency ([`Run`]), and per condition the medians over
//! its repeats and the readers' times ([`Condition`]).

use std::collections::BTreeMap;
use std::path::Path;

use relay::stats::report::{StatsReport, STATS_MINOR_VERSION, STATS_SCHEMA, STATS_VERSION};
use trafficgen::record::{
    RecvRecord, SendRecord, RECORD_MINOR_VERSION, RECORD_VERSION, RECV_SCHEMA, SEND_SCHEMA,
};

use super::{read_rows, read_samples, Tail};
use crate::error::{Error, Result};
use crate::medians::sorted_entries;
use crate::pipeline::read_contract;

/// The time per scrape of an idle mcrd.
#[derive(Debug, Clone, PartialEq)]
pub struct IdleScrapes {
    /// Milliseconds per scrape.
    pub ms: Tail,
    /// The first scrape's body, bytes.
    pub body_bytes: u64,
}

/// The receiver's one-way latency of a run, µs (the first stream's, as trafficgen reports it).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Latency {
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
}

/// One run of traffic through the hop.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    /// `none`, `scrape`, `stats`: who read the counters during it.
    pub condition: String,
    pub repeat: u32,
    /// The generator's `packets_sent`.
    pub sent: u64,
    /// The receiver's `totals.received`.
    pub received: u64,
    /// `sent − received`.
    pub lost: i64,
    /// Frames mcrd's packet ring or copy path dropped during the run: the rise of
    /// `totals.kernel_drops + totals.rx_overflow_frames`.
    pub relay_drops: i64,
    /// The receiver's `socket_drops`.
    pub socket_drops: u64,
    /// None when the receiver saw no stream.
    pub latency: Option<Latency>,
    /// Reads (scrapes or `mcrctl stats`) made during it.
    pub reads: usize,
}

/// One condition over its repeats: medians of the runs' figures, and the readers' times.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub name: String,
    pub runs: usize,
    pub lost: f64,
    pub relay_drops: f64,
    /// Medians of the runs' percentiles (none when no run saw a stream).
    pub latency: Option<Latency>,
    pub reads_per_run: f64,
    /// Milliseconds per read, over every read of every run; none without a reader.
    pub read_ms: Option<Tail>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ScrapeCost {
    /// None when the directory has no `idle-scrapes.txt`.
    pub idle: Option<IdleScrapes>,
    /// By repeat, then condition name.
    pub runs: Vec<Run>,
    /// By name.
    pub conditions: Vec<Condition>,
}

/// `COND-REP.recv.json` as (COND, REP).
fn run_name(file: &str) -> Option<(&str, u32)> {
    let (cond, rep) = file.strip_suffix(".recv.json")?.rsplit_once('-')?;
    let rep = rep.parse().ok()?;
    (!cond.is_empty()).then_some((cond, rep))
}

fn drops(s: &StatsReport) -> i64 {
    (s.totals.kernel_drops + s.totals.rx_overflow_frames) as i64
}

fn stats(path: &Path) -> Result<StatsReport> {
    read_contract(path, STATS_SCHEMA, STATS_VERSION, STATS_MINOR_VERSION)
}

fn run(dir: &Path, condition: &str, repeat: u32) -> Result<(Run, Vec<f64>)> {
    let file = |what: &str| dir.join(format!("{condition}-{repeat}.{what}"));
    let send: SendRecord = read_contract(
        &file("send.json"),
        SEND_SCHEMA,
        RECORD_VERSION,
        RECORD_MINOR_VERSION,
    )?;
    let recv: RecvRecord = read_contract(
        &file("recv.json"),
        RECV_SCHEMA,
        RECORD_VERSION,
        RECORD_MINOR_VERSION,
    )?;
    let before = stats(&file("stats-before.json"))?;
    let after = stats(&file("stats-after.json"))?;
    let reads_file = file("reads.txt");
    let reads = if reads_file.exists() {
        read_samples(&reads_file)?
    } else {
        Vec::new()
    };
    let us = |ns: u64| ns as f64 / 1000.0;
    let run = Run {
        condition: condition.to_string(),
        repeat,
        sent: send.packets_sent,
        received: recv.totals.received,
        lost: send.packets_sent as i64 - recv.totals.received as i64,
        relay_drops: drops(&after) - drops(&before),
        socket_drops: recv.socket_drops,
        latency: recv.streams.first().map(|s| Latency {
            p50_us: us(s.latency_ns.p50),
            p99_us: us(s.latency_ns.p99),
            p999_us: us(s.latency_ns.p999),
            max_us: us(s.latency_ns.max),
        }),
        reads: reads.len(),
    };
    Ok((run, reads))
}

fn median(v: impl Iterator<Item = f64>) -> f64 {
    crate::stats::median(&v.collect::<Vec<_>>())
}

fn condition(name: &str, runs: &[&Run], reads: &[f64]) -> Condition {
    let lat: Vec<Latency> = runs.iter().filter_map(|r| r.latency).collect();
    let lat_median = |f: fn(&Latency) -> f64| median(lat.iter().map(f));
    Condition {
        name: name.to_string(),
        runs: runs.len(),
        lost: median(runs.iter().map(|r| r.lost as f64)),
        relay_drops: median(runs.iter().map(|r| r.relay_drops as f64)),
        latency: (!lat.is_empty()).then(|| Latency {
            p50_us: lat_median(|l| l.p50_us),
            p99_us: lat_median(|l| l.p99_us),
            p999_us: lat_median(|l| l.p999_us),
            max_us: lat_median(|l| l.max_us),
        }),
        reads_per_run: median(runs.iter().map(|r| r.reads as f64)),
        read_ms: Tail::of(reads).map(|t| t.scaled(1000.0)),
    }
}

/// Everything the script's directory `dir` holds.
pub fn scrape_cost(dir: &Path) -> Result<ScrapeCost> {
    let idle_file = dir.join("idle-scrapes.txt");
    let idle = if idle_file.exists() {
        let rows = read_rows(&idle_file, 2)?;
        let times: Vec<f64> = rows.iter().map(|r| r[0]).collect();
        Tail::of(&times).map(|t| IdleScrapes {
            ms: t.scaled(1000.0),
            body_bytes: rows[0][1] as u64,
        })
    } else {
        None
    };
    let mut names: Vec<(u32, String)> = Vec::new();
    for p in sorted_entries(dir)? {
        let Some(file) = p.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if !file.ends_with(".recv.json") {
            continue;
        }
        let (cond, rep) = run_name(file).ok_or_else(|| {
            Error::format(&p, "a run's receiver record is named COND-REP.recv.json")
        })?;
        names.push((rep, cond.to_string()));
    }
    names.sort();
    if names.is_empty() && idle.is_none() {
        return Err(Error::format(
            dir,
            "nothing measured: no idle-scrapes.txt and no COND-REP.recv.json (scrape-cost.sh's OUT)",
        ));
    }
    let mut runs = Vec::new();
    let mut reads: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for (rep, cond) in &names {
        let (r, t) = run(dir, cond, *rep)?;
        reads.entry(cond.clone()).or_default().extend(t);
        runs.push(r);
    }
    let conditions = reads
        .iter()
        .map(|(name, t)| {
            let of: Vec<&Run> = runs.iter().filter(|r| &r.condition == name).collect();
            condition(name, &of, t)
        })
        .collect();
    Ok(ScrapeCost {
        idle,
        runs,
        conditions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_names_split_at_the_last_dash() {
        assert_eq!(run_name("none-1.recv.json"), Some(("none", 1)));
        assert_eq!(run_name("my-reader-12.recv.json"), Some(("my-reader", 12)));
        assert_eq!(run_name("none.recv.json"), None);
        assert_eq!(run_name("-1.recv.json"), None);
        assert_eq!(run_name("none-x.recv.json"), None);
    }

    #[test]
    fn a_condition_takes_the_median_of_its_runs() {
        let r = |lost, reads| Run {
            condition: "scrape".into(),
            repeat: 1,
            sent: 300_000,
            received: 300_000 - lost as u64,
            lost,
            relay_drops: 0,
            socket_drops: 0,
            latency: None,
            reads,
        };
        let runs = [r(0, 300), r(1998, 300), r(0, 299), r(2, 301)];
        let c = condition("scrape", &runs.iter().collect::<Vec<_>>(), &[0.001, 0.002]);
        // An even count: the mean of the middle two, where jq took the lower one.
        assert_eq!(c.lost, 1.0);
        assert_eq!(c.reads_per_run, 300.0);
        assert_eq!(c.latency, None);
        assert_eq!(c.read_ms.unwrap().samples, 2);
        assert!((c.read_ms.unwrap().median - 1.5).abs() < 1e-12);
    }
}
