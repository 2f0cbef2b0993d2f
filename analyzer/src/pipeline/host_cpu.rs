//! The host CPU a run caused, from two host snapshots (`pl_snap_host` in
//! `scripts/lib/pl_counters.sh`, before and after the traffic), as `mcr.pipeline.host_cpu` v1
//! (read by `analyzer ingest --host`; `scripts/README.md` explains the method).
//!
//!   run = host busy − others
//!   host busy = Δwall × CPUs − Δ(idle + iowait + steal)
//!
//! Busy time is what the CPUs were not idle. The idle and iowait columns of `/proc/stat` are
//! exact (NO_HZ idle accounting), but user/system/softirq are sampled at the tick: a workload
//! that sleeps and wakes many times per tick (a paced sender, a relay woken per packet) is
//! mostly missed by them (a 15 s run here: 0.39 s by the ticks, 9.9 s by the idle time), so
//! they are reported but not used.
//!
//! Others: every process alive at the end that is neither in the root process's tree nor a
//! `ksoftirqd/N` thread, by its Δ(utime + stime + cutime + cstime) if it was alive at the start
//! (same start time), else all of it (it started inside the window); less, for every process
//! alive at the start that exited inside the window outside the root's tree, what it had used
//! by the start (its reaper's cutime/cstime rise holds its whole life, of which only the part
//! inside the window is the others' load). ksoftirqd threads are not subtracted: on veth the
//! receiving side's packet processing is softirq work, and deferred it runs there. Their time
//! is reported on its own.
//!
//! The snapshot, one line each (all counts in USER_HZ ticks):
//! ```text
//! uptime SECONDS
//! stat user nice system idle iowait irq softirq steal
//! ncpu N
//! softnet_dropped N
//! proc PID PPID STARTTIME UTIME STIME CUTIME CSTIME COMM
//! ```

use std::collections::HashMap;
use std::path::Path;

use serde::Serialize;

use crate::error::{Error, Result};

pub const SCHEMA: &str = "mcr.pipeline.host_cpu";
pub const VERSION: u32 = 1;
/// How the host CPU is measured, as the run record's `host_cpu.method` says it.
pub const METHOD: &str = "host busy (wall x CPUs - idle - iowait - steal, /proc/stat) minus other processes (/proc/PID/stat); scripts/README.md";
/// How far up a process's ancestry is followed: deeper than any real process tree, and a bound
/// on a snapshot whose parent links loop.
const MAX_ANCESTRY: usize = 4096;

/// One process of a snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct Process {
    pub pid: u32,
    pub ppid: u32,
    /// Start time since boot, ticks: with the pid, the process's identity.
    pub start: u64,
    /// utime + stime + cutime + cstime, ticks.
    pub ticks: u64,
    pub comm: String,
}

/// One host snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub uptime_s: f64,
    /// user nice system idle iowait irq softirq steal, ticks.
    pub stat: [u64; 8],
    pub ncpu: u32,
    pub softnet_dropped: u64,
    /// In the order listed.
    pub procs: Vec<Process>,
}

const USER: usize = 0;
const NICE: usize = 1;
const SYSTEM: usize = 2;
const IDLE: usize = 3;
const IOWAIT: usize = 4;
const IRQ: usize = 5;
const SOFTIRQ: usize = 6;
const STEAL: usize = 7;

