//! Plain-text counter lines, as printed by relays that have no JSON (the seed's MCR, old logs).
//!
//! Two line shapes are read:
//! * `key=value` pairs, any number per line: `recv=9,940,000 packets (97k pps) buf_exhaust=37%`;
//! * `Label: value`: `Elapsed time: 14.43s`, `Actual packet rate: 692,879 pps (target: 1,000,000 pps)`.
//!
//! A value is a number with optional thousands commas, decimals, a `k`/`M`/`G` multiplier and a
//! unit (`packets`, `pps`, `s`, `ms`, `us`, `ns`, `%`, `Gbps`). A parenthesis after a value holds
//! more values of the same key (`(97k pps)`) or a labelled one (`(target: 1,000,000 pps)`).
//! Keys are normalised to lower case with `_` for spaces and dashes. When a key repeats (periodic
//! stats lines), the last value wins: the counters are cumulative, so the last line is the total.
//! Lines whose key we do not know are ignored (logs are noisy); a known key whose value is not a
//! number is an error naming the file, line and key.

use std::path::Path;

use crate::error::{Error, Result};

/// The unit written after a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// No unit, or `packets`/`pkts`/`frames`/`datagrams`.
    Count,
    Pps,
    Seconds,
    Millis,
    Micros,
    Nanos,
    Percent,
    /// Bits per second (throughput), already multiplied out.
    Bps,
}

/// One parsed number.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Number {
    pub value: f64,
    pub unit: Unit,
    /// True when the text had fewer significant digits than the magnitude (`733k`, `~97k`).
    pub approximate: bool,
}

impl Number {
    /// The value as a whole count, if it is one.
    pub fn as_count(&self) -> Option<u64> {
        (self.unit == Unit::Count && !self.approximate && self.value.fract() == 0.0)
            .then_some(self.value as u64)
    }

    /// The value as nanoseconds, if it is a time.
    pub fn as_ns(&self) -> Option<u64> {
        let scale = match self.unit {
            Unit::Seconds => 1e9,
            Unit::Millis => 1e6,
            Unit::Micros => 1e3,
            Unit::Nanos => 1.0,
            _ => return None,
        };
        Some((self.value * scale).round() as u64)
    }
}

/// One `key = value` found in the text.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// 1-based line number.
    pub line: usize,
    /// Normalised key (`actual_packet_rate`).
    pub key: String,
    /// The value text as written, for error messages.
    pub raw: String,
    /// The main value, or `None` when the text is not a number.
    pub number: Option<Number>,
    /// Values in a parenthesis after the main one, with their own label if they had one.
    pub extra: Vec<(Option<String>, Number)>,
}

impl Entry {
    /// An error about this entry, naming its key and line (`recv (line 2)`).
    pub fn error(&self, path: &Path, message: impl Into<String>) -> Error {
        Error::field(path, format!("{} (line {})", self.key, self.line), message)
    }
}

/// Parses every line of `text`.
pub fn parse(text: &str) -> Vec<Entry> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = clean(line);
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.contains('=') {
            parse_pairs(i + 1, &line, &mut out);
        } else if let Some((k, v)) = line.split_once(':') {
            let key = normalise(k);
            if !key.is_empty() {
                out.push(entry(i + 1, key, v.trim()));
            }
        }
    }
    out
}

/// Removes Markdown decoration (bullets, bold, code ticks) so report excerpts parse too.
fn clean(line: &str) -> String {
    let line = line.trim().trim_start_matches(['-', '*', '>', '|']).trim();
    line.replace("**", "").replace('`', "")
}

fn normalise(key: &str) -> String {
    let mut k = String::new();
    for c in key.trim().chars() {
        if c.is_ascii_alphanumeric() || c == '.' {
            k.push(c.to_ascii_lowercase());
        } else if (c == ' ' || c == '_' || c == '-') && !k.ends_with('_') && !k.is_empty() {
            k.push('_');
        }
    }
    k.trim_end_matches('_').to_string()
}

