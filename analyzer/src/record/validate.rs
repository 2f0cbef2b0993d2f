//! What serde cannot check in a run record: names present, durations above 0, rates finite
//! and non-negative, percentiles in range, conservation stages balanced, and no packet count
//! above [`MAX_COUNT`]. Every refusal names the file and the field.

use std::path::Path;

use super::{Conservation, RunRecord};
use crate::error::{Error, Result};

impl RunRecord {
    /// Checks what serde cannot: names present, rates finite and non-negative, percentiles in range.
    pub fn validate(&self, path: &Path) -> Result<()> {
        if self.name.trim().is_empty() {
            return Err(Error::field(path, "name", "must not be empty"));
        }
        if self.duration_ns == Some(0) {
            return Err(Error::field(path, "duration_ns", "must be greater than 0"));
        }
        self.check_counts(path)?;
        let rate = |field: String, v: Option<f64>| match v {
            Some(x) if !x.is_finite() || x < 0.0 => Err(Error::field(
                path,
                field,
                format!("{x} is not a non-negative rate"),
            )),
            _ => Ok(()),
        };
        if let Some(g) = &self.generator {
            rate("generator.reported_pps".into(), g.reported_pps)?;
            if g.elapsed_ns == Some(0) {
                return Err(Error::field(
                    path,
                    "generator.elapsed_ns",
                    "must be greater than 0",
                ));
            }
        }
        for (i, hop) in self.hops.iter().enumerate() {
            if hop.name.trim().is_empty() {
                return Err(Error::field(
                    path,
                    format!("hops[{i}].name"),
                    "must not be empty",
                ));
            }
            rate(format!("hops[{i}].reported.rx_pps"), hop.reported.rx_pps)?;
            rate(format!("hops[{i}].reported.tx_pps"), hop.reported.tx_pps)?;
            if let Some(p) = hop.reported.buf_exhaust_pct {
                if !(0.0..=100.0).contains(&p) {
                    return Err(Error::field(
                        path,
                        format!("hops[{i}].reported.buf_exhaust_pct"),
                        format!("{p} is not a percentage (0..=100)"),
                    ));
                }
            }
            if hop.duration_ns == Some(0) {
                return Err(Error::field(
                    path,
                    format!("hops[{i}].duration_ns"),
                    "must be greater than 0",
                ));
            }
        }
        if let Some(r) = &self.receiver {
            rate("receiver.reported_pps".into(), r.reported_pps)?;
            for (i, p) in r.latency.iter().enumerate() {
                if !(0.0..=100.0).contains(&p.percentile) {
                    return Err(Error::field(
                        path,
                        format!("receiver.latency[{i}].percentile"),
                        format!("{} is not a percentile (0..=100)", p.percentile),
                    ));
                }
            }
        }
        if let Some(x) = self.sweep.as_ref().and_then(|s| s.max_loss_ratio) {
            if !x.is_finite() || x < 0.0 {
                return Err(Error::field(
                    path,
                    "sweep.max_loss_ratio",
                    format!("{x} is not a non-negative ratio"),
                ));
            }
        }
        if let Some(h) = &self.host_cpu {
            if h.window_ns == Some(0) {
                return Err(Error::field(
                    path,
                    "host_cpu.window_ns",
                    "must be greater than 0",
                ));
            }
        }
        for (i, l) in self.kernel.links.iter().enumerate() {
            if l.from.trim().is_empty() || l.to.trim().is_empty() {
                return Err(Error::field(
                    path,
                    format!("kernel.links[{i}]"),
                    "`from` and `to` must name both ends",
                ));
            }
        }
        if let Some((i, wrong)) = self
            .conservation
            .as_ref()
            .and_then(Conservation::unbalanced_stage)
        {
            return Err(Error::field(
                path,
                format!("conservation.stages[{i}].unexplained"),
                wrong,
            ));
        }
        Ok(())
    }
}

