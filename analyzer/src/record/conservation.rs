//! The harness's packet-conservation check: per stage of the pipeline, what went in, what a
//! counter says was dropped, what came out, and the unexplained rest, with the harness's verdict.
//! The invariant `unexplained = in - dropped - out` is checked when a record is loaded.

use serde::{Deserialize, Serialize};

/// The conservation check of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Conservation {
    /// True when every packet is accounted for (the harness's rule, e.g. no stage and no end to
    /// end figure has an unexplained remainder).
    pub ok: bool,
    /// Stages in pipeline order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stages: Vec<Stage>,
}

/// One stage (the generator, a link, a relay, the receiver), in frames.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    /// `link plx-gen -> plx-r1`, `relay plx-r1 (mcrd)`, `receiver`.
    pub name: String,
    /// Frames that entered the stage.
    #[serde(rename = "in")]
    pub input: u64,
    /// Frames a counter saw dropped in the stage.
    pub dropped: u64,
    /// Frames that left the stage.
    pub out: u64,
    /// `in - dropped - out`: frames no counter explains (negative: more came out than went in).
    pub unexplained: i64,
}

impl Conservation {
    /// The first stage whose `unexplained` is not `in - dropped - out`: its index, and what is
    /// wrong with it.
    pub fn unbalanced_stage(&self) -> Option<(usize, String)> {
        self.stages
            .iter()
            .enumerate()
            .find(|(_, s)| s.unexplained != s.expected_unexplained())
            .map(|(i, s)| {
                (
                    i,
                    format!(
                        "is {}, but in - dropped - out = {}",
                        s.unexplained,
                        s.expected_unexplained()
                    ),
                )
            })
    }
}

impl Stage {
    /// What `unexplained` must be.
    pub fn expected_unexplained(&self) -> i64 {
        self.input as i64 - self.dropped as i64 - self.out as i64
    }
}
