//! Markdown reports, laid out like the seed report: summary table with verdict marks, the key
//! result in one sentence, calculated rates with their formulas, a loss waterfall per hop,
//! candidate causes, and how every verdict was decided.

use std::fmt::Write;

use super::fmt::{change, count, percent, seconds, signed, value};
use crate::compare::{not_judged, Comparison, Decision, Row, Verdict};
use std::collections::BTreeMap;

use crate::metrics::{self, Denominator, Origin};
use crate::record::{HostCpu, Measured, ProcessCpu, Source};
use crate::trend::TrendReport;
use crate::waterfall::{HopFlow, Waterfall};

/// A chart to link from the report: title and path relative to the report.
#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    pub title: String,
    pub path: String,
}

fn mark(v: Verdict) -> &'static str {
    match v {
        Verdict::Improved => " ✅",
        Verdict::Regressed => " ❌",
        Verdict::WithinNoise => " ≈",
        Verdict::Context => "",
    }
}

fn verdict_word(v: Verdict) -> &'static str {
    match v {
        Verdict::Improved => "improved",
        Verdict::Regressed => "regressed",
        Verdict::WithinNoise => "within noise",
        Verdict::Context => "context, not judged",
    }
}

fn decision_text(d: &Decision) -> String {
    match d {
        Decision::Threshold { threshold, pp } => format!(
            "threshold {threshold}{} (single sample on a side)",
            if *pp { " pp" } else { "%" }
        ),
        Decision::MannWhitney {
            p,
            exact,
            n_baseline,
            n_run,
            alpha,
            min_effect,
            pp,
        } => format!(
            "Mann-Whitney U ({}), p = {p:.3} (α = {alpha}), n = {n_baseline} + {n_run}, minimum effect {min_effect}{}",
            if *exact { "exact" } else { "normal approximation" },
            if *pp { " pp" } else { "%" }
        ),
        Decision::None => "not judged".into(),
        Decision::NotComparable(c) => format!("not judged: {}", c.excludes_why()),
    }
}

