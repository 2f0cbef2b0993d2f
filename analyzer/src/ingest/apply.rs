//! Maps parsed text counter lines onto the parts of a run record.
//!
//! Each role (generator, hop, receiver, host) knows the names its numbers go by in the logs we
//! read (the seed's `recv`/`egr_sent`, our own `rx`/`tx_sent`, generator summaries). A counter
//! must be an exact whole number: `1.4M` is a rounded figure, and a record never holds a guessed
//! counter. A rate or a percentage is kept as reported, apart from the counters.

use std::path::Path;

use super::text::{last, Entry, Number, Unit};
use crate::error::{Error, Result};
use crate::record::{Generator, Hop, HostCpu, Percentile, ProcessCpu, Receiver, Setting};

/// Names by which each field appears in logs.
mod keys {
    pub const GEN_SENT: &[&str] = &[
        "total_packets_sent",
        "packets_sent",
        "sent",
        "tx",
        "total_sent",
    ];
    pub const GEN_ERRORS: &[&str] = &["send_errors", "errors", "failed_sends"];
    pub const ELAPSED: &[&str] = &["elapsed_time", "elapsed", "duration", "uptime"];
    pub const GEN_RATE: &[&str] = &[
        "actual_packet_rate",
        "packet_rate",
        "rate",
        "pps",
        "achieved_rate",
    ];
    pub const TARGET: &[&str] = &["target_rate", "target_pps", "target"];
    pub const RX: &[&str] = &["recv", "rx", "received", "rx_packets", "ingress_recv"];
    pub const RX_RATE: &[&str] = &[
        "ingress",
        "ingress_rate",
        "rx_rate",
        "rx_pps",
        "ingress_receive_rate",
    ];
    pub const TX: &[&str] = &["egr_sent", "tx_sent", "egress_sent", "tx", "sent"];
    pub const TX_RATE: &[&str] = &[
        "egress",
        "egress_rate",
        "tx_rate",
        "tx_pps",
        "egress_send_rate",
    ];
    pub const EXHAUST: &[&str] = &["buf_exhaust", "buffer_exhaustion", "buf_exhausted"];
    pub const KDROPS: &[&str] = &["kernel_drops", "kdrops"];
    pub const FILTERED: &[&str] = &["filtered"];
    pub const MALFORMED: &[&str] = &["malformed"];
    pub const NO_MATCH: &[&str] = &["no_match", "nomatch", "unmatched"];
    pub const MATCHED: &[&str] = &["matched"];
    pub const COPIES: &[&str] = &["output_copies", "copies"];
    pub const RX_FRAMES: &[&str] = &["rx_frames", "frames"];
    pub const TX_ERRORS: &[&str] = &["tx_errors", "egr_errors", "egress_errors"];
    pub const IN_FLIGHT: &[&str] = &["in_flight"];
    pub const TX_SYSCALLS: &[&str] = &["tx_syscalls"];
    pub const CPU_USER: &[&str] = &["cpu_user", "user", "utime"];
    pub const CPU_SYSTEM: &[&str] = &["cpu_system", "system", "sys", "stime"];
    pub const SOFTIRQ: &[&str] = &["softirq", "cpu_softirq"];
    pub const IRQ: &[&str] = &["irq", "cpu_irq"];
    pub const BUSY: &[&str] = &["busy", "cpu_clock", "cpu_busy"];
    pub const RECEIVED: &[&str] = &["received", "recv", "rx", "total_packets_received"];
    pub const LOST: &[&str] = &["lost", "loss"];
    pub const DUPS: &[&str] = &["duplicates", "dups", "duplicated"];
    pub const REORDERED: &[&str] = &["reordered", "out_of_order"];
    pub const LATE: &[&str] = &["late"];
    pub const MARKERS_SENT: &[&str] = &["end_markers_sent", "end_markers"];
    pub const MARKERS_RECEIVED: &[&str] = &["end_markers_received", "end_markers"];
}

/// An exact counter, or an error when the value is a rate, a rounded figure or a fraction.
fn counter(path: &Path, e: &Entry, n: Number) -> Result<u64> {
    n.as_count().ok_or_else(|| {
        e.error(
            path,
            format!("\"{}\" is not an exact packet count (a counter must be a whole number without k/M)", e.raw),
        )
    })
}

fn count(path: &Path, entries: &[Entry], names: &[&str]) -> Result<Option<u64>> {
    match last(path, entries, names)? {
        Some(e) => counter(path, e, e.number.expect("checked by last")).map(Some),
        None => Ok(None),
    }
}

