//! The comparison report: runs against a baseline (and, with `--chain`, each against the one
//! before it).

use std::collections::BTreeMap;
use std::fmt::Write;

use super::waterfall::waterfall;
use super::{escape_cell, mark, table_head, verdict_text, Chart};
use crate::compare::{
    caveat, survivors_loss, Comparison, Decision, Row, Verdict, SURVIVORS_LOSS_PCT,
};
use crate::metrics::{self, Denominator, Origin};
use crate::record::{HostCpu, Measured, ProcessCpu, Source};
use crate::render::fmt::{change, count, seconds, value};
use crate::render::sentences::{key_result, not_judged};

/// The comparison report.
pub fn comparison(cmp: &Comparison, charts: &[Chart]) -> String {
    let mut o = String::new();
    let runs = &cmp.names[1..];
    let _ = writeln!(o, "# Comparison: {} vs {}\n", runs.join(", "), cmp.names[0]);
    let samples = |i: usize| {
        let n = cmp.sizes[i];
        format!("{} sample{}", n, if n == 1 { "" } else { "s" })
    };
    let _ = writeln!(o, "**Baseline:** {}, {}  ", cmp.labels[0], samples(0));
    let run_list: Vec<String> = (1..cmp.labels.len())
        .map(|i| format!("{}, {}", cmp.labels[i], samples(i)))
        .collect();
    let _ = writeln!(o, "**Runs:** {}  ", run_list.join("; "));
    let regressed: Vec<String> = cmp
        .pairs
        .iter()
        .enumerate()
        .flat_map(|(i, p)| {
            let against = if p.against_baseline() {
                String::new()
            } else {
                format!(" against {}", cmp.names[p.base])
            };
            cmp.rows
                .iter()
                .filter(move |r| r.judgements[i].is_some_and(|j| j.verdict == Verdict::Regressed))
                .map(move |r| {
                    let survivors = match caveat(cmp, r, i) {
                        Some(c) => format!(" ({c})"),
                        None => String::new(),
                    };
                    format!(
                        "{} in {}{against}{survivors}",
                        r.metric.label, cmp.names[p.run]
                    )
                })
        })
        .collect();
    let caveats: Vec<String> = cmp
        .pairs
        .iter()
        .filter_map(|p| {
            not_judged(p)
                .map(|n| format!("{} against {}: {n}.", cmp.names[p.run], cmp.names[p.base]))
        })
        .collect();
    // Metrics whose change the repeats were too few to judge: a "no regression" beside them
    // would read as "none found".
    let unsure: Vec<String> = cmp
        .pairs
        .iter()
        .enumerate()
        .flat_map(|(i, p)| {
            cmp.rows
                .iter()
                .filter(move |r| r.judgements[i].is_some_and(|j| j.verdict == Verdict::CannotTell))
                .map(move |r| {
                    format!(
                        "{} in {} (n = {} + {})",
                        r.metric.label, cmp.names[p.run], cmp.sizes[p.base], cmp.sizes[p.run]
                    )
                })
        })
        .collect();
    let mut caveats = caveats;
    if !unsure.is_empty() {
        caveats.push(format!(
            "Cannot tell, too few repeats for the test: {}.",
            unsure.join(", ")
        ));
    }
    let status = if !regressed.is_empty() {
        format!("**REGRESSION**: {}", regressed.join(", "))
    } else if !unsure.is_empty() && cmp.pairs.iter().all(|p| not_judged(p).is_none()) {
        "no regression shown".to_string()
    } else if caveats.is_empty() {
        "no regression".to_string()
    } else if cmp.nothing_judged() {
        "nothing was judged".to_string()
    } else {
        "no regression among the comparable metrics".to_string()
    };
    if caveats.is_empty() {
        let _ = writeln!(o, "**Status:** {status}\n");
    } else {
        let _ = writeln!(o, "**Status:** {status}. {}\n", caveats.join(" "));
    }
    for k in (0..cmp.pairs.len()).map(|i| key_result(cmp, i)) {
        let _ = writeln!(o, "**Key result:** {k}\n");
    }
    conditions(&mut o, cmp);

    // Summary table.
    let _ = writeln!(o, "## Summary\n");
    let baseline_pairs: Vec<usize> = (0..cmp.pairs.len())
        .filter(|&i| cmp.pairs[i].against_baseline())
        .collect();
    let any_reported = summary_table(
        &mut o,
        cmp,
        &(0..cmp.labels.len()).collect::<Vec<_>>(),
        &baseline_pairs,
    );
    // "cannot tell" is named only where a verdict is one, so reports without it read as before.
    let unsure = cmp
        .rows
        .iter()
        .flat_map(|r| r.judgements.iter().flatten())
        .any(|j| j.verdict == Verdict::CannotTell);
    let _ = writeln!(
        o,
        "\n✅ improved · ❌ regressed · ≈ within noise{} · no mark: context, not judged · — not measured in that run.  ",
        if unsure {
            " · ? cannot tell (too few repeats for the test to decide)"
        } else {
            ""
        }
    );
    if let Some(loss) = (0..cmp.pairs.len())
        .filter(|&i| cmp.rows.iter().any(|r| caveat(cmp, r, i).is_some()))
        .filter_map(|i| survivors_loss(cmp, i))
        .max_by(f64::total_cmp)
    {
        let _ = writeln!(
            o,
            "ˢ survivors' latency: a run lost more than {SURVIVORS_LOSS_PCT}% of its packets at the receiver (up to {}), so its latency is that of the packets that got through; the key result does not lead with it.  ",
            crate::render::fmt::percent(loss)
        );
    }
    if any_reported {
        let _ = writeln!(
            o,
            "ᴿ as printed by the source, which gave no counters for it; every other value is computed from counters and duration."
        );
    } else {
        let _ = writeln!(o, "Every value is computed from counters and duration.");
    }
    let _ = writeln!(
        o,
        "Changes are relative, except for percentages, which change in percentage points (pp).\n"
    );
    let chain_pairs: Vec<usize> = (0..cmp.pairs.len())
        .filter(|&i| !cmp.pairs[i].against_baseline())
        .collect();
    if !chain_pairs.is_empty() {
        let _ = writeln!(o, "## Each run against the one before\n");
        summary_table(
            &mut o,
            cmp,
            &(1..cmp.labels.len()).collect::<Vec<_>>(),
            &chain_pairs,
        );
        let _ = writeln!(o, "\nMarks and units as above.\n");
    }

    for c in charts {
        let _ = writeln!(o, "![{}]({})\n", c.title, c.path);
    }

    // Calculated rates.
    let _ = writeln!(o, "## Calculated rates\n");
    for (i, rec) in cmp.representatives.iter().enumerate() {
        let label = &cmp.labels[i];
        let dur = rec
            .duration_ns
            .map(|d| format!(" ({})", seconds(d)))
            .unwrap_or_default();
        let _ = writeln!(o, "### {label}{dur}\n");
        let values = metrics::metrics(rec);
        let mut printed = false;
        for v in &values {
            match &v.origin {
                Origin::Computed {
                    numerator,
                    denominator,
                } => {
                    let den = match denominator {
                        Denominator::Duration(ns) => seconds(*ns),
                        Denominator::Packets(n) => count(*n),
                    };
                    let _ = writeln!(
                        o,
                        "- **{}:** {} / {} = **{}**",
                        v.metric.label,
                        count(*numerator),
                        den,
                        value(v.metric.unit, v.value)
                    );
                    printed = true;
                }
                Origin::Reported => {
                    let _ = writeln!(
                        o,
                        "- **{}:** {} as reported (the source gave no counter)",
                        v.metric.label,
                        value(v.metric.unit, v.value)
                    );
                    printed = true;
                }
                Origin::Measured => {}
            }
        }
        if !printed {
            let _ = writeln!(o, "No rates: the record has no counters or reported rates.");
        }
        if cmp.sizes[i] > 1 {
            let _ = writeln!(
                o,
                "\n(sample 1 of {}; the summary uses medians)",
                cmp.sizes[i]
            );
        }
        o.push('\n');
    }

    // Waterfalls.
    let _ = writeln!(o, "## Where packets were lost\n");
    for (i, w) in cmp.waterfalls.iter().enumerate() {
        let _ = writeln!(o, "### {}\n", cmp.labels[i]);
        waterfall(&mut o, w);
    }

    cpu_and_perf(&mut o, cmp);

    // Candidate causes.
    let _ = writeln!(
        o,
        "## Candidate causes: configuration and environment differences\n"
    );
    if cmp.differences.is_empty() {
        let _ = writeln!(
            o,
            "No difference in the recorded configuration or environment. A cause outside what the records hold (code, machine load) remains possible.\n"
        );
    } else {
        table_head(
            &mut o,
            "Setting",
            cmp.labels.iter().map(String::as_str),
            "---",
        );
        for d in &cmp.differences {
            let mut line = format!("| `{}` |", escape_cell(&d.name));
            for v in &d.values {
                let v = v.as_deref().unwrap_or("*not recorded*");
                let _ = write!(line, " {} |", escape_cell(v));
            }
            let _ = writeln!(o, "{line}");
        }
        let _ = writeln!(
            o,
            "\nEach row is a setting whose value is not the same in every run; *not recorded* means the run's record does not say, so it may differ too.\n"
        );
    }

    // Method.
    let _ = writeln!(o, "## How each verdict was decided\n");
    let s = &cmp.settings;
    let _ = writeln!(
        o,
        "A single sample on either side is judged by the threshold: a change of at least {t}% ({p} pp for metrics that are percentages) in the worse direction is a regression, in the better direction an improvement. With two or more samples on both sides, a two-sided Mann-Whitney U test at α = {a} decides, and the change must also reach that threshold as a minimum effect.\n",
        t = s.threshold_pct,
        p = s.threshold_pp,
        a = s.alpha
    );
    for (i, p) in cmp.pairs.iter().enumerate() {
        let who = if p.against_baseline() {
            cmp.names[p.run].clone()
        } else {
            format!("{} vs {}", cmp.names[p.run], cmp.names[p.base])
        };
        for row in &cmp.rows {
            if let Some(j) = row.judgements[i].filter(|j| j.decision != Decision::None) {
                let _ = writeln!(
                    o,
                    "- {who} · {}: {}",
                    row.metric.label,
                    verdict_text(j.verdict, &j.decision)
                );
            }
        }
    }
    o.push('\n');

    // Inputs.
    let _ = writeln!(o, "## Inputs\n");
    for (i, rec) in cmp.representatives.iter().enumerate() {
        let srcs: Vec<String> = rec.sources.iter().map(source_text).collect();
        // A record of a newer minor version: say which of its fields this report did not read.
        let skipped = if rec.skipped.is_empty() {
            String::new()
        } else {
            let fields: Vec<String> = rec.skipped.iter().map(|f| format!("`{f}`")).collect();
            format!(
                "; the record is newer than this analyzer: not read {}",
                fields.join(", ")
            )
        };
        let _ = writeln!(
            o,
            "- {}: {}{skipped}",
            cmp.labels[i],
            if srcs.is_empty() {
                "no sources recorded".into()
            } else {
                srcs.join("; ")
            }
        );
    }
    o
}

