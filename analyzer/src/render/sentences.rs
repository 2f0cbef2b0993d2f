//! The sentences of the reports: a comparison's key result, why a pair was not judged, the
//! largest loss of a run, where a stream's loss first appears, and where a record contradicts
//! itself. The model (`compare`, `conditions`, `waterfall`, `stream_loss`) returns numbers
//! and structure; these functions are the only place they become prose, for the Markdown
//! report and the `--json` verdict records alike.

use super::fmt;
use crate::compare::{caveat, survivors_loss, Comparison, Pair, Row, Verdict};
use crate::conditions::{Condition, ConditionValue, Mismatch};
use crate::record::StreamKind;
use crate::stream_loss::{Point, StreamPath};
use crate::waterfall::Waterfall;

/// Why a metric was not judged: `offered load differs`.
pub fn excludes_why(c: Condition) -> String {
    format!("{} differs", c.name())
}

/// What a differing condition takes out of judgement, in words.
pub fn excludes(c: Condition) -> &'static str {
    match c {
        Condition::OfferedLoad | Condition::DatagramSize => {
            "rates, CPU per packet and latency are not judged"
        }
        Condition::Duration => "rates are not judged",
        Condition::Hops | Condition::Topology => "end-to-end metrics are not judged",
    }
}

/// One side of a differing condition as the report prints it: `5k pps`, `1400 B`, `14.43 s`.
pub fn condition_value(v: &ConditionValue) -> String {
    match v {
        ConditionValue::Pps(x) => fmt::pps(*x),
        ConditionValue::Bytes(b) => format!("{b} B"),
        ConditionValue::Duration(ns) => fmt::seconds(*ns),
        ConditionValue::Count(n) => n.to_string(),
        ConditionValue::Text(t) => t.clone(),
    }
}

/// `offered load differs: 5k pps against 733k pps` (the run's value first).
pub fn mismatch(m: &Mismatch) -> String {
    format!(
        "{} differs: {} against {}",
        m.condition.name(),
        condition_value(&m.run),
        condition_value(&m.baseline)
    )
}

/// What a pair's differing conditions kept from being judged, as the report's clause:
/// `offered load differs: 5k pps against 733k pps; rates, CPU per packet and latency are not
/// judged`. `None` when every metric both sides have was judged.
pub fn not_judged(p: &Pair) -> Option<String> {
    let parts: Vec<String> = p
        .excluded
        .iter()
        .map(|c| {
            let m = p
                .conditions
                .mismatches
                .iter()
                .find(|m| m.condition == *c)
                .expect("an excluding condition is a mismatch");
            format!("{}; {}", mismatch(m), excludes(*c))
        })
        .collect();
    (!parts.is_empty()).then(|| parts.join("; "))
}

/// `MCR-1 Ingress +41% (490k → 689k pps)`.
fn describe(row: &Row, pair: usize, p: &Pair) -> Option<(f64, String)> {
    let j = row.judgements[pair]?;
    let c = j.change?;
    let (b, r) = (row.cells[p.base]?, row.cells[p.run]?);
    Some((
        c.abs(),
        format!(
            "{} {} ({} → {})",
            row.metric.label,
            fmt::change(row.metric.unit, c),
            fmt::value(row.metric.unit, b.value),
            fmt::value(row.metric.unit, r.value)
        ),
    ))
}

