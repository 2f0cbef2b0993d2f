//! A counter that was either measured or could not be measured on this machine.
//!
//! "unavailable" is not zero: a zero would claim the event never happened. A counter that was not
//! collected at all is simply absent from its map, which is a third state again.

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

/// The JSON spelling of a counter that could not be measured.
pub const UNAVAILABLE: &str = "unavailable";

/// One perf-event style counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measured {
    /// The counter was read.
    Count(u64),
    /// The counter was asked for but the machine could not provide it (e.g. no PMU in a VM).
    Unavailable,
}

impl Measured {
    /// The count, if measured.
    pub fn count(self) -> Option<u64> {
        match self {
            Measured::Count(n) => Some(n),
            Measured::Unavailable => None,
        }
    }

    /// Converts the relay's `Option<u64>` convention (`None` = unavailable).
    pub fn from_option(value: Option<u64>) -> Self {
        value.map_or(Measured::Unavailable, Measured::Count)
    }

    /// Sum of two readings of the same counter; unavailable if either side is.
    pub fn plus(self, other: Measured) -> Measured {
        match (self, other) {
            (Measured::Count(a), Measured::Count(b)) => Measured::Count(a.saturating_add(b)),
            _ => Measured::Unavailable,
        }
    }
}

impl std::fmt::Display for Measured {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Measured::Count(n) => write!(f, "{n}"),
            Measured::Unavailable => f.write_str(UNAVAILABLE),
        }
    }
}

impl Serialize for Measured {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Measured::Count(n) => s.serialize_u64(*n),
            Measured::Unavailable => s.serialize_str(UNAVAILABLE),
        }
    }
}

impl<'de> Deserialize<'de> for Measured {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Raw::deserialize(d) {
            Ok(Raw::Number(n)) => Ok(Measured::Count(n)),
            Ok(Raw::Text(t)) if t == UNAVAILABLE => Ok(Measured::Unavailable),
            Ok(Raw::Text(t)) => Err(de::Error::custom(format!(
                "expected a count or \"{UNAVAILABLE}\", found \"{t}\""
            ))),
            Err(_) => Err(de::Error::custom(format!(
                "expected a non-negative integer count or \"{UNAVAILABLE}\""
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unavailable_round_trips_and_is_not_zero() {
        let v: Vec<Measured> = serde_json::from_str(r#"[0, 5, "unavailable"]"#).unwrap();
        assert_eq!(
            v,
            vec![
                Measured::Count(0),
                Measured::Count(5),
                Measured::Unavailable
            ]
        );
        assert_eq!(serde_json::to_string(&v).unwrap(), r#"[0,5,"unavailable"]"#);
        assert_eq!(Measured::Unavailable.count(), None);
    }

    #[test]
    fn other_text_and_negative_numbers_are_rejected() {
        assert!(serde_json::from_str::<Measured>(r#""n/a""#).is_err());
        assert!(serde_json::from_str::<Measured>("-3").is_err());
        assert!(serde_json::from_str::<Measured>("1.5").is_err());
    }

    #[test]
    fn sum_is_unavailable_if_any_part_is() {
        assert_eq!(
            Measured::Count(2).plus(Measured::Count(3)),
            Measured::Count(5)
        );
        assert_eq!(
            Measured::Count(2).plus(Measured::Unavailable),
            Measured::Unavailable
        );
    }
}