/// One input of a run as the Inputs section lists it; a file of a newer minor version of its
/// format says which of its fields were not read, so no reader takes the report as complete.
fn source_text(s: &Source) -> String {
    let mut text = format!("{} `{}` ({})", s.role, s.path, s.format);
    if !s.ignored.is_empty() {
        let fields: Vec<String> = s.ignored.iter().map(|f| format!("`{f}`")).collect();
        let _ = write!(
            text,
            ", newer than this analyzer: not read {}",
            fields.join(", ")
        );
    }
    text
}

/// A summary table of the sets `sets` with one change column per pair in `pairs`; returns true
/// when a value in it was only printed by its source.
fn summary_table(o: &mut String, cmp: &Comparison, sets: &[usize], pairs: &[usize]) -> bool {
    let versus: Vec<String> = pairs
        .iter()
        .map(|&i| {
            let p = &cmp.pairs[i];
            format!("{} vs {}", cmp.names[p.run], cmp.names[p.base])
        })
        .collect();
    table_head(
        o,
        "Metric",
        sets.iter()
            .map(|&s| cmp.labels[s].as_str())
            .chain(versus.iter().map(String::as_str)),
        "---:",
    );
    let mut any_reported = false;
    let shown = |r: &Row| sets.iter().any(|&s| r.cells[s].is_some());
    for row in cmp.rows.iter().filter(|r| shown(r)) {
        let mut line = format!("| {} |", escape_cell(&row.metric.label));
        for cell in sets.iter().map(|&s| &row.cells[s]) {
            match cell {
                Some(c) => {
                    any_reported |= c.reported;
                    let _ = write!(
                        line,
                        " {}{}{} |",
                        value(row.metric.unit, c.value),
                        if c.samples > 1 {
                            format!(" (median of {})", c.samples)
                        } else {
                            String::new()
                        },
                        if c.reported { " ᴿ" } else { "" }
                    );
                }
                None => line.push_str(" — |"),
            }
        }
        for &i in pairs {
            match &row.judgements[i] {
                Some(j) => {
                    let c = j
                        .change
                        .map_or("n/a".into(), |c| change(row.metric.unit, c));
                    let bold = matches!(j.verdict, Verdict::Improved | Verdict::Regressed);
                    let survivors = if caveat(cmp, row, i).is_some() {
                        " ˢ"
                    } else {
                        ""
                    };
                    if bold {
                        let _ = write!(line, " **{c}**{}{survivors} |", mark(j.verdict));
                    } else {
                        let _ = write!(line, " {c}{}{survivors} |", mark(j.verdict));
                    }
                }
                None => line.push_str(" — |"),
            }
        }
        let _ = writeln!(o, "{line}");
    }
    any_reported
}