fn time_ns(path: &Path, entries: &[Entry], names: &[&str]) -> Result<Option<u64>> {
    match last(path, entries, names)? {
        Some(e) => e.number.and_then(|n| n.as_ns()).map(Some).ok_or_else(|| {
            e.error(
                path,
                format!("\"{}\" has no time unit (s, ms, us or ns)", e.raw),
            )
        }),
        None => Ok(None),
    }
}

/// A duration that rates are divided by: it must be positive.
fn duration_ns(path: &Path, entries: &[Entry], names: &[&str]) -> Result<Option<u64>> {
    let v = time_ns(path, entries, names)?;
    if v == Some(0) {
        let e = last(path, entries, names)?.expect("a value was found");
        return Err(e.error(path, "a duration of 0 cannot divide a counter"));
    }
    Ok(v)
}

/// A rate in packets/s: a number with `pps`, or a bare number under a rate's name.
fn rate(path: &Path, entries: &[Entry], names: &[&str]) -> Result<Option<f64>> {
    match last(path, entries, names)? {
        Some(e) => {
            let n = e.number.expect("checked by last");
            match n.unit {
                Unit::Pps | Unit::Count => Ok(Some(n.value)),
                _ => Err(e.error(path, format!("\"{}\" is not a rate in pps", e.raw))),
            }
        }
        None => Ok(None),
    }
}

/// A value given under a counter's name: the counter itself, plus a rate or a percentage
/// either instead of it (`buf_exhaust=37%`) or in parentheses after it (`(97k pps)`).
struct Mixed {
    count: Option<u64>,
    pps: Option<f64>,
    pct: Option<f64>,
}

fn mixed(path: &Path, entries: &[Entry], names: &[&str]) -> Result<Mixed> {
    let mut m = Mixed {
        count: None,
        pps: None,
        pct: None,
    };
    let Some(e) = last(path, entries, names)? else {
        return Ok(m);
    };
    let n = e.number.expect("checked by last");
    match n.unit {
        Unit::Pps => m.pps = Some(n.value),
        Unit::Percent => m.pct = Some(n.value),
        _ => m.count = Some(counter(path, e, n)?),
    }
    for (_, x) in &e.extra {
        match x.unit {
            Unit::Pps => m.pps = Some(x.value),
            Unit::Percent => m.pct = Some(x.value),
            _ => {}
        }
    }
    Ok(m)
}

/// Fills `hop` from text counter lines. Errors when nothing was recognised, so a wrong file
/// is never taken for a hop that counted nothing.
pub fn hop(path: &Path, entries: &[Entry], hop: &mut Hop) -> Result<()> {
    let c = &mut hop.counters;
    let rx = mixed(path, entries, keys::RX)?;
    let tx = mixed(path, entries, keys::TX)?;
    let ex = mixed(path, entries, keys::EXHAUST)?;
    set(&mut c.rx, rx.count);
    set(&mut c.tx_sent, tx.count);
    set(&mut c.buf_exhaust, ex.count);
    set(&mut c.kernel_drops, count(path, entries, keys::KDROPS)?);
    set(&mut c.filtered, count(path, entries, keys::FILTERED)?);
    set(&mut c.malformed, count(path, entries, keys::MALFORMED)?);
    set(&mut c.no_match, count(path, entries, keys::NO_MATCH)?);
    set(&mut c.matched, count(path, entries, keys::MATCHED)?);
    set(&mut c.output_copies, count(path, entries, keys::COPIES)?);
    set(&mut c.rx_frames, count(path, entries, keys::RX_FRAMES)?);
    set(&mut c.tx_errors, count(path, entries, keys::TX_ERRORS)?);
    set(&mut c.in_flight, count(path, entries, keys::IN_FLIGHT)?);
    set(&mut c.tx_syscalls, count(path, entries, keys::TX_SYSCALLS)?);
    let r = &mut hop.reported;
    set(
        &mut r.rx_pps,
        rate(path, entries, keys::RX_RATE)?.or(rx.pps),
    );
    set(
        &mut r.tx_pps,
        rate(path, entries, keys::TX_RATE)?.or(tx.pps),
    );
    set(&mut r.buf_exhaust_pct, ex.pct);
    set(
        &mut hop.duration_ns,
        duration_ns(path, entries, keys::ELAPSED)?,
    );
    let user = time_ns(path, entries, keys::CPU_USER)?;
    let system = time_ns(path, entries, keys::CPU_SYSTEM)?;
    if user.is_some() || system.is_some() {
        let cpu = hop.cpu.get_or_insert_with(ProcessCpu::default);
        set(&mut cpu.user_ns, user);
        set(&mut cpu.system_ns, system);
    }
    if hop.counters == Default::default() && hop.reported.is_empty() && hop.cpu.is_none() {
        return Err(Error::format(
            path,
            "no relay counters recognised (expected lines like `recv=9,940,000 egr_sent=1,405,182 buf_exhaust=8,534,699`)",
        ));
    }
    Ok(())
}