impl Snapshot {
    /// Reads a snapshot file; an unreadable or missing line is an error naming the file and
    /// the line.
    pub fn load(path: &Path) -> Result<Snapshot> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        // A process name is whatever bytes it set; the document writes it as text.
        Snapshot::parse(path, &String::from_utf8_lossy(&bytes))
    }

    pub fn parse(path: &Path, text: &str) -> Result<Snapshot> {
        let (mut uptime, mut stat, mut ncpu, mut softnet) = (None, None, None, None);
        let mut procs = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let field = || format!("line {}", i + 1);
            let bad = |what: &str| Error::field(path, field(), format!("{what}: {line:?}"));
            let mut w = line.split_whitespace();
            let num = |s: Option<&str>| s.and_then(|s| s.parse::<u64>().ok());
            match w.next() {
                Some("uptime") => {
                    uptime = Some(
                        w.next()
                            .and_then(|s| s.parse::<f64>().ok())
                            .filter(|x| x.is_finite())
                            .ok_or_else(|| bad("expected `uptime SECONDS`"))?,
                    )
                }
                Some("stat") => {
                    let mut v = [0u64; 8];
                    for x in &mut v {
                        *x = num(w.next())
                            .ok_or_else(|| bad("expected `stat` and 8 tick counts"))?;
                    }
                    stat = Some(v);
                }
                Some("ncpu") => {
                    ncpu = Some(
                        num(w.next())
                            .and_then(|n| u32::try_from(n).ok())
                            .filter(|&n| n > 0)
                            .ok_or_else(|| bad("expected `ncpu N`, N > 0"))?,
                    )
                }
                Some("softnet_dropped") => {
                    softnet =
                        Some(num(w.next()).ok_or_else(|| bad("expected `softnet_dropped N`"))?)
                }
                Some("proc") => {
                    let mut n = [0u64; 7];
                    for x in &mut n {
                        *x = num(w.next()).ok_or_else(|| {
                            bad("expected `proc PID PPID STARTTIME UTIME STIME CUTIME CSTIME COMM`")
                        })?;
                    }
                    let comm = w.next().ok_or_else(|| bad("a process without its name"))?;
                    let id = |x: u64| u32::try_from(x).map_err(|_| bad("a pid above 2^32"));
                    procs.push(Process {
                        pid: id(n[0])?,
                        ppid: id(n[1])?,
                        start: n[2],
                        ticks: n[3] + n[4] + n[5] + n[6],
                        comm: comm.to_string(),
                    });
                }
                None => {}
                Some(_) => return Err(bad("not a snapshot line")),
            }
        }
        let missing = |what: &str| {
            Error::format(
                path,
                format!("no `{what}` line: not a complete host snapshot (pl_snap_host)"),
            )
        };
        Ok(Snapshot {
            uptime_s: uptime.ok_or_else(|| missing("uptime"))?,
            stat: stat.ok_or_else(|| missing("stat"))?,
            ncpu: ncpu.ok_or_else(|| missing("ncpu"))?,
            softnet_dropped: softnet.ok_or_else(|| missing("softnet_dropped"))?,
            procs,
        })
    }
}

/// A process outside the run that used CPU in the window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Other {
    pub pid: u32,
    pub comm: String,
    pub ticks: u64,
}

/// The host CPU document. Times in ns.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HostCpu {
    pub schema: &'static str,
    pub version: u32,
    pub method: &'static str,
    pub clk_tck: u32,
    pub cpus: u32,
    pub window_ns: i64,
    pub host_busy_ns: i64,
    /// Busy by the sampled columns (user, nice, system, irq, softirq): reported, not used.
    pub host_busy_ticks_ns: i64,
    pub host_user_ns: i64,
    pub host_system_ns: i64,
    pub host_irq_ns: i64,
    pub host_softirq_ns: i64,
    pub exited_before_window_ns: i64,
    pub other_processes_ns: i64,
    pub our_processes_ns: i64,
    pub ksoftirqd_ns: i64,
    pub run_ns: i64,
    pub softnet_dropped_host: i64,
    /// In the order of the after snapshot.
    pub other_processes: Vec<Other>,
}

/// The figures of a host CPU document the run's summary prints, read back from the file.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct HostCpuFigures {
    pub run_ns: i64,
    pub window_ns: i64,
    pub host_busy_ns: i64,
    pub other_processes_ns: i64,
    pub our_processes_ns: i64,
    pub ksoftirqd_ns: i64,
}

impl HostCpuFigures {
    /// Reads them from a `mcr.pipeline.host_cpu` document, naming the file and a missing field.
    pub fn load(path: &Path) -> Result<Self> {
        Self::read(path, false)
    }

    /// As [`HostCpuFigures::load`], also taking the documents the harness wrote before they
    /// had `schema` and `version` (the same fields; `reports/pipeline/full/` holds such).
    pub fn load_with_unversioned(path: &Path) -> Result<Self> {
        Self::read(path, true)
    }

    fn read(path: &Path, unversioned: bool) -> Result<Self> {
        let text = crate::error::read_nonempty(path)?;
        let doc: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| Error::format(path, format!("not valid JSON: {e}")))?;
        if !(unversioned && doc.get("schema").is_none() && doc.get("version").is_none()) {
            crate::record::check_schema(path, &doc, SCHEMA, VERSION)?;
        }
        crate::error::from_json(path, &text)
    }
}

