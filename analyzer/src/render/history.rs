//! `history show` as Markdown and CSV: one row per day of one metric at one hop of one relay,
//! aggregated over that day's repeats.

use std::fmt::Write;

use super::fmt::{pps, value};
use super::markdown::escape_cell as cell;
use crate::history::{Query, Slice};

fn describe(q: &Query) -> String {
    let mut parts = Vec::new();
    if !q.metrics.is_empty() {
        parts.push(format!("metric {}", q.metrics.join(" or ")));
    }
    if let Some(h) = q.hop {
        parts.push(format!("hop {h}"));
    }
    if let Some(r) = &q.relay {
        parts.push(format!("relay {r}"));
    }
    if let Some(t) = q.target_pps {
        parts.push(format!("target {}", pps(t)));
    }
    match (&q.from, &q.to) {
        (Some(f), Some(t)) => parts.push(format!("{f} to {t}")),
        (Some(f), None) => parts.push(format!("from {f}")),
        (None, Some(t)) => parts.push(format!("up to {t}")),
        (None, None) => {}
    }
    if parts.is_empty() {
        "everything".into()
    } else {
        parts.join(", ")
    }
}

/// The Markdown report: per slice, a table of days.
pub fn markdown(slices: &[Slice], q: &Query, png: Option<&str>) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "# History: {}\n", describe(q));
    if slices.is_empty() {
        let _ = writeln!(o, "No row of the history matches.");
        return o;
    }
    let _ = writeln!(
        o,
        "Each row aggregates the runs of one day (repeats): their count, median, 10th and 90th percentiles (linear interpolation), minimum and maximum.\n"
    );
    if let Some(p) = png {
        let _ = writeln!(o, "![History]({p})\n");
    }
    for s in slices {
        let relay = if s.relay.is_empty() {
            "relay not recorded"
        } else {
            &s.relay
        };
        let target = s
            .target_pps
            .map(|t| format!(", target {}", pps(t)))
            .unwrap_or_default();
        let _ = writeln!(o, "## {} ({relay}{target})\n", cell(&s.label));
        let _ = writeln!(o, "| Day | Runs | Median | p10 | p90 | Min | Max |");
        let _ = writeln!(o, "|-----|---:|---:|---:|---:|---:|---:|");
        for p in &s.points {
            let v = |x: f64| value(s.unit, x);
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} | {} | {} |",
                cell(&p.day),
                p.runs,
                v(p.median),
                v(p.p10),
                v(p.p90),
                v(p.min),
                v(p.max)
            );
        }
        o.push('\n');
    }
    o
}

/// Quotes a CSV field when it holds a comma, a quote or a line break (RFC 4180).
fn field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The same rows as CSV, with full-precision numbers.
pub fn csv(slices: &[Slice]) -> String {
    let mut o = String::from("metric,label,hop,relay,target_pps,day,runs,median,p10,p90,min,max\n");
    for s in slices {
        for p in &s.points {
            let _ = writeln!(
                o,
                "{},{},{},{},{},{},{},{},{},{},{},{}",
                field(&s.metric),
                field(&s.label),
                s.hop,
                field(&s.relay),
                s.target_pps.map(|t| t.to_string()).unwrap_or_default(),
                field(&p.day),
                p.runs,
                p.median,
                p.p10,
                p.p90,
                p.min,
                p.max
            );
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Point;
    use crate::metrics::Unit;

    fn slice(label: &str, relay: &str) -> Slice {
        Slice {
            metric: "tx_pps".into(),
            label: label.into(),
            unit: Unit::Pps,
            hop: 1,
            relay: relay.into(),
            target_pps: Some(20_000.0),
            points: vec![Point {
                day: "2026-11-01".into(),
                runs: 3,
                median: 19_000.0,
                p10: 18_200.0,
                p90: 19_800.0,
                min: 18_000.0,
                max: 20_000.0,
            }],
        }
    }

    #[test]
    fn cells_and_fields_are_escaped() {
        let s = [slice("A | B", "mcr, patched \"x\"")];
        let md = markdown(&s, &Query::default(), None);
        assert!(md.contains("## A \\| B"), "{md}");
        assert!(
            md.contains("| 2026-11-01 | 3 | 19k pps | 18k pps | 20k pps | 18k pps | 20k pps |"),
            "{md}"
        );
        let c = csv(&s);
        assert!(
            c.contains(
                ",\"mcr, patched \"\"x\"\"\",20000,2026-11-01,3,19000,18200,19800,18000,20000"
            ),
            "{c}"
        );
    }

    #[test]
    fn no_match_says_so() {
        assert!(markdown(&[], &Query::default(), None).contains("No row of the history matches"));
    }
}
