//! A bisection step as text: the answer first (what a script and a reader act on), then the
//! numbers that gave it, one line per pair of sides.

use crate::bisect::step::{Reason, Side, Step};
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

/// Why the step answered as it did, in one sentence; with how many more repeats would let
/// the test decide, when that is why it could not.
pub fn reason(s: &Step) -> String {
    let why = match s.reason {
        Reason::EndpointsCannotTell => {
            "the good and bad endpoints cannot be told apart with so few repeats"
        }
        Reason::EndpointsSame => {
            "the good and bad endpoints do not differ beyond noise on this metric"
        }
        Reason::LikeGood => "the candidate differs from bad as good does, and not from good",
        Reason::LikeBad => "the candidate differs from good as bad does, and not from bad",
        Reason::TooFewRepeats => "the test cannot reach alpha with so few repeats",
        Reason::DiffersFromBoth => {
            "the candidate differs from both endpoints (between them, or a change of its own)"
        }
        Reason::DiffersFromNeither => "the candidate differs from neither endpoint beyond noise",
        Reason::AwayFromTheOther => {
            "the candidate differs from one endpoint in the direction away from the other"
        }
    };
    match s.more_repeats {
        Some(k) => format!("{why}; {k} more repeats of each side would let the test decide"),
        None => why.to_string(),
    }
}

/// The whole step, as `bisect-step` prints it.
pub fn step(s: &Step) -> String {
    format!(
        "answer: {}\nmetric: {} ({})\nreason: {}\n{}\n{}\n{}\n",
        s.answer.name(),
        s.metric.key,
        s.metric.label,
        reason(s),
        side("bad against good", &s.endpoints, s),
        side("candidate against good", &s.against_good, s),
        side("candidate against bad", &s.against_bad, s),
    )
}