/// Whether `q`, or an ancestor of it alive at the end, is `root`.
fn in_root_tree(ppid: &HashMap<u32, u32>, root: u32, mut q: u32) -> bool {
    for _ in 0..MAX_ANCESTRY {
        if q <= 1 {
            return false;
        }
        if q == root {
            return true;
        }
        match ppid.get(&q) {
            Some(&p) => q = p,
            None => return false,
        }
    }
    false
}

/// The host CPU the run caused between `before` and `after`; `root` is the harness's pid (its
/// process tree is the run), `clk_tck` the ticks per second of `/proc`.
pub fn host_cpu(before: &Snapshot, after: &Snapshot, root: u32, clk_tck: u32) -> HostCpu {
    let hz = f64::from(clk_tck);
    let d = |i: usize| after.stat[i] as f64 - before.stat[i] as f64;
    let ticks_busy = d(USER) + d(NICE) + d(SYSTEM) + d(IRQ) + d(SOFTIRQ);
    let wall = after.uptime_s - before.uptime_s;
    let busy = (wall * hz * f64::from(after.ncpu) - (d(IDLE) + d(IOWAIT) + d(STEAL))).max(0.0);

    let before_by_id: HashMap<(u32, u64), &Process> =
        before.procs.iter().map(|p| ((p.pid, p.start), p)).collect();
    let after_ids: std::collections::HashSet<(u32, u64)> =
        after.procs.iter().map(|p| (p.pid, p.start)).collect();
    let ppid: HashMap<u32, u32> = after.procs.iter().map(|p| (p.pid, p.ppid)).collect();
    let bppid: HashMap<u32, u32> = before.procs.iter().map(|p| (p.pid, p.ppid)).collect();

    let (mut ours, mut ksoft, mut others, mut exited) = (0.0, 0.0, 0.0, 0.0);
    let mut top = Vec::new();
    for p in &after.procs {
        let used = match before_by_id.get(&(p.pid, p.start)) {
            Some(b) => p.ticks.saturating_sub(b.ticks),
            None => p.ticks,
        };
        if in_root_tree(&ppid, root, p.pid) {
            ours += used as f64;
        } else if p.comm.starts_with("ksoftirqd/") {
            ksoft += used as f64;
        } else {
            others += used as f64;
            if used > 0 {
                top.push(Other {
                    pid: p.pid,
                    comm: p.comm.clone(),
                    ticks: used,
                });
            }
        }
    }
    // Exited inside the window: walk up to the nearest ancestor still alive at the end.
    for b in &before.procs {
        if after_ids.contains(&(b.pid, b.start)) {
            continue;
        }
        let mut q = bppid.get(&b.pid).copied().unwrap_or(0);
        for _ in 0..MAX_ANCESTRY {
            if q <= 1 || ppid.contains_key(&q) {
                break;
            }
            match bppid.get(&q) {
                Some(&p) => q = p,
                None => break,
            }
        }
        if !in_root_tree(&ppid, root, q) {
            others -= b.ticks as f64;
            exited += b.ticks as f64;
        }
    }
    // Process ticks are sampled; subtracting what exited processes had used by the start can
    // overshoot, and a negative load of others is no load.
    let others = others.max(0.0);
    let run = (busy - others).max(0.0);
    let t = 1e9 / hz;
    let ns = |x: f64| (x * t).round_ties_even() as i64;
    HostCpu {
        schema: SCHEMA,
        version: VERSION,
        method: METHOD,
        clk_tck,
        cpus: after.ncpu,
        window_ns: (wall * 1e9).round_ties_even() as i64,
        host_busy_ns: ns(busy),
        host_busy_ticks_ns: ns(ticks_busy),
        host_user_ns: ns(d(USER) + d(NICE)),
        host_system_ns: ns(d(SYSTEM)),
        host_irq_ns: ns(d(IRQ)),
        host_softirq_ns: ns(d(SOFTIRQ)),
        exited_before_window_ns: ns(exited),
        other_processes_ns: ns(others),
        our_processes_ns: ns(ours),
        ksoftirqd_ns: ns(ksoft),
        run_ns: ns(run),
        softnet_dropped_host: after.softnet_dropped as i64 - before.softnet_dropped as i64,
        other_processes: top,
    }
}

