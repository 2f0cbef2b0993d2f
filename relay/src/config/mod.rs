//! The TOML configuration file: parsing, validation and the errors a user sees.
//!
//! Validation is split in two. [`parse`] checks everything that can be checked from the text
//! alone (field names, addresses, ports, duplicates) and reports the file, line and field.
//! Interface names are resolved later, against the running system, by
//! [`crate::rules::RuleSet::resolve`], which reports the rule and field it could not resolve.
//! What this machine can give (the CPUs workers are pinned to) is [`machine::check`]'s, asked
//! at start-up and by `mcrctl config check`.

#[cfg(test)]
pub(crate) mod arb;
mod file;
pub mod machine;
mod parts;
mod place;
mod raw;
mod spec;
mod validate;

pub use file::{
    parse, parse_file, parse_file_settled, parse_mode, ConfigError, DEFAULT_CONFIG_PATH,
    SETTLE_INTERVAL,
};
pub use spec::{
    Config, ControlConfig, DataplaneConfig, FastPathAttach, FastPathMode, LogFormat, MetricsConfig,
    Monitor, OutputSpec, RuleSpec, DEFAULT_FAST_PATH_MAX_FLOWS, MAX_FAST_PATH_MAX_FLOWS,
};
pub use validate::{
    validate_interface_name, validate_rule, validate_rule_name, OutputField, RuleField, SpecError,
    MAX_RULE_NAME,
};
