//! The waterfall's stream-loss section (Markdown): one table per monitored stream, a column
//! per point that counted it, and the sentences that say on which link its loss appeared.

use std::fmt::Write;

use super::fmt::{count, signed};
use super::markdown::escape_cell;
use crate::record::StreamKind;
use crate::stream_loss::{Point, StreamPath};

/// Appends the section for `paths` (nothing without monitored streams).
pub fn section(o: &mut String, paths: &[StreamPath]) {
    if paths.is_empty() {
        return;
    }
    let _ = writeln!(
        o,
        "\n**Stream loss**, as each hop's monitor (rules with `monitor`) and the receiver counted what they received:\n"
    );
    for (i, p) in paths.iter().enumerate() {
        if i > 0 {
            o.push('\n');
        }
        table(o, p);
        sentences(o, p);
    }
}

fn table(o: &mut String, p: &StreamPath) {
    let kind = match p.kind {
        StreamKind::Rtp => "RTP",
        StreamKind::Mpegts => "MPEG-TS",
    };
    let mut head = format!("| `{}` ({kind}) |", escape_cell(&p.rule));
    let mut rule = "|---|".to_string();
    for pt in &p.points {
        let _ = write!(head, " {} |", escape_cell(&pt.at));
        rule.push_str("---:|");
    }
    let _ = writeln!(o, "{head}\n{rule}");
    let (gaps, lost, repeats) = match p.kind {
        StreamKind::Rtp => (
            "Sequence gaps",
            "Lost sequence numbers",
            "Repeats (duplicates, reordered)",
        ),
        StreamKind::Mpegts => (
            "Continuity-counter errors",
            "Lost TS packets (at least)",
            "Repeated counters",
        ),
    };
    let row = |o: &mut String, label: &str, f: &dyn Fn(&Point) -> String| {
        let mut line = format!("| {label} |");
        for pt in &p.points {
            let _ = write!(line, " {} |", f(pt));
        }
        let _ = writeln!(o, "{line}");
    };
    row(o, "Datagrams received", &|pt| count(pt.datagrams));
    if p.points.iter().any(|pt| pt.foreign.is_some_and(|f| f > 0)) {
        row(o, "Of them not of the format (not checked)", &|pt| {
            pt.foreign.map_or("*not counted*".into(), count)
        });
    }
    row(o, gaps, &|pt| pt.gaps.map_or("*not counted*".into(), count));
    row(o, lost, &|pt| count(pt.lost));
    row(o, repeats, &|pt| count(pt.repeats));
    row(o, "**New since the point before**", &|pt| {
        format!("**{}**", signed(pt.new_loss))
    });
    row(o, "Dropped by the hop before, itself (datagrams)", &|pt| {
        pt.upstream_dropped.map_or("—".into(), count)
    });
    o.push('\n');
}

fn sentences(o: &mut String, p: &StreamPath) {
    let first_cause = p.first_loss().filter(|&k| k > 0).map(|k| cause(p, k));
    let _ = writeln!(
        o,
        "- **{}.**{}",
        capitalized(&super::sentences::localization(p)),
        first_cause.unwrap_or_default()
    );
    let first = p.first_loss().unwrap_or(p.points.len());
    for k in 1..p.points.len() {
        let (up, pt) = (&p.points[k - 1], &p.points[k]);
        if pt.new_loss < 0 {
            let _ = writeln!(
                o,
                "- {} counted {} fewer {} lost than {}: the two counts cover different windows (a monitor that started later, or a relay that restarted), so nothing is said about that link.",
                capitalized(pt.name()),
                count(pt.new_loss.unsigned_abs()),
                p.unit(),
                up.name()
            );
        } else if k > first && pt.new_loss > 0 {
            let _ = writeln!(
                o,
                "- Then {} more between {} and {}.{}",
                super::sentences::amount(p, pt.new_loss as u64),
                up.name(),
                pt.name(),
                cause(p, k)
            );
        }
    }
    match p.kind {
        StreamKind::Rtp => {
            let repeats: u64 = p
                .points
                .iter()
                .filter(|pt| !pt.receiver)
                .map(|pt| pt.repeats)
                .sum();
            if repeats > 0 {
                let _ = writeln!(
                    o,
                    "- A relay counts a reordered packet as lost at its gap (and then as a repeat): with {} repeats at the hops, their losses may be up to that many too high. The receiver's count is exact.",
                    count(repeats)
                );
            }
        }
        StreamKind::Mpegts => {
            let _ = writeln!(
                o,
                "- What continuity counters resolve: an error means at least one TS packet of that PID was lost; the 4-bit counter gives the count modulo 16 (a gap of k is k, k + 16, … packets, counted as k), so lost TS packets are a lower bound, and 16 lost in a row of one PID, lost packets without payload or a PID's last packets leave no error. A lost datagram of 7 TS packets shows as one error per PID it carried."
            );
        }
    }
}