/// The document as the harness writes it: one line of JSON.
pub fn to_line(h: &HostCpu) -> String {
    let mut s = serde_json::to_string(h).expect("plain data serializes");
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(text: &str) -> Snapshot {
        Snapshot::parse(Path::new("snap.txt"), text).unwrap()
    }

    #[test]
    fn others_are_subtracted_and_ours_are_not() {
        // 2 CPUs, 10 s: 2000 ticks of wall, 1500 idle → 500 busy; root 100 (child 101) used
        // 200; ksoftirqd 50; another process 100 (alive throughout) and one started inside
        // the window 30.
        let before = snap(
            "uptime 100.00\nstat 0 0 0 1000 0 0 0 0\nncpu 2\nsoftnet_dropped 5\n\
             proc 100 1 10 0 0 0 0 harness\nproc 101 100 11 0 0 0 0 mcrd\n\
             proc 9 2 1 0 0 0 0 ksoftirqd/0\nproc 200 1 5 100 0 0 0 other\n",
        );
        let after = snap(
            "uptime 110.00\nstat 300 0 200 2500 0 0 0 0\nncpu 2\nsoftnet_dropped 7\n\
             proc 100 1 10 50 0 0 0 harness\nproc 101 100 11 100 50 0 0 mcrd\n\
             proc 9 2 1 50 0 0 0 ksoftirqd/0\nproc 200 1 5 200 0 0 0 other\n\
             proc 300 1 500 20 10 0 0 late\n",
        );
        let h = host_cpu(&before, &after, 100, 100);
        assert_eq!(h.window_ns, 10_000_000_000);
        assert_eq!(h.host_busy_ns, 5_000_000_000);
        assert_eq!(h.our_processes_ns, 2_000_000_000);
        assert_eq!(h.ksoftirqd_ns, 500_000_000);
        assert_eq!(h.other_processes_ns, 1_300_000_000);
        assert_eq!(h.run_ns, 3_700_000_000);
        assert_eq!(h.softnet_dropped_host, 2);
        assert_eq!(
            h.other_processes,
            [
                Other {
                    pid: 200,
                    comm: "other".into(),
                    ticks: 100
                },
                Other {
                    pid: 300,
                    comm: "late".into(),
                    ticks: 30
                }
            ]
        );
    }

    #[test]
    fn a_process_that_exited_outside_the_run_takes_its_start_off_the_others() {
        let before = snap(
            "uptime 0\nstat 0 0 0 0 0 0 0 0\nncpu 1\nsoftnet_dropped 0\n\
             proc 50 1 1 0 0 0 0 shell\nproc 51 50 2 40 0 0 0 job\n",
        );
        let after = snap(
            "uptime 1\nstat 0 0 0 0 0 0 0 0\nncpu 1\nsoftnet_dropped 0\n\
             proc 50 1 1 0 0 60 0 shell\n",
        );
        let h = host_cpu(&before, &after, 999, 100);
        // The shell's cutime rose by 60, of which 40 were used before the window.
        assert_eq!(h.other_processes_ns, 200_000_000);
        assert_eq!(h.exited_before_window_ns, 400_000_000);
    }

    #[test]
    fn a_bad_line_is_named() {
        let e = Snapshot::parse(Path::new("host-before.txt"), "uptime 1\nstat 1 2\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("host-before.txt: field `line 2`"), "{e}");
        let e = Snapshot::parse(Path::new("h.txt"), "uptime 1\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("no `stat` line"), "{e}");
    }

    #[test]
    fn a_name_with_quotes_stays_valid_json() {
        let s = snap("uptime 0\nstat 0 0 0 0 0 0 0 0\nncpu 1\nsoftnet_dropped 0\n");
        let after = snap(
            "uptime 1\nstat 0 0 0 0 0 0 0 0\nncpu 1\nsoftnet_dropped 0\nproc 7 1 3 5 0 0 0 a\"b\\c\n",
        );
        let line = to_line(&host_cpu(&s, &after, 1000, 100));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["other_processes"][0]["comm"], "a\"b\\c");
    }
}
