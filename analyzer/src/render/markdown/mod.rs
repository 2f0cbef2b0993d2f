//! Markdown reports, laid out like the seed report: summary table with verdict marks, the key
//! result in one sentence, calculated rates with their formulas, a loss waterfall per hop,
//! candidate causes, and how every verdict was decided.
//!
//! One exporter per report ([`comparison`], [`trend`]; the waterfall section is its own
//! module), sharing what is here: verdict marks and words, decision texts, and table headings
//! whose cells are escaped ([`escape_cell`]) since run, rule and relay names come from the user.

use std::borrow::Cow;
use std::fmt::Write;

use crate::compare::{Decision, Verdict};

mod comparison;
pub mod medians;
mod trend;
mod waterfall;

pub use comparison::comparison;
pub use trend::trend;

/// A chart to link from the report: title and path relative to the report.
#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    pub title: String,
    pub path: String,
}

pub(super) fn mark(v: Verdict) -> &'static str {
    match v {
        Verdict::Improved => " ✅",
        Verdict::Regressed => " ❌",
        Verdict::WithinNoise => " ≈",
        Verdict::CannotTell => " ?",
        Verdict::Context => "",
    }
}

pub(super) fn verdict_word(v: Verdict) -> &'static str {
    match v {
        Verdict::Improved => "improved",
        Verdict::Regressed => "regressed",
        Verdict::WithinNoise => "within noise",
        Verdict::CannotTell => "cannot tell",
        Verdict::Context => "context, not judged",
    }
}

/// How a verdict was decided, as the report's list says it: `cannot tell with n = 5 + 2 (...)`
/// for a test that could not have reached α, else `VERDICT by DECISION`.
pub(super) fn verdict_text(v: Verdict, d: &Decision) -> String {
    match (v, d) {
        (
            Verdict::CannotTell,
            Decision::MannWhitney {
                n_baseline,
                n_run,
                alpha,
                ..
            },
        ) => format!(
            "cannot tell with n = {n_baseline} + {n_run}: Mann-Whitney U cannot give p < {alpha} \
             with so few repeats (its smallest p is {:.3}); {}",
            crate::stats::mannwhitney::smallest_p(*n_baseline, *n_run),
            decision_text(d)
        ),
        (Verdict::Context, _) => decision_text(d),
        _ => format!("{} by {}", verdict_word(v), decision_text(d)),
    }
}

pub(super) fn decision_text(d: &Decision) -> String {
    match d {
        Decision::LossFromNone => {
            "loss against none (any loss where the other side lost none in every sample)".into()
        }
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
        Decision::NotComparable(c) => {
            format!("not judged: {}", crate::render::sentences::excludes_why(*c))
        }
    }
}

/// Writes a table's heading and rule: `| Metric | a | b |` over `|--------|---:|---:|`, each
/// later column ruled with `align` (`---:` right-aligned, `---` left).
pub(super) fn table_head<'a>(
    o: &mut String,
    first: &str,
    columns: impl IntoIterator<Item = &'a str>,
    align: &str,
) {
    let mut head = format!("| {} |", escape_cell(first));
    let mut rule = format!("|{}|", "-".repeat(first.chars().count() + 2));
    for c in columns {
        let _ = write!(head, " {} |", escape_cell(c));
        let _ = write!(rule, "{align}|");
    }
    let _ = writeln!(o, "{head}\n{rule}");
}

/// Text made safe for one Markdown table cell: a `|` would end the cell (and shift every
/// column after it), a line break would end the row. GitHub-flavoured Markdown reads `\|` as a
/// literal bar, inside code spans too; a line break becomes a space.
pub(crate) fn escape_cell(text: &str) -> Cow<'_, str> {
    if !text.contains(['|', '\n', '\r']) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 4);
    for c in text.chars() {
        match c {
            '|' => out.push_str("\\|"),
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The cells of a table row: split at the bars that are not escaped.
    pub(crate) fn cells(row: &str) -> Vec<String> {
        let mut cells = vec![String::new()];
        let mut escaped = false;
        for c in row.trim().trim_matches('|').chars() {
            match c {
                '|' if !escaped => cells.push(String::new()),
                c => cells.last_mut().unwrap().push(c),
            }
            escaped = c == '\\';
        }
        cells
    }

    #[test]
    fn bars_and_line_breaks_cannot_leave_their_cell() {
        assert!(matches!(escape_cell("MCR-1"), Cow::Borrowed("MCR-1")));
        assert_eq!(escape_cell("a|b"), "a\\|b");
        assert_eq!(escape_cell("two\nlines\r"), "two lines ");
        let mut o = String::new();
        table_head(&mut o, "Metric", ["run|1", "run\n2", "plain"], "---:");
        let mut lines = o.lines();
        let head = lines.next().unwrap();
        let rule = lines.next().unwrap();
        assert_eq!(
            cells(head),
            [" Metric ", " run\\|1 ", " run 2 ", " plain "],
            "{head}"
        );
        assert_eq!(cells(rule).len(), 4, "{rule}");
    }
}
