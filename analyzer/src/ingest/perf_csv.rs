//! `perf stat -x,` output: one counter per line, `value,unit,event,run-time,percent,...`.
//!
//! `<not supported>` and `<not counted>` become [`Measured::Unavailable`] (never 0). Times in
//! `msec` become nanoseconds and get a `_ns` suffix, so `task-clock` is read as `task_clock_ns`.
//! Lines starting with `#` and blank lines are skipped; interval mode (`-I`) is not read.

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::{Error, Result};
use crate::record::Measured;

/// Counters by normalised event name (`task_clock_ns`, `context_switches`, `cycles`, ...).
pub type PerfCounters = BTreeMap<String, Measured>;

/// Parses the CSV text of `path`.
pub fn parse(path: &Path, text: &str) -> Result<PerfCounters> {
    let mut out = PerfCounters::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split(',').collect();
        if fields.len() < 3 || fields[2].trim().is_empty() {
            return Err(Error::field(
                path,
                format!("line {}", i + 1),
                format!("\"{line}\" is not a `perf stat -x,` line (value,unit,event,...)"),
            ));
        }
        let (raw, unit, event) = (fields[0].trim(), fields[1].trim(), fields[2].trim());
        let (key, scale) = key_and_scale(event, unit).ok_or_else(|| {
            Error::field(
                path,
                event,
                format!("unit \"{unit}\" is not one we read (msec, ns or none)"),
            )
        })?;
        let value = if raw.starts_with("<not") {
            Measured::Unavailable
        } else {
            let x: f64 = raw
                .parse()
                .ok()
                .filter(|x: &f64| x.is_finite() && *x >= 0.0)
                .ok_or_else(|| {
                    Error::field(
                        path,
                        format!("{event} (line {})", i + 1),
                        format!("\"{raw}\" is not a count"),
                    )
                })?;
            Measured::Count((x * scale).round() as u64)
        };
        // The same event twice (e.g. per CPU with -A) is a sum.
        out.entry(key)
            .and_modify(|v: &mut Measured| *v = v.plus(value))
            .or_insert(value);
    }
    if out.is_empty() {
        return Err(Error::format(path, "no perf counters found"));
    }
    Ok(out)
}

/// Normalised key and the factor that turns the printed value into the key's unit.
fn key_and_scale(event: &str, unit: &str) -> Option<(String, f64)> {
    let base = event.split(':').next().unwrap_or(event);
    let name = match base {
        "cs" => "context-switches",
        "migrations" => "cpu-migrations",
        "faults" => "page-faults",
        "cpu-cycles" => "cycles",
        other => other,
    }
    .replace(['-', '/', '.'], "_");
    match unit {
        "msec" | "ms" => Some((format!("{name}_ns"), 1e6)),
        "usec" | "us" => Some((format!("{name}_ns"), 1e3)),
        "ns" => Some((format!("{name}_ns"), 1.0)),
        "" => Some((name, 1.0)),
        _ => None,
    }
}

/// True when `text` looks like `perf stat -x,` output (used to detect the input format).
pub fn looks_like(text: &str) -> bool {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .is_some_and(|l| {
            let f: Vec<&str> = l.split(',').collect();
            f.len() >= 4
                && (f[0].trim().parse::<f64>().is_ok() || f[0].starts_with("<not"))
                && !f[2].trim().is_empty()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "# started on Mon Nov 23\n\n\
        1234.56,msec,task-clock,1234560000,100.00,0.998,CPUs utilized\n\
        42,,context-switches,1234560000,100.00,34.0,/sec\n\
        0,,cpu-migrations,1234560000,100.00,0.000,/sec\n\
        <not supported>,,cycles,0,100.00,,\n\
        <not counted>,,instructions,0,0.00,,\n";

    #[test]
    fn reads_counters_and_keeps_unavailable_apart_from_zero() {
        let p = parse(Path::new("perf.csv"), SAMPLE).unwrap();
        assert_eq!(p["task_clock_ns"], Measured::Count(1_234_560_000));
        assert_eq!(p["context_switches"], Measured::Count(42));
        assert_eq!(p["cpu_migrations"], Measured::Count(0));
        assert_eq!(p["cycles"], Measured::Unavailable);
        assert_eq!(p["instructions"], Measured::Unavailable);
        assert!(looks_like(SAMPLE));
        assert!(!looks_like("recv=1,000 packets"));
    }

    #[test]
    fn bad_value_names_event_and_line() {
        let e = parse(Path::new("perf.csv"), "12x,,context-switches,1,100.00,,\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("perf.csv") && e.contains("context-switches (line 1)"),
            "{e}"
        );
    }

    #[test]
    fn empty_and_garbage_are_errors() {
        assert!(parse(Path::new("p"), "# nothing\n").is_err());
        assert!(parse(Path::new("p"), "hello\n").is_err());
    }
}
