//! The loss waterfall of one run: what each hop received, forwarded and dropped, where the
//! rest went, and the streams the relays monitored.

use std::fmt::Write;

use super::{escape_cell, table_head};
use crate::render::fmt::{count, percent, signed};
use crate::waterfall::{HopFlow, Waterfall};

fn cell(n: Option<u64>, of: Option<u64>) -> String {
    match (n, of) {
        (Some(n), Some(d)) if d > 0 && n > 0 => {
            format!("{} ({})", count(n), percent(n as f64 / d as f64 * 100.0))
        }
        (Some(n), _) => count(n),
        (None, _) => "*not reported*".into(),
    }
}

pub(super) fn waterfall(o: &mut String, w: &Waterfall) {
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
        crate::render::stream_loss::section(o, &w.streams);
        return;
    }
    table_head(o, "Step", w.hops.iter().map(|h| h.hop.as_str()), "---:");
    let row = |o: &mut String, label: &str, f: &dyn Fn(&HopFlow) -> String| {
        let mut line = format!("| {} |", escape_cell(label));
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
    for i in crate::render::sentences::inconsistencies(w) {
        let _ = writeln!(
            o,
            "- **The record is inconsistent:** {i}. The counters cannot come from one run over one window (a stale or foreign counter, or traffic that was not the generator's), so no loss is computed from them."
        );
    }
    delivery(o, w);
    kernel_and_verdict(o, w);
    crate::render::stream_loss::section(o, &w.streams);
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