/// Writes a table's heading and rule: `| Metric | a | b |` over `|--------|---:|---:|`, each
/// later column ruled with `align` (`---:` right-aligned, `---` left).
fn table_head<'a>(
    o: &mut String,
    first: &str,
    columns: impl IntoIterator<Item = &'a str>,
    align: &str,
) {
    let mut head = format!("| {first} |");
    let mut rule = format!("|{}|", "-".repeat(first.chars().count() + 2));
    for c in columns {
        let _ = write!(head, " {c} |");
        let _ = write!(rule, "{align}|");
    }
    let _ = writeln!(o, "{head}\n{rule}");
}

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
                .map(move |r| format!("{} in {}{against}", r.metric.label, cmp.names[p.run]))
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
    let status = if !regressed.is_empty() {
        format!("**REGRESSION**: {}", regressed.join(", "))
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
    for k in &cmp.key_results {
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
    let _ = writeln!(
        o,
        "\n✅ improved · ❌ regressed · ≈ within noise · no mark: context, not judged · — not measured in that run.  "
    );
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
            let mut line = format!("| `{}` |", d.name);
            for v in &d.values {
                let _ = write!(line, " {} |", v.as_deref().unwrap_or("*not recorded*"));
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
                let word = if j.verdict == Verdict::Context {
                    String::new()
                } else {
                    format!("{} by ", verdict_word(j.verdict))
                };
                let _ = writeln!(
                    o,
                    "- {who} · {}: {word}{}",
                    row.metric.label,
                    decision_text(&j.decision)
                );
            }
        }
    }
    o.push('\n');

    // Inputs.
    let _ = writeln!(o, "## Inputs\n");
    for (i, rec) in cmp.representatives.iter().enumerate() {
        let srcs: Vec<String> = rec.sources.iter().map(source_text).collect();
        let _ = writeln!(
            o,
            "- {}: {}",
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
        let mut line = format!("| {} |", row.metric.label);
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
        for j in pairs.iter().map(|&i| &row.judgements[i]) {
            match j {
                Some(j) => {
                    let c = j
                        .change
                        .map_or("n/a".into(), |c| change(row.metric.unit, c));
                    let bold = matches!(j.verdict, Verdict::Improved | Verdict::Regressed);
                    if bold {
                        let _ = write!(line, " **{c}**{} |", mark(j.verdict));
                    } else {
                        let _ = write!(line, " {c}{} |", mark(j.verdict));
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
                    m.condition.excludes().to_string()
                } else {
                    "no metric measured in both depends on it".to_string()
                };
                format!("{} ({effect})", m.describe())
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
        let _ = writeln!(o, "| {label} | {} |", values.join(" | "));
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

fn cell(n: Option<u64>, of: Option<u64>) -> String {
    match (n, of) {
        (Some(n), Some(d)) if d > 0 && n > 0 => {
            format!("{} ({})", count(n), percent(n as f64 / d as f64 * 100.0))
        }
        (Some(n), _) => count(n),
        (None, _) => "*not reported*".into(),
    }
}

fn waterfall(o: &mut String, w: &Waterfall) {
    let has_counters = w
        .hops
        .iter()
        .any(|h| h.received.is_some() || h.sent_on.is_some());
    if w.hops.is_empty() {
        let _ = writeln!(
            o,
            "No relay in this run: the generator sent straight to the receiver.\n"
        );
        delivery(o, w);
        kernel_and_verdict(o, w);
        o.push('\n');
        return;
    }
    if !has_counters {
        let _ = writeln!(
            o,
            "No per-hop counters in this run (only rates were reported), so its losses cannot be broken down.\n"
        );
        kernel_and_verdict(o, w);
        super::stream_loss::section(o, &w.streams);
        return;
    }
    table_head(o, "Step", w.hops.iter().map(|h| h.hop.as_str()), "---:");
    let row = |o: &mut String, label: &str, f: &dyn Fn(&HopFlow) -> String| {
        let mut line = format!("| {label} |");
        for h in &w.hops {
            let _ = write!(line, " {} |", f(h));
        }
        let _ = writeln!(o, "{line}");
    };
    row(o, "Sent by upstream", &|h| match h.offered {
        Some(n) => format!("{} ({})", count(n), h.upstream),
        None => "*unknown*".into(),
    });
    row(o, "Kernel drops", &|h| cell(h.kernel_drops, h.offered));
    if w.hops.iter().any(|h| h.link_drops.is_some()) {
        row(o, "veth link drops", &|h| cell(h.link_drops, h.offered));
    }
    row(
        o,
        "Lost before the relay's counters (unexplained)",
        &|h| match (h.unseen, h.offered) {
            (Some(u), _) if u < 0 => {
                format!("*inconsistent*: {} more received", count(u.unsigned_abs()))
            }
            (Some(u), Some(off)) if off > 0 => {
                format!("{} ({})", signed(u), percent(u as f64 / off as f64 * 100.0))
            }
            (Some(u), _) => signed(u),
            _ => "*unknown*".into(),
        },
    );
    row(o, "**Received**", &|h| match h.received {
        Some(n) => format!("**{}**", count(n)),
        None => "*not reported*".into(),
    });
    let n_steps = w.hops.first().map_or(0, |h| h.steps.len());
    for i in 0..n_steps {
        let s0 = &w.hops[0].steps[i];
        let label = format!("{} {}", if s0.adds() { "+" } else { "−" }, s0.label());
        row(o, &label, &|h| cell(h.steps[i].count, h.received));
    }
    row(o, "**Sent on**", &|h| match h.sent_on {
        Some(n) => format!("**{}**", cell(Some(n), h.received)),
        None => "*not reported*".into(),
    });
    row(o, "Unexplained remainder", &|h| match h.remainder {
        Some(r) => signed(r),
        None => "*unknown*".into(),
    });
    o.push('\n');
    for h in &w.hops {
        if h.remainder.is_some_and(|r| r != 0) && !h.unreported.is_empty() {
            let _ = writeln!(
                o,
                "- {}: the remainder of {} may hold the counters the source did not report ({}).",
                h.hop,
                signed(h.remainder.unwrap_or(0)),
                h.unreported.join(", ")
            );
        } else if h.remainder.is_some_and(|r| r != 0) {
            let _ = writeln!(
                o,
                "- {}: every counter was reported, yet {} packets are unaccounted for: the conservation law does not hold.",
                h.hop,
                signed(h.remainder.unwrap_or(0))
            );
        }
    }
    for i in w.inconsistencies() {
        let _ = writeln!(
            o,
            "- **The record is inconsistent:** {i}. The counters cannot come from one run over one window (a stale or foreign counter, or traffic that was not the generator's), so no loss is computed from them."
        );
    }
    delivery(o, w);
    kernel_and_verdict(o, w);
    super::stream_loss::section(o, &w.streams);
    o.push('\n');
}

/// Host-wide softnet drops and the harness's conservation verdict, when the record has them.
fn kernel_and_verdict(o: &mut String, w: &Waterfall) {
    if let Some(n) = w.softnet_dropped {
        let why = match w.softnet_explains {
            None if n > 0 => " A veth counts a frame the backlog refused as its sender's drop, so these are inside the veth link drops, not in addition.".to_string(),
            Some(e) if e > 0 => format!(
                " With no veth link counters in this run, they explain up to {} of the packets lost before the relays' counters and on the last leg.",
                count(e)
            ),
            _ => String::new(),
        };
        let _ = writeln!(
            o,
            "- Host softnet backlog drops (host-wide, any hop's): {}.{why}",
            count(n)
        );
    }
    if let Some(c) = &w.conservation {
        let unexplained: Vec<String> = c
            .stages
            .iter()
            .filter(|s| s.unexplained != 0)
            .map(|s| format!("{} {}", s.name, signed(s.unexplained)))
            .collect();
        let verdict = if c.ok {
            "OK, every packet accounted for".to_string()
        } else if unexplained.is_empty() {
            "FAILED (the harness found unexplained loss end to end)".to_string()
        } else {
            format!("FAILED, unexplained: {}", unexplained.join(", "))
        };
        let _ = writeln!(
            o,
            "- Conservation check of the harness ({} stages, in frames): {verdict}.",
            c.stages.len()
        );
    }
}

/// The last leg: from the last hop (or the generator) to the receiver.
fn delivery(o: &mut String, w: &Waterfall) {
    if let Some(d) = &w.delivery {
        let lost = match (d.lost, d.offered) {
            (Some(l), _) if l < 0 => format!(
                "*inconsistent* ({} more received than sent)",
                count(l.unsigned_abs())
            ),
            (Some(l), Some(off)) if off > 0 => {
                format!("{} ({})", signed(l), percent(l as f64 / off as f64 * 100.0))
            }
            (Some(l), _) => signed(l),
            _ => "unknown".into(),
        };
        let counted: Vec<String> = [
            d.link_drops
                .map(|n| format!("{} dropped by the veth link", count(n))),
            d.socket_drops
                .map(|n| format!("{} by the receiving socket's full buffer", count(n))),
        ]
        .into_iter()
        .flatten()
        .collect();
        let _ = writeln!(
            o,
            "- Receiver: {} sent by {}, {} received{}, {} lost on the last leg{}.",
            d.offered.map_or("unknown".into(), count),
            d.upstream,
            d.received.map_or("unknown".into(), count),
            d.end_markers
                .map(|n| format!(" (+{} end markers)", count(n)))
                .unwrap_or_default(),
            lost,
            if counted.is_empty() {
                String::new()
            } else {
                format!(" (of which {})", counted.join(", "))
            }
        );
    }
}

/// The trend report.
pub fn trend(t: &TrendReport, charts: &[Chart]) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "# Trend: {} runs, {} → {}\n",
        t.runs.len(),
        t.runs.first().map_or("", String::as_str),
        t.runs.last().map_or("", String::as_str)
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
                    t.runs[s.run_index[seg.start]],
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
            s.metric.label,
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
        let _ = writeln!(o, "{}. {} `{}`", i + 1, r, t.paths[i]);
    }
    o
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
