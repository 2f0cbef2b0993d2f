//! Reading and writing run records: one file, a directory of records or a JSON Lines
//! history, the schema and version checked before the body (so that a record of another
//! version says so instead of naming a confusing missing field), then [`RunRecord::validate`].

use std::path::Path;

use serde::Deserialize;

use super::{RunRecord, RUN_MINOR_VERSION, RUN_SCHEMA, RUN_VERSION};
use crate::error::{from_json, read_nonempty, Error, Result};

impl RunRecord {
    /// Reads and checks a record. The schema and version are checked before the body so that a
    /// record of another version is reported as such, not as a confusing missing field.
    pub fn load(path: &Path) -> Result<Self> {
        let text = read_nonempty(path)?;
        Self::parse(path, &text)
    }

    /// Parses and checks one record's JSON text; `path` names it in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Self> {
        let head = head(path, text)?;
        let record = if head.get("minor_version").is_none() {
            // The common case, a 1.0 record: straight from the text, every unknown field an
            // error naming it.
            check_schema(path, &head, RUN_SCHEMA, RUN_VERSION)?;
            from_json(path, text)?
        } else {
            let doc: serde_json::Value = serde_json::from_str(text)
                .map_err(|e| Error::format(path, format!("not valid JSON: {e}")))?;
            let (mut record, skipped): (RunRecord, _) = crate::ingest::compat::read_versioned(
                path,
                &doc,
                RUN_SCHEMA,
                RUN_VERSION,
                RUN_MINOR_VERSION,
            )?;
            record.skipped = skipped;
            record
        };
        record.validate(path)?;
        Ok(record)
    }

    /// Reads a history: a record, a directory of `*.json` records (in file-name order), or a
    /// JSON Lines file (`*.jsonl`, one record per line, as a nightly job appends them). Each
    /// record comes with the name it is shown under (`history.jsonl:3` for line 3), which is also
    /// how errors name it.
    pub fn load_many(path: &Path) -> Result<Vec<(String, RunRecord)>> {
        let mut out = Vec::new();
        Self::for_each_in(path, |name, rec| {
            out.push((name, rec));
            Ok(())
        })?;
        Ok(out)
    }

    /// [`RunRecord::load_many`] one record at a time, oldest first: a long history is never
    /// held in memory whole (a JSON Lines file is read line by line).
    pub fn for_each_in(
        path: &Path,
        mut each: impl FnMut(String, RunRecord) -> Result<()>,
    ) -> Result<()> {
        if path.is_dir() {
            let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(path)
                .map_err(|e| Error::io(path, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.extension().is_some_and(|x| x == "json"))
                .collect();
            files.sort();
            if files.is_empty() {
                return Err(Error::format(path, "directory holds no .json records"));
            }
            for f in &files {
                each(f.display().to_string(), Self::load(f)?)?;
            }
            return Ok(());
        }
        if path.extension().is_some_and(|x| x == "jsonl") {
            use std::io::BufRead;
            let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
            let mut any = false;
            for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
                let line = line.map_err(|e| Error::io(path, e))?;
                if line.trim().is_empty() {
                    continue;
                }
                any = true;
                let name = format!("{}:{}", path.display(), i + 1);
                let rec = Self::parse(Path::new(&name), &line)?;
                each(name, rec)?;
            }
            if !any {
                return Err(Error::Empty {
                    path: path.to_path_buf(),
                });
            }
            return Ok(());
        }
        each(path.display().to_string(), Self::load(path)?)
    }

    /// The record as pretty JSON with a trailing newline.
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).expect("records serialize");
        text.push('\n');
        text
    }

    /// Writes [`RunRecord::to_json`] to `path`.
    pub fn save(&self, path: &Path) -> Result<()> {
        std::fs::write(path, self.to_json()).map_err(|e| Error::io(path, e))
    }
}

/// The `schema` and `version` of a JSON document, without building the rest of it (a long
/// history is parsed once, not twice).
fn head(path: &Path, text: &str) -> Result<serde_json::Value> {
    #[derive(Deserialize)]
    struct Head {
        schema: Option<serde_json::Value>,
        version: Option<serde_json::Value>,
        minor_version: Option<serde_json::Value>,
    }
    let syntax = |e: serde_json::Error| Error::format(path, format!("not valid JSON: {e}"));
    match serde_json::from_str::<Head>(text) {
        Ok(h) => {
            let mut m = serde_json::Map::new();
            for (k, v) in [
                ("schema", h.schema),
                ("version", h.version),
                ("minor_version", h.minor_version),
            ] {
                if let Some(v) = v {
                    m.insert(k.into(), v);
                }
            }
            Ok(serde_json::Value::Object(m))
        }
        Err(e) if e.is_syntax() || e.is_eof() => Err(syntax(e)),
        // Not an object: let the whole document say what it is.
        Err(_) => serde_json::from_str(text).map_err(syntax),
    }
}

/// Checks the `schema` and `version` fields of any producer's JSON document.
pub fn check_schema(
    path: &Path,
    doc: &serde_json::Value,
    schema: &str,
    version: u32,
) -> Result<()> {
    let found = doc
        .get("schema")
        .ok_or_else(|| Error::field(path, "schema", format!("missing (expected \"{schema}\")")))?;
    if found.as_str() != Some(schema) {
        return Err(Error::field(
            path,
            "schema",
            format!("is {found}, expected \"{schema}\""),
        ));
    }
    let v = doc
        .get("version")
        .ok_or_else(|| Error::field(path, "version", "missing"))?;
    match v.as_u64() {
        Some(found) if found == u64::from(version) => Ok(()),
        // A newer major version may mean other things by the same fields: reading it with
        // these types could be silently wrong, so it is refused, never guessed at.
        Some(found) if found > u64::from(version) => Err(Error::field(
            path,
            "version",
            format!(
                "{schema} version {found} is newer than this analyzer reads (version \
                 {version}): a new major version changes what fields mean; use an analyzer \
                 built from the same release as the tool that wrote the file"
            ),
        )),
        _ => Err(Error::field(
            path,
            "version",
            format!(
                "{schema} version {v} is not supported (this analyzer reads version {version})"
            ),
        )),
    }
}
