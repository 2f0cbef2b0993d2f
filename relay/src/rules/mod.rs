//! Forwarding rules: the user's rule set, the resolved table the workers match against, and the
//! kernel packet filter made from it.
//!
//! A [`RuleSet`] holds rules as the user wrote them. [`RuleTable::build`] resolves interface names
//! against the running system into an immutable table; workers pick up a new table between
//! batches, so a change is never half-applied and never pauses other flows.

pub mod bpf;
pub mod bpf_counting;
mod handover;
mod set;
mod table;

pub use handover::Handover;
pub use set::{RuleDiff, RuleError, RuleSet};
pub use table::{EgressKey, InputInterface, MatchKey, Output, Path, Rule, RuleTable};