/// The largest packet count a record may hold: 2^53, the largest integer an `f64` holds exactly
/// (metrics are computed in `f64`), and so small that sums and differences of a record's
/// counters never overflow. 2^53 packets take 2.8 years at 100M pps; a larger value is a counter
/// that wrapped (`u64::MAX` is what `0 - 1` becomes) or was never set.
pub const MAX_COUNT: u64 = 1 << 53;

/// Refuses a packet count above [`MAX_COUNT`], naming its field.
fn check_count(path: &Path, field: impl FnOnce() -> String, v: Option<u64>) -> Result<()> {
    match v {
        Some(n) if n > MAX_COUNT => Err(Error::field(
            path,
            field(),
            format!(
                "{n} is not a real count (more than 2^53 = {MAX_COUNT}): the producer's counter wrapped{}",
                if n == u64::MAX { " (u64::MAX is 0 - 1)" } else { "" }
            ),
        )),
        _ => Ok(()),
    }
}

impl RunRecord {
    /// Refuses any packet count above [`MAX_COUNT`], so that no sum or difference of counters
    /// computed from the record can wrap.
    fn check_counts(&self, path: &Path) -> Result<()> {
        if let Some(g) = &self.generator {
            for (name, v) in [
                ("sent", g.sent),
                ("send_errors", g.send_errors),
                ("end_markers_sent", g.end_markers_sent),
            ] {
                check_count(path, || format!("generator.{name}"), v)?;
            }
        }
        for (i, h) in self.hops.iter().enumerate() {
            for (name, v) in h.counters.named() {
                check_count(path, || format!("hops[{i}].counters.{name}"), v)?;
            }
            for (k, f) in h.streams.iter().enumerate() {
                for (name, v) in f.named() {
                    check_count(path, || format!("hops[{i}].streams[{k}].{name}"), Some(v))?;
                }
            }
            for (errno, &v) in &h.tx_errors_by_errno {
                check_count(
                    path,
                    || format!("hops[{i}].tx_errors_by_errno.{errno}"),
                    Some(v),
                )?;
            }
        }
        if let Some(r) = &self.receiver {
            for (name, v) in [
                ("received", r.received),
                ("lost", r.lost),
                ("duplicates", r.duplicates),
                ("reordered", r.reordered),
                ("late", r.late),
                ("end_markers_received", r.end_markers_received),
                ("socket_drops", r.socket_drops),
            ] {
                check_count(path, || format!("receiver.{name}"), v)?;
            }
            for (k, st) in r.streams.iter().enumerate() {
                for (name, v) in st.named() {
                    check_count(path, || format!("receiver.streams[{k}].{name}"), Some(v))?;
                }
            }
        }
        for (i, l) in self.kernel.links.iter().enumerate() {
            for (name, v) in [
                ("tx_packets", l.tx_packets),
                ("tx_dropped", l.tx_dropped),
                ("rx_packets", l.rx_packets),
                ("rx_dropped", l.rx_dropped),
            ] {
                check_count(path, || format!("kernel.links[{i}].{name}"), v)?;
            }
        }
        for (i, n) in self.kernel.namespaces.iter().enumerate() {
            for (name, v) in [
                ("in_errors", n.in_errors),
                ("rcvbuf_errors", n.rcvbuf_errors),
                ("sndbuf_errors", n.sndbuf_errors),
            ] {
                check_count(path, || format!("kernel.namespaces[{i}].{name}"), v)?;
            }
        }
        check_count(
            path,
            || "kernel.softnet_dropped".into(),
            self.kernel.softnet_dropped,
        )?;
        if let Some(c) = &self.conservation {
            for (i, st) in c.stages.iter().enumerate() {
                for (name, v) in [("in", st.input), ("dropped", st.dropped), ("out", st.out)] {
                    check_count(path, || format!("conservation.stages[{i}].{name}"), Some(v))?;
                }
            }
        }
        Ok(())
    }
}