/// The conditions that differ between the runs judged against each other, and what that kept
/// out of judgement; nothing when every pair's conditions match.
fn conditions(o: &mut String, cmp: &Comparison) {
    if cmp.pairs.iter().all(|p| p.conditions.mismatches.is_empty()) {
        return;
    }
    let _ = writeln!(o, "## Conditions\n");
    for p in cmp
        .pairs
        .iter()
        .filter(|p| !p.conditions.mismatches.is_empty())
    {
        let parts: Vec<String> = p
            .conditions
            .mismatches
            .iter()
            .map(|m| {
                let effect = if p.excluded.contains(&m.condition) {
                    crate::render::sentences::excludes(m.condition).to_string()
                } else {
                    "no metric measured in both depends on it".to_string()
                };
                format!("{} ({effect})", crate::render::sentences::mismatch(m))
            })
            .collect();
        let _ = writeln!(
            o,
            "- **{} against {}:** {}.",
            cmp.names[p.run],
            cmp.names[p.base],
            parts.join("; ")
        );
    }
    let _ = writeln!(
        o,
        "\nRuns are judged only on what means the same under both runs' conditions. Offered load is the generator's rate; within {}% of the reference's it counts as equal. When the offered load, datagram size or duration differs, each hop's share of the offered traffic (received, sent on) is added and judged in place of its rates; loss and exhaustion shares are judged as ever. Metrics not judged stay in the tables without a mark.\n",
        cmp.settings.load_tolerance_pct
    );
}

