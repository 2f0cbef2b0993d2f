//! Number formatting in the seed report's style: `689k pps`, `86%`, `-68%`, `+49 pp`,
//! `9,940,000`, `14.43 s`.

use crate::metrics::Unit;

/// `9940000` -> `9,940,000`.
pub fn count(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A signed count: `-5,182`.
pub fn signed(n: i64) -> String {
    if n < 0 {
        format!("-{}", count(n.unsigned_abs()))
    } else {
        count(n as u64)
    }
}

/// A rate: `689k pps`, `1.23M pps`, `950 pps`.
pub fn pps(x: f64) -> String {
    if x >= 999_500.0 {
        format!("{:.2}M pps", x / 1e6)
    } else if x >= 1_000.0 {
        format!("{:.0}k pps", x / 1e3)
    } else {
        format!("{x:.0} pps")
    }
}

/// A percentage with precision that fits its size: `86%`, `4.2%`, `0.07%`.
pub fn percent(x: f64) -> String {
    let a = x.abs();
    if a > 0.0 && a < 0.01 {
        format!("{}0.01%", if x < 0.0 { ">-" } else { "<" })
    } else if a >= 10.0 || a == 0.0 {
        format!("{x:.0}%")
    } else if a >= 1.0 {
        format!("{x:.1}%")
    } else {
        format!("{x:.2}%")
    }
}

/// Nanoseconds as a latency: `850 ns`, `12.3 µs`, `1.50 ms`.
pub fn latency(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.1} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

/// Seconds from nanoseconds: `14.43 s`.
pub fn seconds(ns: u64) -> String {
    format!("{:.2} s", ns as f64 / 1e9)
}

/// A metric value in its unit.
pub fn value(unit: Unit, x: f64) -> String {
    match unit {
        Unit::Pps => pps(x),
        Unit::Percent => percent(x),
        Unit::NsPerPacket => format!("{} ns/pkt", count(x.round() as u64)),
        Unit::Nanos => latency(x),
        Unit::Packets => format!("{} packets", count(x.round() as u64)),
    }
}

/// A change: `+41%`, `-5%`, `+0.4%`, or `+49 pp` for percentages.
pub fn change(unit: Unit, c: f64) -> String {
    let sign = if c > 0.0 {
        "+"
    } else if c < 0.0 {
        "-"
    } else {
        "±"
    };
    let a = c.abs();
    let digits = if a >= 1.0 || a == 0.0 { 0 } else { 1 };
    let suffix = if unit == Unit::Percent { " pp" } else { "%" };
    format!("{sign}{a:.digits$}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_style() {
        assert_eq!(count(9_940_000), "9,940,000");
        assert_eq!(count(58), "58");
        assert_eq!(count(1_405_182), "1,405,182");
        assert_eq!(signed(-5_182), "-5,182");
        assert_eq!(pps(688_842.7), "689k pps");
        assert_eq!(pps(97_379.0), "97k pps");
        assert_eq!(pps(3_400_000.0), "3.40M pps");
        assert_eq!(percent(85.86), "86%");
        assert_eq!(percent(4.25), "4.2%");
        assert_eq!(percent(0.0006), "<0.01%");
        assert_eq!(percent(0.0), "0%");
        assert_eq!(change(Unit::Pps, 40.58), "+41%");
        assert_eq!(change(Unit::Pps, -5.47), "-5%");
        assert_eq!(change(Unit::Pps, 0.4), "+0.4%");
        assert_eq!(change(Unit::Percent, 48.86), "+49 pp");
        assert_eq!(latency(12_300.0), "12.3 µs");
        assert_eq!(seconds(14_430_000_000), "14.43 s");
    }
}
