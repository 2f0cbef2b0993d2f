//! The trend report: change points over the nightly runs.

use std::fmt::Write;

use super::{escape_cell, Chart};
use crate::render::fmt::{change, value};
use crate::trend::TrendReport;

/// The trend report.
pub fn trend(t: &TrendReport, charts: &[Chart]) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "# Trend: {} runs, {} → {}\n",
        t.runs.len(),
        escape_cell(t.runs.first().map_or("", String::as_str)),
        escape_cell(t.runs.last().map_or("", String::as_str))
    );
    let regressed: Vec<&str> = t
        .series
        .iter()
        .filter(|s| s.newest_regressed)
        .map(|s| s.metric.label.as_str())
        .collect();
    if regressed.is_empty() {
        let _ = writeln!(
            o,
            "**Status:** the newest run is not in a regressed segment\n"
        );
    } else {
        let _ = writeln!(
            o,
            "**Status:** **REGRESSION**: the newest run sits in a regressed segment of {}\n",
            regressed.join(", ")
        );
    }
    let _ = writeln!(o, "| Metric | Runs | Newest | Change points (first run of the new segment) | Newest segment vs the one before | Status |");
    let _ = writeln!(o, "|--------|---:|---:|---|---:|---|");
    for s in &t.series {
        let newest = s
            .values
            .last()
            .map_or("—".into(), |v| value(s.metric.unit, *v));
        let cps: Vec<String> = s
            .segments
            .iter()
            .skip(1)
            .map(|seg| {
                format!(
                    "{} ({} → {})",
                    escape_cell(&t.runs[s.run_index[seg.start]]),
                    value(s.metric.unit, seg.prev_mean.unwrap_or(f64::NAN)),
                    value(s.metric.unit, seg.mean)
                )
            })
            .collect();
        let last_change = s
            .last_change
            .map_or("—".into(), |c| change(s.metric.unit, c));
        let status = if s.newest_regressed {
            "❌ regressed"
        } else if s.newest_improved {
            "✅ improved"
        } else if s.segments.len() > 1 {
            "≈ stable since last change"
        } else {
            "≈ no change point"
        };
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} | {} |",
            escape_cell(&s.metric.label),
            s.values.len(),
            newest,
            if cps.is_empty() {
                "none".into()
            } else {
                cps.join("; ")
            },
            last_change,
            status
        );
    }
    let _ = writeln!(
        o,
        "\nChange points: E-divisive means (energy statistic, binary segmentation) with a permutation test at α = {} ({} permutations, fixed seed), kept only where the segment means differ by at least {}% ({} pp for metrics that are percentages). A regressed segment is one worse than the segment before it by that much.\n",
        t.settings.alpha, t.settings.permutations, t.settings.min_effect_pct, t.settings.min_effect_pp
    );
    for c in charts {
        let _ = writeln!(o, "![{}]({})\n", c.title, c.path);
    }
    let _ = writeln!(o, "## Runs\n");
    for (i, r) in t.runs.iter().enumerate() {
        let _ = writeln!(o, "{}. {} `{}`", i + 1, escape_cell(r), t.paths[i]);
    }
    o
}
