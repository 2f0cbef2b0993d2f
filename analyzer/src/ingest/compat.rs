//! Versions of the producers' JSON contracts (relay stats, trafficgen records).
//!
//! `version` is the major version: a file with a newer one is refused ([`check_schema`]), since
//! its fields may mean something else. `minor_version` (absent = 0) counts added fields: the
//! contract types accept fields they do not know, and this module decides what that means. In
//! a file whose minor version this analyzer knows, an unknown field is a typo or a broken
//! writer, and an error naming it; in a newer minor version it is a field added since, which is
//! skipped and listed in the run record's sources (`ignored`), so that a report built from it
//! says what it did not read.

use std::path::Path;

use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::record::check_schema;

/// The `minor_version` of `doc` (0 when absent, as in files written before it existed).
pub fn minor_version(path: &Path, doc: &serde_json::Value) -> Result<u64> {
    match doc.get("minor_version") {
        None => Ok(0),
        Some(v) => v.as_u64().ok_or_else(|| {
            Error::field(
                path,
                "minor_version",
                format!("is {v}, expected a non-negative integer"),
            )
        }),
    }
}

/// Checks the version of a contract document and returns the fields of `text` that `T` skips
/// (dotted paths): empty for a file of a minor version this analyzer knows, since there an
/// unknown field is an error.
pub fn ignored_fields<T: DeserializeOwned>(
    path: &Path,
    text: &str,
    doc: &serde_json::Value,
    schema: &str,
    major: u32,
    known_minor: u32,
) -> Result<Vec<String>> {
    check_schema(path, doc, schema, major)?;
    let minor = minor_version(path, doc)?;
    let mut ignored = Vec::new();
    let de = &mut serde_json::Deserializer::from_str(text);
    // A document that does not deserialize at all is reported by the reader proper, with the
    // path of the bad field; here only the skipped fields matter.
    if serde_ignored::deserialize::<_, _, T>(de, |p| ignored.push(p.to_string())).is_err() {
        return Ok(Vec::new());
    }
    if minor <= u64::from(known_minor) {
        if let Some(field) = ignored.first() {
            return Err(Error::field(
                path,
                field.as_str(),
                format!(
                    "unknown field: {schema} {major}.{minor}, the version the file claims, \
                     has no such field (a writer that adds fields raises `minor_version`)"
                ),
            ));
        }
    }
    Ok(ignored)
}

/// Deserializes `doc`, a document of `schema` checked against `major`, into `T` by the rules
/// above, for types that refuse unknown fields (`deny_unknown_fields`): `minor_version` itself
/// is taken off first; in a known minor version an unknown field is the error naming it; in a
/// newer one each unknown field is taken off and named in the returned list, then the rest is
/// read as usual (a wrong type is still an error naming its path). A type that reads only part
/// of a document on purpose (no `deny_unknown_fields`) ignores the rest in any version, and that
/// rest is not listed.
pub fn read_versioned<T: DeserializeOwned>(
    path: &Path,
    doc: &serde_json::Value,
    schema: &str,
    major: u32,
    known_minor: u32,
) -> Result<(T, Vec<String>)> {
    check_schema(path, doc, schema, major)?;
    let minor = minor_version(path, doc)?;
    let mut body = doc.clone();
    if let Some(o) = body.as_object_mut() {
        o.remove("minor_version");
    }
    let mut skipped = Vec::new();
    loop {
        let e = match serde_path_to_error::deserialize::<_, T>(&body) {
            Ok(t) => return Ok((t, skipped)),
            Err(e) => e,
        };
        let field = e.path().to_string();
        let inner = e.into_inner();
        let is_unknown = inner.to_string().starts_with("unknown field");
        if !is_unknown {
            let field = if field == "." {
                "(top level)".into()
            } else {
                field
            };
            return Err(Error::field(path, field, inner.to_string()));
        }
        if minor <= u64::from(known_minor) || !remove_at(&mut body, &field) {
            return Err(unknown(path, &field, schema, major, minor));
        }
        skipped.push(field);
    }
}

fn unknown(path: &Path, field: &str, schema: &str, major: u32, minor: u64) -> Error {
    Error::field(
        path,
        field,
        format!(
            "unknown field: {schema} {major}.{minor}, the version the file claims, has no such \
             field (a writer that adds fields raises `minor_version`)"
        ),
    )
}

