//! The `process_*` families every official Prometheus client library exports, read from
//! `/proc/self` at each scrape: CPU seconds, resident memory, start time, open and maximum file
//! descriptors. They are the process's own (the scrape is served by mcrd), so they are added
//! by the endpoint, not by [`crate::stats::prometheus::render`], which `mcrctl` also runs on a
//! report it received from the daemon.

use std::fmt::Write as _;

/// What `/proc/self` says of the process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcessFacts {
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    pub start_time_seconds: f64,
    pub open_fds: u64,
    pub max_fds: Option<u64>,
}

/// The user and system CPU ticks and the start time in ticks after boot, from the text of
/// `/proc/PID/stat`. The command name (field 2) is in parentheses and may hold spaces and
/// parentheses itself, so the fields are counted after its last `)`.
pub fn parse_stat(stat: &str) -> Option<(u64, u64, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the name: field 3 (state) is f[0], utime (14) f[11], stime (15) f[12],
    // starttime (22) f[19].
    Some((
        f.get(11)?.parse().ok()?,
        f.get(12)?.parse().ok()?,
        f.get(19)?.parse().ok()?,
    ))
}

/// The boot time in seconds since the epoch (`btime` of `/proc/stat`).
pub fn parse_btime(proc_stat: &str) -> Option<u64> {
    proc_stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// The soft limit of open files from `/proc/PID/limits`; `None` for unlimited.
pub fn parse_max_fds(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Reads the facts of this process; `None` where `/proc` is not mounted or not readable.
pub fn read() -> Option<ProcessFacts> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let (utime, stime, start) = parse_stat(&stat)?;
    let ticks = crate::sys::clock_ticks_per_second() as f64;
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let resident_pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    let btime = parse_btime(&std::fs::read_to_string("/proc/stat").ok()?)?;
    let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
    let max_fds = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|l| parse_max_fds(&l));
    Some(ProcessFacts {
        cpu_seconds: (utime + stime) as f64 / ticks,
        resident_bytes: resident_pages * crate::sys::page_size(),
        start_time_seconds: btime as f64 + start as f64 / ticks,
        open_fds,
        max_fds,
    })
}

/// Appends the families to an exposition; nothing when `/proc` cannot be read (a missing
/// family, not a made-up zero).
pub fn render(out: &mut String) {
    let Some(p) = read() else { return };
    let mut family = |name: &str, kind: &str, help: &str, value: String| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    };
    family(
        "process_cpu_seconds_total",
        "counter",
        "Total user and system CPU time spent in seconds.",
        format!("{}", p.cpu_seconds),
    );
    family(
        "process_resident_memory_bytes",
        "gauge",
        "Resident memory size in bytes.",
        p.resident_bytes.to_string(),
    );
    family(
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since unix epoch in seconds.",
        format!("{}", p.start_time_seconds),
    );
    family(
        "process_open_fds",
        "gauge",
        "Number of open file descriptors.",
        p.open_fds.to_string(),
    );
    if let Some(max) = p.max_fds {
        family(
            "process_max_fds",
            "gauge",
            "Maximum number of open file descriptors.",
            max.to_string(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_last_parenthesis_of_the_name() {
        let stat = "4242 (mcr (x) y) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 3 0 123456 1000 200";
        assert_eq!(parse_stat(stat), Some((250, 75, 123456)));
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("1 (a) S 1"), None);
    }

    #[test]
    fn boot_time_and_the_open_files_limit_are_read() {
        assert_eq!(
            parse_btime("cpu  1 2 3\nbtime 1764800000\nprocesses 5\n"),
            Some(1764800000)
        );
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1024                 524288               files\n";
        assert_eq!(parse_max_fds(limits), Some(1024));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(parse_max_fds(unlimited), None);
    }

    #[test]
    fn this_process_s_facts_are_plausible_and_rendered() {
        let p = read().expect("/proc is readable here");
        assert!(p.open_fds >= 3, "{p:?}");
        assert!(p.resident_bytes > 1 << 20, "{p:?}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(
            p.start_time_seconds <= now + 1.0 && p.start_time_seconds > now - 86_400.0,
            "{p:?}"
        );
        let mut text = String::new();
        render(&mut text);
        for family in [
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_start_time_seconds",
            "process_open_fds",
        ] {
            assert!(
                text.contains(&format!("# TYPE {family} ")),
                "{family}: {text}"
            );
        }
    }
}