/// The sentence a reader needs first: what improved, what regressed, and where most packets
/// were lost, all taken from the rows and the waterfall.
pub fn key_result(cmp: &Comparison, pair: usize) -> String {
    let p = &cmp.pairs[pair];
    // Survivors' latency never leads: it is told after the verdicts, as what it is.
    let pick = |want: Verdict| -> Vec<String> {
        let mut v: Vec<(f64, String)> = cmp
            .rows
            .iter()
            .filter(|r| r.judgements[pair].is_some_and(|j| j.verdict == want))
            .filter(|r| caveat(cmp, r, pair).is_none())
            .filter_map(|r| describe(r, pair, p))
            .collect();
        v.sort_by(|a, b| b.0.total_cmp(&a.0));
        v.into_iter().take(2).map(|x| x.1).collect()
    };
    let (better, worse) = (pick(Verdict::Improved), pick(Verdict::Regressed));
    let survivors: Vec<String> = cmp
        .rows
        .iter()
        .filter(|r| caveat(cmp, r, pair).is_some())
        .filter_map(|r| {
            let j = r.judgements[pair]?;
            let (_, d) = describe(r, pair, p)?;
            Some(format!("{d}, {}", super_word(j.verdict)))
        })
        .collect();
    let unsure = pick(Verdict::CannotTell);
    let mut s = format!("{} against {}: ", cmp.names[p.run], cmp.names[p.base]);
    let judged_any = cmp
        .rows
        .iter()
        .any(|r| r.judgements[pair].is_some_and(|j| j.verdict != Verdict::Context));
    let mut verdicts = match (better.is_empty(), worse.is_empty()) {
        (true, true) if !unsure.is_empty() => "no metric was shown to change".to_string(),
        (true, true) if !survivors.is_empty() => {
            "no other judged metric changed beyond noise".to_string()
        }
        (true, true) => "no judged metric changed beyond noise".to_string(),
        (false, true) => format!("improved {}, nothing regressed", better.join(" and ")),
        (true, false) => format!("regressed {}", worse.join(" and ")),
        (false, false) => format!(
            "improved {} but regressed {}",
            better.join(" and "),
            worse.join(" and ")
        ),
    };
    if !unsure.is_empty() {
        let (nb, nr) = (cmp.sizes[p.base], cmp.sizes[p.run]);
        verdicts.push_str(&format!(
            "; cannot tell with n = {nb} + {nr} whether {} changed (the test cannot reach \
             p < {} with so few repeats)",
            unsure.join(" and "),
            cmp.settings.alpha
        ));
    }
    if let (false, Some(loss)) = (survivors.is_empty(), survivors_loss(cmp, pair)) {
        verdicts.push_str(&format!(
            ". Survivors' latency: {}; the receiver lost {} of the packets, so this is the \
             latency of the ones that got through",
            survivors.join("; "),
            fmt::percent(loss)
        ));
    }
    match not_judged(p) {
        // Nothing judged is no reason to leave out what the run itself shows (where it lost
        // packets, an inconsistent record, a stream's loss): those follow either way.
        Some(n) if !judged_any => {
            s.push_str(&format!(
                "{n}. Nothing else was measured in both, so nothing was judged."
            ));
        }
        Some(n) => s.push_str(&format!("{n}. Of the rest: {verdicts}.")),
        None => s.push_str(&format!("{verdicts}.")),
    }
    if p.against_baseline() {
        let wrong = inconsistencies(&cmp.waterfalls[p.run]);
        if !wrong.is_empty() {
            s.push_str(&format!(
                " The record is inconsistent: {}.",
                wrong.join("; ")
            ));
        }
    }
    // The run's largest loss is told once, against the baseline.
    if let Some(loss) = largest_loss(&cmp.waterfalls[p.run]).filter(|_| p.against_baseline()) {
        s.push(' ');
        s.push_str(&loss);
    }
    if p.against_baseline() {
        for path in &cmp.waterfalls[p.run].streams {
            s.push_str(&format!(
                " Stream `{}` ({}): {}.",
                path.rule,
                path.kind.name(),
                localization(path)
            ));
        }
    }
    s
}

/// A verdict in a sentence.
fn super_word(v: Verdict) -> &'static str {
    match v {
        Verdict::Improved => "improved",
        Verdict::Regressed => "regressed",
        Verdict::WithinNoise => "within noise",
        Verdict::CannotTell => "cannot tell",
        Verdict::Context => "not judged",
    }
}

