//! A bisection step as text: the answer first (what a script and a reader act on), then the
//! numbers that gave it, one line per pair of sides.

use crate::bisect::step::{Side, Step};
use crate::compare::Verdict;
use crate::render::fmt;

/// `candidate against good: +0.4% (p = 0.69, n = 5 + 5), within noise`.
pub fn side(what: &str, s: &Side, step: &Step) -> String {
    let change = s.judgement.change.map_or_else(
        || "no change computable".into(),
        |c| fmt::change(step.metric.unit, c),
    );
    let p = s
        .p()
        .map_or_else(|| "threshold rule".into(), |p| format!("p = {p:.3}"));
    let verdict = match s.judgement.verdict {
        Verdict::Improved => "improved",
        Verdict::Regressed => "regressed",
        Verdict::WithinNoise => "within noise",
        Verdict::CannotTell => "cannot tell",
        Verdict::Context => "not judged",
    };
    format!(
        "{what}: {change} ({p}, n = {} + {}), {verdict}",
        s.n_reference, s.n_other
    )
}

/// The whole step, as `bisect-step` prints it.
pub fn step(s: &Step) -> String {
    format!(
        "answer: {}\nmetric: {} ({})\nreason: {}\n{}\n{}\n{}\n",
        s.answer.name(),
        s.metric.key,
        s.metric.label,
        s.reason,
        side("bad against good", &s.endpoints, s),
        side("candidate against good", &s.against_good, s),
        side("candidate against bad", &s.against_bad, s),
    )
}
