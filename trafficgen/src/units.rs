//! Parsing of human-typed quantities in flags: durations like `10s`, `250ms`, `1.5m`.

use std::time::Duration;

use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid duration {input:?}: expected a number with a unit ns, us, ms, s, m or h (e.g. 10s, 250ms); a bare number means seconds")]
pub struct DurationError {
    input: String,
}

/// Parses `10s`, `250ms`, `1.5m`, `100us`, `2h`, or a bare number of seconds.
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let err = || DurationError {
        input: input.to_string(),
    };
    let s = input.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let value: f64 = number.parse().map_err(|_| err())?;
    let seconds_per_unit = match unit.trim() {
        "" | "s" => 1.0,
        "ns" => 1e-9,
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        _ => return Err(err()),
    };
    Duration::try_from_secs_f64(value * seconds_per_unit).map_err(|_| err())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5m"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("100us"), Ok(Duration::from_micros(100)));
    }

    #[test]
    fn rejects_garbage_with_a_hint() {
        for bad in ["", "s", "10 parsecs", "-1s", "1e400s", "1.2.3s"] {
            let err = parse_duration(bad).unwrap_err().to_string();
            assert!(err.contains("expected a number"), "{bad}: {err}");
        }
    }
}
