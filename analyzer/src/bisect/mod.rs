//! Finding the commit that made a metric worse: [`step`] judges one candidate between a
//! known-good and a known-bad set of runs (`analyzer bisect-step`), [`search`] drives a whole
//! bisection over an ordered list of commits, and [`record`] writes a step as a versioned JSON
//! record. Building and running the commits is the script's job (`scripts/perf-bisect.sh`);
//! deciding is the analyzer's, with `compare`'s own verdicts.

pub mod record;
pub mod search;
pub mod step;

pub use search::{bisect, Bisection, Outcome, Plan};
pub use step::{step, Answer, Step};
