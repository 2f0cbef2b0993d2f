//! The text the small benchmark scripts print ([`crate::bench`]'s numbers): `bench-send.sh`'s
//! table of cases, `scrape-cost.sh`'s report and `bench-rules.sh`'s ping column. Plain text
//! for a terminal, in the layout the scripts printed before their awk and jq moved here (the
//! tables in READMEs are copied from it by hand), so nothing is escaped: the names in it
//! (cases, reader conditions) are those of the directories and files the scripts make.

use std::fmt::Write;

use crate::bench::pings::Pings;
use crate::bench::scrape_cost::{Latency, ScrapeCost};
use crate::bench::send::Case;
use crate::bench::Tail;

/// `bench-send.sh`'s table: one line per case, rates and ns whole, the rate error in percent
/// with three decimals (`-` for an unpaced case), `n/a` for a CPU time no trial measured.
pub fn send(cases: &[Case]) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{:<22} {:>12} {:>14} {:>12}   trials_pps",
        "case", "median_pps", "cpu_ns_per_pkt", "rate_error"
    );
    for c in cases {
        let cpu = c
            .median_cpu_ns_per_pkt
            .map_or("n/a".to_string(), |x| format!("{x:.0}"));
        let err = c
            .median_rate_error_pct
            .map_or("-".to_string(), |x| format!("{x:+.3}%"));
        let trials = c
            .trials
            .iter()
            .map(|t| format!("{:.0}", t.pps))
            .collect::<Vec<_>>()
            .join(" ");
        let _ = writeln!(
            o,
            "{:<22} {:>12.0} {:>14} {:>12}   {trials}",
            c.name, c.median_pps, cpu, err
        );
    }
    o
}

/// `median 0.071 ms, p99 2.900 ms, max 7.900 ms (1000 scrapes)`.
fn tail_ms(t: &Tail, what: &str) -> String {
    format!(
        "median {:.3} ms, p99 {:.3} ms, max {:.3} ms ({} {what})",
        t.median, t.p99, t.max, t.samples
    )
}

fn latency(l: Option<Latency>) -> String {
    match l {
        Some(l) => format!(
            "latency p50 {}, p99 {}, p99.9 {}, max {}",
            l.p50_us, l.p99_us, l.p999_us, l.max_us
        ),
        None => "latency - (no stream received)".into(),
    }
}

/// `scrape-cost.sh`'s report: the time per scrape of an idle mcrd, each run, the readers'
/// times during the traffic, and the medians per condition.
pub fn scrape_cost(s: &ScrapeCost) -> String {
    let mut o = String::new();
    if let Some(i) = &s.idle {
        let _ = writeln!(
            o,
            "time per scrape, mcrd idle, body {} bytes: {}",
            i.body_bytes,
            tail_ms(&i.ms, "scrapes")
        );
    }
    if s.runs.is_empty() {
        return o;
    }
    o.push_str("runs (latency in us):\n");
    for r in &s.runs {
        let _ = writeln!(
            o,
            "  {}-{}: sent {}, received {}, lost {} (relay drops {}, socket drops {}), {}, reads {}",
            r.condition,
            r.repeat,
            r.sent,
            r.received,
            r.lost,
            r.relay_drops,
            r.socket_drops,
            latency(r.latency),
            r.reads
        );
    }
    for c in &s.conditions {
        if let Some(t) = &c.read_ms {
            let what = if c.name == "scrape" {
                "scrapes"
            } else {
                "reads"
            };
            let _ = writeln!(o, "reader {} during traffic: {}", c.name, tail_ms(t, what));
        }
    }
    let mut repeats: Vec<u32> = s.runs.iter().map(|r| r.repeat).collect();
    repeats.sort_unstable();
    repeats.dedup();
    let _ = writeln!(o, "medians over {} repeats (latency in us):", repeats.len());
    for c in &s.conditions {
        let _ = writeln!(
            o,
            "  {}: lost {} (relay drops {}), {}, reads per run {}",
            c.name,
            c.lost,
            c.relay_drops,
            latency(c.latency),
            c.reads_per_run
        );
    }
    o
}

/// `bench-rules.sh`'s ping cell: `4 / 5 / 5 (socket 0.1 / 0.3)`: p50 (the median), p99 and
/// max of the processes in whole ms, p50 and p99 on the socket to 0.1 ms.
pub fn pings(p: &Pings) -> String {
    let mut o = format!(
        "{:.0} / {:.0} / {:.0}",
        p.process.median, p.process.p99, p.process.max
    );
    if let Some(s) = &p.socket {
        let _ = write!(o, " (socket {:.1} / {:.1})", s.median, s.p99);
    }
    o.push('\n');
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::send::Trial;

    #[test]
    fn send_table_lines_up_as_the_script_printed_it() {
        let case = Case {
            name: "paced-1M-1thread".into(),
            trials: [999994.0, 999994.0, 999995.0]
                .map(|pps| Trial {
                    pps,
                    cpu_ns_per_pkt: Some(991.0),
                    rate_error_pct: Some(-0.0006),
                })
                .to_vec(),
            median_pps: 999994.0,
            median_cpu_ns_per_pkt: Some(991.0),
            median_rate_error_pct: Some(-0.0006),
        };
        let unpaced = Case {
            name: "gso32-max".into(),
            trials: vec![],
            median_pps: 1282639.5,
            median_cpu_ns_per_pkt: None,
            median_rate_error_pct: None,
        };
        assert_eq!(
            send(&[case, unpaced]),
            "case                     median_pps cpu_ns_per_pkt   rate_error   trials_pps\n\
             paced-1M-1thread             999994            991      -0.001%   999994 999994 999995\n\
             gso32-max                   1282640            n/a            -   \n"
        );
    }

    #[test]
    fn ping_cell() {
        let t = |median, p99, max| Tail {
            samples: 200,
            median,
            p99,
            max,
        };
        let p = Pings {
            process: t(4.0, 5.0, 6.0),
            socket: Some(t(0.14, 0.31, 2.0)),
        };
        assert_eq!(pings(&p), "4 / 5 / 6 (socket 0.1 / 0.3)\n");
        assert_eq!(pings(&Pings { socket: None, ..p }), "4 / 5 / 6\n");
    }
}
