//! Errors of the analyzer library.
//!
//! Every input error names the file and, where there is one, the field (or line) that is wrong,
//! because the user's next step is to open that file at that place. The binary maps [`Error`] to
//! exit code 2; nothing here is ever turned into a guessed number.

use std::path::{Path, PathBuf};

/// Result alias for the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, with enough context to fix it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    /// The cause is in the message and not also the error's `source()`, so that a printer
    /// of the whole chain does not repeat it.
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    /// The file exists but holds nothing.
    #[error("{path}: the file is empty")]
    Empty { path: PathBuf },
    /// A field (or line) of an input file is missing, malformed or not supported.
    #[error("{path}: field `{field}`: {message}")]
    Field {
        path: PathBuf,
        field: String,
        message: String,
    },
    /// The file as a whole is not in a form we read.
    #[error("{path}: {message}")]
    Format { path: PathBuf, message: String },
    /// The command line asks for something impossible.
    #[error("{0}")]
    Usage(String),
    /// The in-memory table rejected an operation (a bug, not an input problem).
    #[error("table: {0}")]
    Table(String),
    /// A chart could not be drawn.
    #[error("chart {path}: {message}")]
    Chart { path: PathBuf, message: String },
}

impl Error {
    /// A field error; `field` is a dotted path such as `hops[0].counters.rx`.
    pub fn field(path: &Path, field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Field {
            path: path.to_path_buf(),
            field: field.into(),
            message: message.into(),
        }
    }

    /// A whole-file format error.
    pub fn format(path: &Path, message: impl Into<String>) -> Self {
        Error::Format {
            path: path.to_path_buf(),
            message: message.into(),
        }
    }

    /// An I/O error on `path`.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Error::Io {
            path: path.to_path_buf(),
            error: source,
        }
    }
}

/// The table's operations fail only on a bug (a column of another type), so `?` on them
/// yields [`Error::Table`].
impl From<polars::error::PolarsError> for Error {
    fn from(e: polars::error::PolarsError) -> Self {
        Error::Table(e.to_string())
    }
}

/// Reads a whole text file, refusing an empty (or whitespace-only) one.
pub fn read_nonempty(path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    if text.trim().is_empty() {
        return Err(Error::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(text)
}

/// Deserializes JSON text into `T`, naming the failing field by its path in the document.
pub fn from_json<T: serde::de::DeserializeOwned>(path: &Path, text: &str) -> Result<T> {
    let de = &mut serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let field = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            Error::format(path, format!("not valid JSON: {inner}"))
        } else {
            // serde names a missing field in its message; the path says where it was missing.
            let field = if field == "." {
                "(top level)".into()
            } else {
                field
            };
            Error::field(path, field, inner.to_string())
        }
    })
}
