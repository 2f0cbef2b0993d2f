//! Run records in, regression reports out.
//!
//! The main types: [`record::RunRecord`] (one benchmark run, the analyzer's input contract),
//! built by [`ingest::ingest`] from the tools' JSON, `perf stat` CSV and text counter lines;
//! [`compare::compare`] turns records into a [`compare::Comparison`] (verdicts, rates, loss
//! waterfall, candidate causes), and [`trend::trend`] finds change points in a nightly history.
//! [`render`] writes both as Markdown and PNG, [`verdicts`] as versioned JSON records
//! (`--json`), and [`history`] keeps a nightly history as checksummed Parquet parts.
//!
//! ```no_run
//! use analyzer::{compare, record::RunRecord, render};
//! let base = RunRecord::load("reports/phase4.json".as_ref()).unwrap();
//! let run = RunRecord::load("reports/after-fix.json".as_ref()).unwrap();
//! let cmp = compare::compare(&[vec![base], vec![run]], &compare::Settings::default()).unwrap();
//! println!("{}", render::markdown::comparison(&cmp, &[]));
//! ```

pub mod bench;
pub mod bisect;
pub mod checksum;
pub mod cli;
pub mod compare;
pub mod conditions;
pub mod diff;
pub mod error;
pub mod history;
pub mod ingest;
pub mod medians;
pub mod metrics;
pub mod pipeline;
pub mod record;
pub mod render;
pub mod stats;
pub mod stream_loss;
pub mod table;
pub mod trend;
pub mod verdicts;
pub mod waterfall;

pub use error::{Error, Result};
