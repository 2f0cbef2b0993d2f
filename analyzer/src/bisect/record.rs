//! A bisection step as a versioned JSON record (`bisect-step --json FILE`), the contract
//! `scripts/perf-bisect.sh` reads: `{schema: "mcr.analyzer.bisect-step", version, minor_version,
//! ...}`, following the same version rules as [`crate::verdicts`].

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::compare::{Settings, Verdict};
use crate::error::{from_json, read_nonempty, Error, Result};
use crate::verdicts::{CompareSettings, MetricInfo};

use super::step::{Side, Step};

/// `schema` of a step record.
pub const SCHEMA: &str = "mcr.analyzer.bisect-step";
/// Major version written and read.
pub const VERSION: u32 = 1;
/// Minor version written.
pub const MINOR_VERSION: u32 = 0;

/// One side judged against another.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SideInfo {
    /// `improved`, `regressed`, `within noise`, `cannot tell` or `not judged`, of the second
    /// side against the first (the reference).
    pub verdict: String,
    /// Change of the medians: percent, or percentage points for a percentage metric.
    pub change: Option<f64>,
    /// Two-sided Mann-Whitney p-value; `null` when a side had a single sample (threshold rule).
    pub p: Option<f64>,
    /// Samples of the reference side.
    pub n_reference: usize,
    /// Samples of the other side.
    pub n_other: usize,
}

impl From<&Side> for SideInfo {
    fn from(s: &Side) -> Self {
        SideInfo {
            verdict: match s.judgement.verdict {
                Verdict::Improved => "improved",
                Verdict::Regressed => "regressed",
                Verdict::WithinNoise => "within noise",
                Verdict::CannotTell => "cannot tell",
                Verdict::Context => "not judged",
            }
            .into(),
            change: s.judgement.change,
            p: s.p(),
            n_reference: s.n_reference,
            n_other: s.n_other,
        }
    }
}

/// A step's answer and the numbers behind it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// Always [`SCHEMA`].
    pub schema: String,
    /// Always [`VERSION`].
    pub version: u32,
    /// [`MINOR_VERSION`] of the writer.
    pub minor_version: u32,
    /// `good`, `bad` or `undecided`.
    pub answer: String,
    /// Why, in one sentence.
    pub reason: String,
    /// The metric judged.
    pub metric: MetricInfo,
    /// Bad against good.
    pub endpoints: SideInfo,
    /// The candidate against good.
    pub against_good: SideInfo,
    /// The candidate against bad.
    pub against_bad: SideInfo,
    /// With a "cannot tell": more repeats of every side that would let the test decide.
    pub more_repeats: Option<usize>,
    /// The verdicts' settings.
    pub settings: CompareSettings,
}

impl StepRecord {
    /// `reason` is the step's reason in words (`render::bisect::reason`).
    pub fn new(s: &Step, reason: String, settings: &Settings) -> Self {
        StepRecord {
            schema: SCHEMA.into(),
            version: VERSION,
            minor_version: MINOR_VERSION,
            answer: s.answer.name().into(),
            reason,
            metric: MetricInfo::from(&s.metric),
            endpoints: (&s.endpoints).into(),
            against_good: (&s.against_good).into(),
            against_bad: (&s.against_bad).into(),
            more_repeats: s.more_repeats,
            settings: CompareSettings {
                threshold_pct: settings.threshold_pct,
                threshold_pp: settings.threshold_pp,
                alpha: settings.alpha,
                load_tolerance_pct: settings.load_tolerance_pct,
                chain: false,
            },
        }
    }

    /// Reads a step record, refusing another schema or a newer major version; returns the
    /// fields of a newer minor version it skipped.
    pub fn load(path: &Path) -> Result<(Self, Vec<String>)> {
        let text = read_nonempty(path)?;
        let doc: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| Error::format(path, format!("not valid JSON: {e}")))?;
        let ignored = crate::ingest::compat::ignored_fields::<Self>(
            path,
            &text,
            &doc,
            SCHEMA,
            VERSION,
            MINOR_VERSION,
        )?;
        Ok((from_json(path, &text)?, ignored))
    }
}
