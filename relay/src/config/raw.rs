//! The TOML file mapped onto types: every value the user wrote, with where it is
//! (`toml::Spanned`), before any check. A large file is read in parts (`parts.rs`).

use serde::Deserialize;
use toml::Spanned;

use super::parts;
use super::spec::{ControlConfig, DataplaneConfig, LogFormat, Monitor};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub(super) log_level: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) log_format: LogFormat,
    #[serde(default)]
    pub(super) allow_empty: bool,
    #[serde(default)]
    pub(super) dataplane: Option<Spanned<DataplaneConfig>>,
    #[serde(default)]
    pub(super) control: Option<Spanned<ControlConfig>>,
    #[serde(default)]
    pub(super) metrics: Option<RawMetrics>,
    #[serde(default)]
    pub(super) rule: Vec<Spanned<RawRule>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMetrics {
    #[serde(default)]
    pub(super) listen: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRule {
    pub(super) name: Option<Spanned<String>>,
    pub(super) input: Spanned<String>,
    pub(super) group: Spanned<String>,
    // Integers are read wide and range-checked here, so an error names the field.
    pub(super) port: Spanned<i64>,
    #[serde(default)]
    pub(super) source: Option<Spanned<String>>,
    pub(super) outputs: Spanned<Vec<Spanned<RawOutput>>>,
    #[serde(default)]
    pub(super) monitor: Option<Monitor>,
    #[serde(default)]
    pub(super) min_ttl: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOutput {
    pub(super) dest: Spanned<String>,
    pub(super) port: Spanned<i64>,
    pub(super) interface: Spanned<String>,
    #[serde(default)]
    pub(super) ttl: Option<Spanned<i64>>,
    #[serde(default)]
    pub(super) dscp: Option<Spanned<i64>>,
    #[serde(default)]
    pub(super) source: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) source_port: Option<Spanned<i64>>,
}

/// The rules of a part of the file after the first (`parts.rs`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRules {
    pub(super) rule: Vec<Spanned<RawRule>>,
}

/// Reads the TOML of a config file: a large one in parts on as many threads as there are
/// processors (`parts.rs`), falling back to reading it whole, which every smaller file and
/// every file with an error gets.
pub(super) fn read_raw(text: &str) -> Result<RawConfig, toml::de::Error> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
    if text.len() >= parts::MIN_BYTES && threads > 1 {
        if let Some(raw) = read_raw_in_parts(text, threads) {
            return Ok(raw);
        }
    }
    toml::from_str(text)
}

/// The file read in about `parts` parts; `None` where that cannot be done or could read
/// it differently from reading it whole.
pub(super) fn read_raw_in_parts(text: &str, parts: usize) -> Option<RawConfig> {
    let cuts = parts::rule_header_cuts(text, parts);
    let (mut raw, later) = parts::read_parts::<RawConfig, RawRules>(text, &cuts)?;
    // Rules given as an inline array (`rule = [...]`) in the first part cannot be extended
    // by `[[rule]]` tables: reading the file whole reports that. Every rule of the first
    // part must then come from a header of its own.
    let headers = text[..cuts[0]]
        .lines()
        .filter(|l| l.trim() == "[[rule]]")
        .count();
    if headers != raw.rule.len() {
        return None;
    }
    for part in later {
        raw.rule.extend(part.rule);
    }
    Some(raw)
}