/// What the hop before point `k` said about its own part in the loss.
fn cause(p: &StreamPath, k: usize) -> String {
    let (up, pt) = (&p.points[k - 1], &p.points[k]);
    match pt.upstream_dropped {
        Some(0) => format!(
            " {} dropped none of the flow itself: it was lost on the link from {} to {}, or in the kernel at either end.",
            up.name(),
            up.name(),
            pt.name()
        ),
        // RTP counts datagrams, so the relay's own drops can be taken from the loss.
        Some(d) if p.kind == StreamKind::Rtp && pt.new_loss >= d as i64 => {
            let rest = pt.new_loss - d as i64;
            format!(
                " {} itself dropped {} of the flow's datagrams (buffer exhaustion, send errors){}.",
                up.name(),
                count(d),
                if rest == 0 {
                    ": all of them".to_string()
                } else {
                    format!(
                        "; the other {} were lost on the link from {} to {}, or in the kernel at either end",
                        count(rest as u64),
                        up.name(),
                        pt.name()
                    )
                }
            )
        }
        Some(d) => format!(
            " {} itself dropped {} of the flow's datagrams (buffer exhaustion, send errors); any loss beyond what they carried was on the link from {} to {}, or in the kernel at either end.",
            up.name(),
            count(d),
            up.name(),
            pt.name()
        ),
        None => String::new(),
    }
}

fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(at: &str, lost: u64, repeats: u64, new_loss: i64, dropped: Option<u64>) -> Point {
        Point {
            at: at.into(),
            receiver: at == "receiver",
            datagrams: 1000,
            foreign: (at != "receiver").then_some(0),
            gaps: Some(lost.min(1)),
            lost,
            repeats,
            new_loss,
            upstream_dropped: dropped,
        }
    }

    #[test]
    fn rtp_sentences_take_the_relays_drops_out_and_flag_windows_and_repeats() {
        let path = StreamPath {
            rule: "cam".into(),
            kind: StreamKind::Rtp,
            points: vec![
                point("A", 0, 0, 0, None),
                point("B", 10, 2, 10, Some(4)),
                point("receiver", 7, 0, -3, Some(0)),
            ],
        };
        let mut o = String::new();
        section(&mut o, &[path]);
        for want in [
            "| `cam` (RTP) | A | B | receiver |",
            "| **New since the point before** | **0** | **10** | **-3** |",
            "- **Sequence gaps first appear at B, not at A: 10 sequence numbers lost between A and B.** A itself dropped 4 of the flow's datagrams (buffer exhaustion, send errors); the other 6 were lost on the link from A to B, or in the kernel at either end.",
            "- The receiver counted 3 fewer sequence numbers lost than B: the two counts cover different windows",
            "with 2 repeats at the hops, their losses may be up to that many too high",
        ] {
            assert!(o.contains(want), "missing {want}\n{o}");
        }
        assert!(!o.contains("continuity"), "no MPEG-TS note for RTP");
    }

    /// Rule and relay names come from the user's files: a `|` in one keeps every row of the
    /// table at the heading's number of cells.
    #[test]
    fn a_bar_in_a_rule_or_relay_name_stays_in_its_cell() {
        let path = StreamPath {
            rule: "cam|1".into(),
            kind: StreamKind::Rtp,
            points: vec![
                point("A|east", 0, 0, 0, None),
                point("receiver", 3, 0, 3, Some(0)),
            ],
        };
        let mut o = String::new();
        section(&mut o, &[path]);
        let rows: Vec<&str> = o.lines().filter(|l| l.starts_with('|')).collect();
        assert!(rows[0].contains("`cam\\|1` (RTP) | A\\|east |"), "{o}");
        for row in &rows {
            assert_eq!(
                crate::render::markdown::tests::cells(row).len(),
                3,
                "{row}\n{o}"
            );
        }
    }
}