/// Removes the field at a dotted path (`hops[0].counters.rx_new`) from `doc`; false when the
/// path does not lead to an object's field.
fn remove_at(doc: &mut serde_json::Value, dotted: &str) -> bool {
    let mut segments: Vec<String> = Vec::new();
    for part in dotted.split('.') {
        // `hops[0]` -> `hops`, `[0]`
        let (name, mut rest) = part.split_at(part.find('[').unwrap_or(part.len()));
        if !name.is_empty() {
            segments.push(name.to_string());
        }
        while let Some(end) = rest.find(']') {
            segments.push(rest[..=end].to_string());
            rest = &rest[end + 1..];
        }
    }
    let Some(last) = segments.pop() else {
        return false;
    };
    let mut at = doc;
    for seg in &segments {
        let next = match seg.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            Some(i) => i.parse::<usize>().ok().and_then(|i| at.get_mut(i)),
            None => at.get_mut(seg.as_str()),
        };
        match next {
            Some(n) => at = n,
            None => return false,
        }
    }
    at.as_object_mut()
        .is_some_and(|o| o.remove(&last).is_some())
}

/// A stats file as mcrd 0.1 writes it (version 1.0), for tests.
#[cfg(test)]
pub(crate) fn sample_stats() -> serde_json::Value {
    let counters = serde_json::json!({"rx_frames": 10, "rx": 10, "rx_bytes": 0,
            "kernel_drops": 0, "filtered": 0, "malformed": 0, "malformed_by_kind": {},
            "no_match": 0, "matched": 10, "buf_exhaust": 0, "tx_sent": 10, "tx_bytes": 0,
            "tx_errors": 0, "tx_errors_by_errno": {}, "tx_syscalls": 1, "in_flight": 0});
    serde_json::json!({
        "schema": "mcr.relay.stats", "version": 1,
        "timestamp_ns": 1, "uptime_ns": 2, "final_report": true,
        "relay": {"version": "0.1.0", "pid": 7, "config_path": null, "gso_egress": true,
            "tunables": {"workers": 1, "cpus": [0]}},
        "totals": counters.clone(),
        "workers": [{"id": 0, "cpu": 0, "counters": counters,
            "perf": {"task_clock_ns": 1, "context_switches": 0, "cpu_migrations": 0,
                "page_faults": 0, "cycles": "unavailable", "instructions": "unavailable",
                "cache_misses": "unavailable", "branch_misses": "unavailable"}}],
        "flows": []
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use relay::stats::report::{StatsReport, STATS_MINOR_VERSION, STATS_SCHEMA, STATS_VERSION};

    fn stats() -> serde_json::Value {
        sample_stats()
    }

    fn ignored(doc: &serde_json::Value) -> Result<Vec<String>> {
        ignored_fields::<StatsReport>(
            Path::new("s.json"),
            &doc.to_string(),
            doc,
            STATS_SCHEMA,
            STATS_VERSION,
            STATS_MINOR_VERSION,
        )
    }

    #[test]
    fn a_file_of_a_known_version_has_nothing_to_ignore() {
        assert_eq!(ignored(&stats()).unwrap(), Vec::<String>::new());
    }

    #[test]
    fn fields_added_in_a_newer_minor_version_are_skipped_and_named() {
        let mut doc = stats();
        doc["minor_version"] = (STATS_MINOR_VERSION + 1).into();
        doc["totals"]["rx_new_drops"] = 7.into();
        doc["ring_health"] = serde_json::json!({"ok": true});
        let mut names = ignored(&doc).unwrap();
        names.sort();
        assert_eq!(names, ["ring_health", "totals.rx_new_drops"]);
    }

    #[test]
    fn an_unknown_field_in_a_known_minor_version_is_an_error_naming_it() {
        let mut doc = stats();
        doc["totals"]["rx_fames"] = 7.into();
        let e = ignored(&doc).unwrap_err().to_string();
        assert!(e.contains("totals.rx_fames"), "{e}");
        assert!(e.contains("unknown field"), "{e}");
    }

    #[test]
    fn a_newer_major_version_is_refused_with_both_versions() {
        let mut doc = stats();
        doc["version"] = (STATS_VERSION + 1).into();
        let e = ignored(&doc).unwrap_err().to_string();
        assert!(e.contains("version"), "{e}");
        assert!(e.contains(&format!("{}", STATS_VERSION + 1)), "{e}");
        assert!(e.contains("newer"), "{e}");
    }

    #[test]
    fn a_minor_version_that_is_not_a_count_is_an_error() {
        let mut doc = stats();
        doc["minor_version"] = "1".into();
        let e = ignored(&doc).unwrap_err().to_string();
        assert!(e.contains("minor_version"), "{e}");
    }
}
