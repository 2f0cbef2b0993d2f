//! Output formats: Markdown reports and PNG charts, one module each, plus number formatting
//! shared by both so a figure reads the same in the table and on the chart.

pub mod bench;
pub mod bisect;
pub mod fmt;
pub mod history;
pub mod markdown;
pub mod pipeline;
pub mod png;
pub mod sentences;
pub mod stream_loss;
