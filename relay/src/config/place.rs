//! Places in the config file: the line and column of an offset, the span of a key, the key
//! before a value the TOML reader refused; errors that name them.

use std::collections::HashMap;
use std::ops::Range;

use serde::de::IgnoredAny;
use serde::Deserialize;
use toml::Spanned;

use super::file::ConfigError;

/// A config file's text and name, and where its lines start: what places an error in it.
pub(super) struct ConfigText<'a> {
    text: &'a str,
    file: &'a str,
    /// Byte offset of the start of each line after the first, found once: every rule asks
    /// for its line, and counting newlines from the top each time made a check of N rules
    /// take time in N² (10,000 rules: 7 s).
    line_starts: Vec<usize>,
}

impl<'a> ConfigText<'a> {
    pub(super) fn new(text: &'a str, file: &'a str) -> Self {
        let line_starts = text.match_indices('\n').map(|(i, _)| i + 1).collect();
        ConfigText {
            text,
            file,
            line_starts,
        }
    }

    /// 1-based line and column (in bytes) of `offset`, by binary search of the line starts.
    pub(super) fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        // Lines that start at or before `offset`, after the first.
        let later = self.line_starts.partition_point(|&start| start <= offset);
        let start = if later == 0 {
            0
        } else {
            self.line_starts[later - 1]
        };
        (later + 1, offset - start + 1)
    }

    pub(super) fn invalid(&self, span: Range<usize>, field: &str, message: String) -> ConfigError {
        let (line, column) = self.line_col(span.start);
        ConfigError::Invalid {
            file: self.file.to_string(),
            line,
            column,
            field: field.to_string(),
            message,
        }
    }

    /// Where `key` is set in the top-level table `section` (`dataplane`, `control`; a
    /// `[header]` or an inline table), so that an error points at the key's line rather than
    /// the table's; `fallback` (the table's span) where the key is not set. The spans are the
    /// TOML reader's own, from a second read of the file: asked only on the way to an error.
    pub(super) fn key_span(
        &self,
        section: &str,
        key: &str,
        fallback: Range<usize>,
    ) -> Range<usize> {
        /// The keys of one table with their spans, the values skipped.
        #[derive(Deserialize)]
        #[serde(transparent)]
        struct KeySpans(HashMap<Spanned<String>, IgnoredAny>);
        /// The tables whose keys an error may name; every other key of the file is skipped.
        #[derive(Deserialize)]
        struct SectionKeys {
            #[serde(default)]
            dataplane: Option<KeySpans>,
            #[serde(default)]
            control: Option<KeySpans>,
        }
        let Ok(sections) = toml::from_str::<SectionKeys>(self.text) else {
            return fallback;
        };
        let keys = match section {
            "dataplane" => sections.dataplane,
            "control" => sections.control,
            _ => None,
        };
        keys.and_then(|k| k.0.into_keys().find(|k| k.get_ref() == key))
            .map_or(fallback, |k| k.span())
    }

    /// The key whose value starts at `offset` (`KEY = value`), for naming the field of an
    /// error the TOML reader found in that value: `dataplane.workers`, or `port` inside an
    /// inline table.
    pub(super) fn key_before(&self, offset: usize) -> Option<String> {
        let before = self.text.get(..offset)?;
        let b = before.trim_end_matches([' ', '\t']).strip_suffix('=')?;
        let b = b.trim_end_matches([' ', '\t']);
        // The character before the key may be wider than a byte (found by the fuzzer: a
        // byte-order mark before `p=`).
        let key_start = b
            .char_indices()
            .rev()
            .find(|&(_, c)| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
            .map_or(0, |(i, c)| i + c.len_utf8());
        let key = &b[key_start..];
        if key.is_empty() {
            return None;
        }
        // The table header above, unless the key is inside an inline table or array.
        let line_start = |i: usize| before[..i].rfind('\n').map_or(0, |p| p + 1);
        let mut pos = line_start(key_start);
        let header = loop {
            let line = before[pos..].lines().next().unwrap_or("").trim();
            if line.starts_with('[') {
                break Some(line.trim_matches(['[', ']']).trim().to_string());
            }
            if pos == 0 {
                break None;
            }
            pos = line_start(pos - 1);
        };
        let between = &before[pos..key_start];
        let nested = between.matches(['{', '[']).count() > between.matches(['}', ']']).count() + 1
            || (header.is_none() && between.contains('{'));
        Some(match header {
            Some(h) if !nested => format!("{h}.{key}"),
            _ => key.to_string(),
        })
    }
}