/// Fills the generator from its summary lines; a `(target: N pps)` goes to the configuration.
pub fn generator(
    path: &Path,
    entries: &[Entry],
    g: &mut Generator,
    config: &mut std::collections::BTreeMap<String, Setting>,
) -> Result<()> {
    set(&mut g.sent, count(path, entries, keys::GEN_SENT)?);
    set(&mut g.send_errors, count(path, entries, keys::GEN_ERRORS)?);
    set(
        &mut g.end_markers_sent,
        count(path, entries, keys::MARKERS_SENT)?,
    );
    set(
        &mut g.elapsed_ns,
        duration_ns(path, entries, keys::ELAPSED)?,
    );
    set(&mut g.reported_pps, rate(path, entries, keys::GEN_RATE)?);
    let mut target = rate(path, entries, keys::TARGET)?;
    for e in entries
        .iter()
        .filter(|e| keys::GEN_RATE.contains(&e.key.as_str()))
    {
        for (label, n) in &e.extra {
            if label.as_deref() == Some("target") {
                target = Some(n.value);
            }
        }
    }
    if let Some(t) = target {
        config.insert("target_pps".into(), Setting::from(t.round() as u64));
    }
    if g.sent.is_none() && g.elapsed_ns.is_none() && g.reported_pps.is_none() {
        return Err(Error::format(
            path,
            "no generator figures recognised (expected `Total packets sent: N`, `Elapsed time: Ns` or `Actual packet rate: N pps`)",
        ));
    }
    Ok(())
}

/// Fills the receiver; latency lines are `p50=12us`, `latency_p99: 1.2ms`.
pub fn receiver(path: &Path, entries: &[Entry], r: &mut Receiver) -> Result<()> {
    set(&mut r.received, count(path, entries, keys::RECEIVED)?);
    set(&mut r.lost, count(path, entries, keys::LOST)?);
    set(&mut r.duplicates, count(path, entries, keys::DUPS)?);
    set(&mut r.reordered, count(path, entries, keys::REORDERED)?);
    set(&mut r.late, count(path, entries, keys::LATE)?);
    set(
        &mut r.end_markers_received,
        count(path, entries, keys::MARKERS_RECEIVED)?,
    );
    set(
        &mut r.elapsed_ns,
        duration_ns(path, entries, keys::ELAPSED)?,
    );
    set(&mut r.reported_pps, rate(path, entries, keys::GEN_RATE)?);
    for e in entries {
        let k = e.key.trim_start_matches("latency_");
        let Some(q) = k
            .strip_prefix('p')
            .and_then(|q| q.replace('_', ".").parse::<f64>().ok())
        else {
            continue;
        };
        let ns = e.number.and_then(|n| n.as_ns()).ok_or_else(|| {
            e.error(
                path,
                format!("\"{}\" is not a latency with a time unit", e.raw),
            )
        })?;
        r.latency.retain(|p| p.percentile != q);
        r.latency.push(Percentile {
            percentile: q,
            latency_ns: ns,
        });
    }
    r.latency
        .sort_by(|a, b| a.percentile.total_cmp(&b.percentile));
    if r.received.is_none() && r.lost.is_none() && r.reported_pps.is_none() && r.latency.is_empty()
    {
        return Err(Error::format(
            path,
            "no receiver figures recognised (expected `received=N lost=N`)",
        ));
    }
    Ok(())
}

/// Host CPU time over the run: `user=12.5s system=3.1s softirq=4.0s`.
pub fn host(path: &Path, entries: &[Entry], h: &mut HostCpu) -> Result<()> {
    set(&mut h.user_ns, time_ns(path, entries, keys::CPU_USER)?);
    set(&mut h.system_ns, time_ns(path, entries, keys::CPU_SYSTEM)?);
    set(&mut h.softirq_ns, time_ns(path, entries, keys::SOFTIRQ)?);
    set(&mut h.irq_ns, time_ns(path, entries, keys::IRQ)?);
    set(&mut h.busy_ns, time_ns(path, entries, keys::BUSY)?);
    if *h == HostCpu::default() {
        return Err(Error::format(
            path,
            "no host CPU times recognised (expected `user=12.5s system=3.1s softirq=4s`)",
        ));
    }
    Ok(())
}

/// Later inputs fill what earlier ones left unknown, and override what they knew.
fn set<T>(slot: &mut Option<T>, value: Option<T>) {
    if value.is_some() {
        *slot = value;
    }
}

#[cfg(test)]
mod tests {
    use super::super::text::parse;
    use super::*;