/// Process CPU time and perf counters of one part (generator, hop, receiver) of a run.
type PartCpu = (Option<ProcessCpu>, BTreeMap<String, Measured>);

/// CPU time and perf-event counters of every part of each run, where any were recorded. A
/// counter the machine could not count prints as "unavailable", one not collected as "—".
fn cpu_and_perf(o: &mut String, cmp: &Comparison) {
    use std::collections::BTreeSet;
    let mut rows: Vec<(String, Vec<String>)> = Vec::new();
    let ns = |v: Option<u64>| v.map_or("—".to_string(), seconds);
    let reps = &cmp.representatives;
    // Parts by position: generator, each hop index, receiver, host.
    let max_hops = reps.iter().map(|r| r.hops.len()).max().unwrap_or(0);
    let mut parts: Vec<(String, Vec<Option<PartCpu>>)> = Vec::new();
    parts.push((
        "Generator".into(),
        reps.iter()
            .map(|r| {
                r.generator
                    .as_ref()
                    .map(|g| (g.cpu.clone(), g.perf.clone()))
            })
            .collect(),
    ));
    let by_position = crate::record::hops_differ(reps.iter());
    for i in 0..max_hops {
        let name = if by_position {
            format!("hop {}", i + 1)
        } else {
            reps.iter()
                .find_map(|r| r.hops.get(i).map(|h| h.name.clone()))
                .unwrap_or_default()
        };
        parts.push((
            name,
            reps.iter()
                .map(|r| r.hops.get(i).map(|h| (h.cpu.clone(), h.perf.clone())))
                .collect(),
        ));
    }
    parts.push((
        "Receiver".into(),
        reps.iter()
            .map(|r| r.receiver.as_ref().map(|x| (x.cpu.clone(), x.perf.clone())))
            .collect(),
    ));
    for (part, per_set) in &parts {
        let any_cpu = per_set.iter().flatten().any(|(c, _)| c.is_some());
        if any_cpu {
            rows.push((
                format!("{part} CPU user"),
                per_set
                    .iter()
                    .map(|p| ns(p.as_ref().and_then(|(c, _)| c.as_ref()?.user_ns)))
                    .collect(),
            ));
            rows.push((
                format!("{part} CPU system"),
                per_set
                    .iter()
                    .map(|p| ns(p.as_ref().and_then(|(c, _)| c.as_ref()?.system_ns)))
                    .collect(),
            ));
        }
        let keys: BTreeSet<&String> = per_set
            .iter()
            .flatten()
            .flat_map(|(_, m)| m.keys())
            .collect();
        for k in keys {
            rows.push((
                format!("{part} perf `{k}`"),
                per_set
                    .iter()
                    .map(|p| match p.as_ref().and_then(|(_, m)| m.get(k)) {
                        Some(Measured::Count(n)) if k.ends_with("_ns") => seconds(*n),
                        Some(Measured::Count(n)) => count(*n),
                        Some(Measured::Unavailable) => "unavailable".into(),
                        None => "—".into(),
                    })
                    .collect(),
            ));
        }
    }
    let host: Vec<Option<&HostCpu>> = reps.iter().map(|r| r.host_cpu.as_ref()).collect();
    if host.iter().any(Option::is_some) {
        for (label, f) in [
            (
                "Host CPU user",
                (|h: &HostCpu| h.user_ns) as fn(&HostCpu) -> Option<u64>,
            ),
            ("Host CPU system", |h: &HostCpu| h.system_ns),
            ("Host CPU softirq", |h: &HostCpu| h.softirq_ns),
            ("Host CPU irq", |h: &HostCpu| h.irq_ns),
            ("Host CPU busy (total only)", |h: &HostCpu| h.busy_ns),
            ("Host CPU window (wall clock)", |h: &HostCpu| h.window_ns),
            ("Host CPU of other processes (left out)", |h: &HostCpu| {
                h.other_processes_ns
            }),
        ] {
            if host.iter().flatten().any(|h| f(h).is_some()) {
                rows.push((
                    label.into(),
                    host.iter().map(|h| ns(h.and_then(f))).collect(),
                ));
            }
        }
        let methods: Vec<String> = host
            .iter()
            .map(|h| h.and_then(|h| h.method.clone()).unwrap_or("—".into()))
            .collect();
        // One method for all runs is a note under the table; differing methods are a row,
        // since figures measured differently are not comparable.
        if host.iter().flatten().any(|h| h.method.is_some())
            && methods.iter().any(|m| m != &methods[0])
        {
            rows.push(("Host CPU method".into(), methods));
        }
    }
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(
        o,
        "## CPU time and perf counters
"
    );
    table_head(o, "Counter", cmp.labels.iter().map(String::as_str), "---:");
    for (label, values) in rows {
        let _ = writeln!(o, "| {} | {} |", escape_cell(&label), values.join(" | "));
    }
    let method = reps
        .iter()
        .map(|r| r.host_cpu.as_ref().and_then(|h| h.method.as_deref()))
        .collect::<Vec<_>>();
    let method_note = match method.first() {
        Some(Some(m)) if method.iter().all(|x| x == &Some(*m)) => {
            format!(" Host CPU method, every run: {m}.")
        }
        _ => String::new(),
    };
    let _ = writeln!(
        o,
        "
*unavailable*: the counter was asked for but this machine cannot count it (never 0); —: not collected. Times in seconds.{}{method_note}
",
        if cmp.sizes.iter().any(|&n| n > 1) { " First sample of each set." } else { "" }
    );
}

#[cfg(test)]
mod source_tests {
    use super::*;

    #[test]
    fn an_input_of_a_newer_minor_version_names_the_fields_not_read() {
        let mut s = Source {
            role: "hop:MCR-1".into(),
            format: "mcr.relay.stats/1".into(),
            path: "a.json".into(),
            ignored: Vec::new(),
        };
        assert_eq!(source_text(&s), "hop:MCR-1 `a.json` (mcr.relay.stats/1)");
        s.format = "mcr.relay.stats/1.2".into();
        s.ignored = vec!["totals.rx_later".into(), "ring".into()];
        assert_eq!(
            source_text(&s),
            "hop:MCR-1 `a.json` (mcr.relay.stats/1.2), newer than this analyzer: not read \
             `totals.rx_later`, `ring`"
        );
    }
}