/// The biggest single known loss of a run, as a sentence.
fn largest_loss(w: &Waterfall) -> Option<String> {
    use fmt::{count, percent};
    let mut best: Option<(u64, String)> = None;
    // `lost` packets of `of`, lost `place` (`at MCR-1 to buffer exhaustion`).
    let mut consider = |lost: u64, of: u64, place: String, of_what: &str| {
        if lost > 0 && of > 0 && best.as_ref().is_none_or(|b| lost > b.0) {
            let share = percent(lost as f64 / of as f64 * 100.0);
            best = Some((
                lost,
                format!(
                    "Most packets were lost {place}: {} of {}{of_what} ({share}).",
                    count(lost),
                    count(of)
                ),
            ));
        }
    };
    for h in &w.hops {
        for s in h.steps.iter().filter(|s| !s.adds()) {
            if let (Some(n), Some(rx)) = (s.count, h.received) {
                consider(n, rx, format!("at {} to {}", h.hop, s.label()), " received");
            }
        }
        if let (Some(k), Some(off)) = (h.kernel_drops, h.offered.or(h.received)) {
            let place = format!("at {} to kernel drops before the relay saw them", h.hop);
            consider(k, off, place, "");
        }
        if let (Some(l), Some(off)) = (h.link_drops, h.offered) {
            let place = format!(
                "on the veth link from {} to {} (kernel link drops)",
                h.upstream, h.hop
            );
            consider(l, off, place, "");
        }
        if let (Some(u), Some(off)) = (h.unseen, h.offered) {
            let place = format!(
                "between {} and {} before {}'s counters saw them",
                h.upstream, h.hop, h.hop
            );
            consider(u.max(0) as u64, off, place, "");
        }
    }
    best.map(|b| b.1)
}

/// Where the stream's loss first appears, in one sentence: what the report leads with.
pub fn localization(path: &StreamPath) -> String {
    let names: Vec<&str> = path.points.iter().map(Point::name).collect();
    let what = match path.kind {
        StreamKind::Rtp => "sequence gaps",
        StreamKind::Mpegts => "continuity-counter errors",
    };
    if path.points.iter().all(Point::nothing_checked) {
        return format!(
            "none of the datagrams {} received was {}: nothing to follow",
            list(&names, "and"),
            match path.kind {
                StreamKind::Rtp => "RTP",
                StreamKind::Mpegts => "MPEG-TS",
            }
        );
    }
    let Some(k) = path.first_loss() else {
        return format!(
            "no {what} at {}: nothing was lost that the stream's {} can show",
            list(&names, "or"),
            match path.kind {
                StreamKind::Rtp => "sequence numbers",
                StreamKind::Mpegts => "continuity counters",
            }
        );
    };
    let p = &path.points[k];
    let amount = amount(path, p.new_loss.max(0) as u64);
    if k == 0 {
        return format!(
            "{what} already at {}, the first point that counted the stream: {amount} lost before it (at the source or on the way to {})",
            p.name(),
            p.name()
        );
    }
    let up = &path.points[k - 1];
    format!(
        "{what} first appear at {}, not at {}: {amount} lost between {} and {}",
        p.name(),
        list(&names[..k], "or"),
        up.name(),
        p.name()
    )
}

/// `210 TS packets (at least)`, `36 sequence numbers`.
pub fn amount(path: &StreamPath, n: u64) -> String {
    let n = fmt::count(n);
    match path.kind {
        StreamKind::Rtp => format!("{n} sequence numbers"),
        StreamKind::Mpegts => format!("at least {n} TS packets"),
    }
}

/// `a`, `a or b`, `a, b or c` (with `word` = `or`).
fn list(names: &[&str], word: &str) -> String {
    match names {
        [] => String::new(),
        [one] => one.to_string(),
        [rest @ .., last] => format!("{} {word} {last}", rest.join(", ")),
    }
}

/// Each place where the record's counts contradict each other, as a sentence:
/// `MCR-1 received 1,900,000, more than the 10,000 generator sent`.
pub fn inconsistencies(w: &Waterfall) -> Vec<String> {
    use fmt::count;
    let mut out: Vec<String> = w
        .hops
        .iter()
        .filter(|h| h.inconsistent())
        .map(|h| {
            format!(
                "{} received {}, more than the {} {} sent{}",
                h.hop,
                h.received.map_or("?".into(), count),
                h.offered.map_or("?".into(), count),
                h.upstream,
                if h.kernel_drops.is_some_and(|k| k > 0) || h.link_drops.is_some_and(|l| l > 0) {
                    " less the drops before it"
                } else {
                    ""
                }
            )
        })
        .collect();
    if let Some(d) = w.delivery.as_ref().filter(|d| d.inconsistent()) {
        out.push(format!(
            "the receiver got {}, more than the {} {} sent",
            d.received.map_or("?".into(), count),
            d.offered.map_or("?".into(), count),
            d.upstream
        ));
    }
    out
}