    const SEED_MCR1: &str = "recv=9,940,000 packets\negr_sent=1,405,182 packets\n\
        buf_exhaust=8,534,699 packets (86% buffer exhaustion!)\nfiltered=58\nno_match=60\n";

    #[test]
    fn seed_hop_counters() {
        let mut h = Hop::default();
        hop(Path::new("m"), &parse(SEED_MCR1), &mut h).unwrap();
        assert_eq!(h.counters.rx, Some(9_940_000));
        assert_eq!(h.counters.tx_sent, Some(1_405_182));
        assert_eq!(h.counters.buf_exhaust, Some(8_534_699));
        assert_eq!(h.counters.filtered, Some(58));
        assert_eq!(h.counters.no_match, Some(60));
        assert_eq!(h.counters.kernel_drops, None, "not reported stays unknown");
        assert_eq!(h.reported.buf_exhaust_pct, Some(86.0));
    }

    #[test]
    fn rate_only_hop_keeps_rates_apart_from_counters() {
        let mut h = Hop::default();
        hop(
            Path::new("m"),
            &parse("ingress=490k pps\negress=307k pps\nbuf_exhaust=37%\n"),
            &mut h,
        )
        .unwrap();
        assert_eq!(h.counters, Default::default());
        assert_eq!(h.reported.rx_pps, Some(490_000.0));
        assert_eq!(h.reported.tx_pps, Some(307_000.0));
        assert_eq!(h.reported.buf_exhaust_pct, Some(37.0));
    }

    #[test]
    fn rounded_counter_is_refused() {
        let mut h = Hop::default();
        let e = hop(Path::new("m.txt"), &parse("recv=1.4M\n"), &mut h)
            .unwrap_err()
            .to_string();
        assert!(e.contains("m.txt") && e.contains("recv (line 1)"), "{e}");
    }

    #[test]
    fn unrelated_text_is_not_a_hop() {
        let mut h = Hop::default();
        assert!(hop(Path::new("m"), &parse("hello: world\n"), &mut h).is_err());
    }

    #[test]
    fn seed_generator_summary() {
        let text = "Total packets sent: 10,000,000\nElapsed time: 14.43s\n\
            Actual packet rate: 692,879 pps (target: 1,000,000 pps)\nActual throughput: 7.76 Gbps\n";
        let mut g = Generator::default();
        let mut cfg = Default::default();
        generator(Path::new("g"), &parse(text), &mut g, &mut cfg).unwrap();
        assert_eq!(g.sent, Some(10_000_000));
        assert_eq!(g.elapsed_ns, Some(14_430_000_000));
        assert_eq!(g.reported_pps, Some(692_879.0));
        assert_eq!(cfg["target_pps"], Setting::from(1_000_000u64));
    }

    #[test]
    fn elapsed_without_unit_is_refused() {
        let mut g = Generator::default();
        let e = generator(
            Path::new("g"),
            &parse("Elapsed time: 14.43\n"),
            &mut g,
            &mut Default::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("elapsed_time"), "{e}");
    }

    #[test]
    fn zero_elapsed_time_is_refused_naming_the_file() {
        let mut g = Generator::default();
        let e = generator(
            Path::new("gen.txt"),
            &parse("Total packets sent: 5\nElapsed time: 0s\n"),
            &mut g,
            &mut Default::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("gen.txt") && e.contains("elapsed_time (line 2)"),
            "{e}"
        );
    }

    #[test]
    fn receiver_latency_percentiles() {
        let mut r = Receiver::default();
        receiver(
            Path::new("r"),
            &parse("received=990 lost=10\np99=1.5ms p50=20us\n"),
            &mut r,
        )
        .unwrap();
        assert_eq!(r.received, Some(990));
        assert_eq!(r.latency.len(), 2);
        assert_eq!(r.latency[0].percentile, 50.0);
        assert_eq!(r.latency[1].latency_ns, 1_500_000);
    }

    #[test]
    fn end_markers_are_counters_and_absent_when_not_given() {
        let mut g = Generator::default();
        generator(
            Path::new("g"),
            &parse("Total packets sent: 5\nend_markers_sent=3\n"),
            &mut g,
            &mut Default::default(),
        )
        .unwrap();
        assert_eq!(g.end_markers_sent, Some(3));
        let mut r = Receiver::default();
        receiver(Path::new("r"), &parse("received=5 lost=0\n"), &mut r).unwrap();
        assert_eq!(r.end_markers_received, None, "not given: unknown, not 0");
        let e = receiver(
            Path::new("r.txt"),
            &parse("received=5\nend_markers_received=many\n"),
            &mut r,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("r.txt") && e.contains("end_markers_received"),
            "{e}"
        );
    }
}
