//! The veth pipeline harness's analysis (`scripts/pipeline_veth.sh` runs the namespaces, links
//! and processes and collects the counters; `analyzer pipeline …` makes the documents from
//! them): packet conservation over the chain ([`conservation`], `mcr.pipeline.conservation`),
//! the kernel counters for the run record ([`kernel`], `mcr.pipeline.kernel`), the host CPU
//! the run caused ([`host_cpu`], `mcr.pipeline.host_cpu`), the counters of a hop whose relay
//! counts nothing itself ([`hop`]), and the run's summary (`render::pipeline`).
//!
//! Every input is read through a contract: the generator's and receiver's records with
//! trafficgen's types, each mcrd hop's final stats with the relay's (`StatsReport`), and the
//! harness's own counter snapshots with the types of [`chain`]. A missing field, a wrong type or
//! a document of another version is an error naming the file and the field; nothing is
//! guessed. The documents written are the ones `analyzer ingest` reads (`ingest/pipeline.rs`).

pub mod chain;
pub mod conservation;
pub mod hop;
pub mod host_cpu;
pub mod kernel;

use std::path::Path;

use serde::de::DeserializeOwned;

use crate::error::{from_json, read_nonempty, Error, Result};
use crate::ingest::compat::ignored_fields;

/// Reads a producer's versioned JSON document into its contract type `T`: the schema and
/// major version checked, an unknown field of a minor version this analyzer knows refused
/// (`ingest/compat.rs`), a missing field or wrong type named by its path.
pub fn read_contract<T: DeserializeOwned>(
    path: &Path,
    schema: &str,
    major: u32,
    known_minor: u32,
) -> Result<T> {
    let text = read_nonempty(path)?;
    let doc: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::format(path, format!("not valid JSON: {e}")))?;
    ignored_fields::<T>(path, &text, &doc, schema, major, known_minor)?;
    from_json(path, &text)
}

/// The host's softnet drops over the run, from a host CPU document (`mcr.pipeline.host_cpu`);
/// none when it has no `softnet_dropped_host`.
pub fn softnet_dropped(path: &Path) -> Result<Option<i64>> {
    let text = read_nonempty(path)?;
    let doc: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::format(path, format!("not valid JSON: {e}")))?;
    crate::record::check_schema(path, &doc, host_cpu::SCHEMA, host_cpu::VERSION)?;
    match doc.get("softnet_dropped_host") {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(v) => v.as_i64().map(Some).ok_or_else(|| {
            Error::field(
                path,
                "softnet_dropped_host",
                format!("is {v}, expected an integer"),
            )
        }),
    }
}

/// A document as the harness writes it: JSON, two-space indents, one trailing newline.
pub fn to_json<T: serde::Serialize>(doc: &T) -> String {
    let mut s = serde_json::to_string_pretty(doc).expect("plain data serializes");
    s.push('\n');
    s
}