/// Splits a line into `key=value ...` pairs; the value of a key runs until the next `word=`.
fn parse_pairs(line_no: usize, line: &str, out: &mut Vec<Entry>) {
    let words: Vec<&str> = line.split_whitespace().collect();
    let mut i = 0;
    while i < words.len() {
        if let Some((k, v)) = words[i].split_once('=') {
            let key = normalise(k.rsplit(['[', ']', ',', ';']).next().unwrap_or(k));
            let mut value = v.to_string();
            let mut j = i + 1;
            while j < words.len() && !is_pair(words[j]) {
                value.push(' ');
                value.push_str(words[j]);
                j += 1;
            }
            if !key.is_empty() {
                out.push(entry(line_no, key, value.trim()));
            }
            i = j;
        } else {
            i += 1;
        }
    }
}

fn is_pair(word: &str) -> bool {
    match word.split_once('=') {
        Some((k, _)) => !k.is_empty() && !k.starts_with('('),
        None => false,
    }
}

fn entry(line: usize, key: String, raw: &str) -> Entry {
    let (main, paren) = match raw.find('(') {
        Some(p) => (&raw[..p], Some(raw[p + 1..].trim_end_matches(')'))),
        None => (raw, None),
    };
    let mut extra = Vec::new();
    if let Some(p) = paren {
        // Items are separated by ", " or "; " (a comma without a space is a thousands separator).
        for part in p.split(", ").flat_map(|s| s.split("; ")) {
            let part = part.trim();
            if let Some((label, v)) = part.split_once(':') {
                if let Some(n) = number(v.trim()) {
                    extra.push((Some(normalise(label)), n));
                }
            } else if let Some(n) = number(part) {
                extra.push((None, n));
            }
        }
    }
    Entry {
        line,
        key,
        raw: raw.to_string(),
        number: number(main.trim()),
        extra,
    }
}

/// Parses `~9,940,000 packets`, `14.43s`, `733k pps`, `86%`, `7.76 Gbps`.
pub fn number(text: &str) -> Option<Number> {
    let t = text.trim().trim_start_matches(['~', '≈']).trim();
    let end = t
        .char_indices()
        .find(|&(_, c)| !(c.is_ascii_digit() || c == ',' || c == '.'))
        .map_or(t.len(), |(i, _)| i);
    let digits = &t[..end];
    if digits.is_empty() || !digits.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    if digits.contains(',') && !valid_grouping(digits) {
        return None;
    }
    let plain: String = digits.chars().filter(|&c| c != ',').collect();
    let mut value: f64 = plain.parse().ok()?;
    let mut rest = t[end..].trim_start();
    let mut approximate = text.trim_start().starts_with(['~', '≈']);
    let mult = match rest.chars().next() {
        Some('k') | Some('K') if !rest[1..].starts_with(|c: char| c.is_ascii_alphabetic()) => 1e3,
        Some('M') if !rest[1..].starts_with(|c: char| c.is_ascii_alphabetic()) => 1e6,
        Some('G') if !rest[1..].starts_with(|c: char| c.is_ascii_alphabetic()) => 1e9,
        _ => 1.0,
    };
    if mult != 1.0 {
        value *= mult;
        approximate = true;
        rest = rest[1..].trim_start();
    }
    let word: String = rest
        .chars()
        .take_while(|c| c.is_alphabetic() || *c == '%' || *c == '/')
        .collect();
    let unit = match word.to_ascii_lowercase().as_str() {
        "" | "packets" | "packet" | "pkts" | "frames" | "datagrams" | "times" => Unit::Count,
        "pps" | "packets/s" | "pkt/s" => Unit::Pps,
        "s" | "sec" | "secs" | "seconds" => Unit::Seconds,
        "ms" => Unit::Millis,
        "us" | "µs" | "μs" => Unit::Micros,
        "ns" => Unit::Nanos,
        "%" => Unit::Percent,
        "gbps" => {
            value *= 1e9;
            Unit::Bps
        }
        "mbps" => {
            value *= 1e6;
            Unit::Bps
        }
        // A number followed by a word we don't know is not a counter (e.g. "3 hops").
        _ if word.starts_with('%') => Unit::Percent,
        _ => Unit::Count,
    };
    Some(Number {
        value,
        unit,
        approximate,
    })
}

