//! The TOML configuration file: parsing, validation and the errors a user sees.
//!
//! Validation is split in two. [`parse`] checks everything that can be checked from the text
//! alone (field names, addresses, ports, duplicates) and reports the file, line and field.
//! Interface names are resolved later, against the running system, by
//! [`crate::rules::RuleSet::resolve`], which reports the rule and field it could not resolve.

mod file;
mod spec;

pub use file::{parse, parse_file, parse_mode, ConfigError, DEFAULT_CONFIG_PATH};
pub use spec::{Config, ControlConfig, DataplaneConfig, Monitor, OutputSpec, RuleSpec};