/// `1,405,182` is grouped by thousands; `1,4` is a list, not a number.
fn valid_grouping(digits: &str) -> bool {
    let int = digits.split('.').next().unwrap_or("");
    let mut groups = int.split(',');
    let first = groups.next().unwrap_or("");
    (1..=3).contains(&first.len()) && groups.all(|g| g.len() == 3)
}

/// Finds the last entry whose key is one of `keys` and returns its number, or an error naming
/// the file, line and key when that entry is not a number.
pub fn last<'a>(path: &Path, entries: &'a [Entry], keys: &[&str]) -> Result<Option<&'a Entry>> {
    match entries
        .iter()
        .rev()
        .find(|e| keys.contains(&e.key.as_str()))
    {
        Some(e) if e.number.is_none() => {
            Err(e.error(path, format!("\"{}\" is not a number", e.raw)))
        }
        other => Ok(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(text: &str) -> Number {
        number(text).unwrap_or_else(|| panic!("{text} did not parse"))
    }

    #[test]
    fn numbers_in_the_seed_formats() {
        assert_eq!(n("9,940,000").as_count(), Some(9_940_000));
        assert_eq!(n("1,405,182 packets").as_count(), Some(1_405_182));
        assert_eq!(n("14.43s").as_ns(), Some(14_430_000_000));
        assert_eq!(n("692,879 pps").unit, Unit::Pps);
        assert_eq!(n("692,879 pps").value, 692_879.0);
        let k = n("~689k pps");
        assert_eq!(
            (k.value, k.unit, k.approximate),
            (689_000.0, Unit::Pps, true)
        );
        assert_eq!(
            k.as_count(),
            None,
            "an abbreviated number is never a counter"
        );
        assert_eq!(n("86%").unit, Unit::Percent);
        assert_eq!(n("7.76 Gbps").value, 7.76e9);
        assert_eq!(n("37 %").unit, Unit::Percent);
    }

    #[test]
    fn not_numbers() {
        assert!(number("abc").is_none());
        assert!(number("").is_none());
        assert!(number("1,4").is_none());
        assert!(number("-5").is_none());
    }

    #[test]
    fn pairs_with_units_and_parentheses() {
        let e = parse("recv=1,400,000 packets (97k pps)\negr_sent=1,198,042 buf_exhaust=201,837 packets (14% buffer exhaustion)");
        assert_eq!(e.len(), 3);
        assert_eq!(e[0].key, "recv");
        assert_eq!(e[0].number.unwrap().as_count(), Some(1_400_000));
        assert_eq!(e[0].extra[0].1.unit, Unit::Pps);
        assert_eq!(e[0].extra[0].1.value, 97_000.0);
        assert_eq!(e[1].key, "egr_sent");
        assert_eq!(e[2].line, 2);
        assert_eq!(e[2].extra[0].1.unit, Unit::Percent);
    }

    #[test]
    fn labelled_lines_and_markdown() {
        let e = parse("- **Duration:** 14.43s\nActual packet rate: 692,879 pps (target: 1,000,000 pps)\n# note: 5");
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].key, "duration");
        assert_eq!(e[1].key, "actual_packet_rate");
        assert_eq!(
            e[1].extra,
            vec![(Some("target".into()), n("1,000,000 pps"))]
        );
    }

    #[test]
    fn last_value_wins_and_non_numbers_are_named() {
        let p = Path::new("log.txt");
        let e = parse("recv=1\nrecv=2\n");
        let v = last(p, &e, &["recv"]).unwrap().unwrap();
        assert_eq!(v.number.unwrap().value, 2.0);
        let e = parse("recv=1\nrecv=lots\n");
        let err = last(p, &e, &["recv"]).unwrap_err().to_string();
        assert!(
            err.contains("log.txt") && err.contains("recv (line 2)") && err.contains("lots"),
            "{err}"
        );
    }
}
