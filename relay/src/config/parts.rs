//! Parsing a large config file in parts, one thread each.
//!
//! At 100,000 rules the TOML reader was most of `config check` and of a reload (about 0.5 s
//! of 0.8 s here), on one core. The rules are an array of tables, so the file can be cut
//! before `[[rule]]` header lines and each part read on its own: the first as the whole
//! configuration, the others as rules only. Each later part is read with everything before
//! it blanked to spaces, so the positions in its errors and spans are those of the file.
//!
//! Only a file that every part reads cleanly is taken from the parts. A cut inside a
//! multi-line string leaves the part before it with an unterminated string, so it fails;
//! a later part with anything but rules fails to read as rules only. On any failure the
//! caller reads the file whole, which gives the error exactly as it always did.

use serde::de::DeserializeOwned;

/// Files smaller than this are read whole: a part's thread costs more than it saves.
pub const MIN_BYTES: usize = 1 << 20;

/// Byte offsets to cut `text` at, for about `parts` parts of similar size: each the start
/// of a line that is a `[[rule]]` header and nothing else. Fewer where headers are sparse;
/// none for a single part.
pub fn rule_header_cuts(text: &str, parts: usize) -> Vec<usize> {
    let mut cuts: Vec<usize> = Vec::new();
    for k in 1..parts {
        let target = text.len() * k / parts;
        let from = cuts.last().map_or(target, |&c| target.max(c + 1));
        if let Some(cut) = next_rule_header(text, from) {
            if cuts.last() != Some(&cut) {
                cuts.push(cut);
            }
        }
    }
    cuts
}

/// The start of the first line at or after byte `from` that is a `[[rule]]` header.
fn next_rule_header(text: &str, from: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    // Begin at `from` if a line starts there, else at the next line. A byte after a newline
    // is always a character boundary.
    let mut at = if from == 0 || bytes.get(from - 1) == Some(&b'\n') {
        from
    } else {
        from + bytes.get(from..)?.iter().position(|&b| b == b'\n')? + 1
    };
    while at < text.len() {
        let end = text[at..].find('\n').map_or(text.len(), |i| at + i);
        if at > 0 && text[at..end].trim() == "[[rule]]" {
            return Some(at);
        }
        at = end + 1;
    }
    None
}

/// Reads `text[..cuts[0]]` as `First` and each later part as `Later`, on a thread each;
/// `None` if there is no cut or any part fails to read.
pub fn read_parts<First, Later>(text: &str, cuts: &[usize]) -> Option<(First, Vec<Later>)>
where
    First: DeserializeOwned,
    Later: DeserializeOwned + Send,
{
    let (&first_end, _) = cuts.split_first()?;
    let ends = cuts.iter().skip(1).copied().chain([text.len()]);
    std::thread::scope(|scope| {
        let later: Vec<_> = cuts
            .iter()
            .zip(ends)
            .map(|(&start, end)| {
                scope.spawn(move || {
                    let mut blanked = " ".repeat(start);
                    blanked.push_str(&text[start..end]);
                    toml::from_str::<Later>(&blanked).ok()
                })
            })
            .collect();
        let first = toml::from_str::<First>(&text[..first_end]).ok();
        let later: Option<Vec<Later>> =
            later.into_iter().map(|h| h.join().ok().flatten()).collect();
        Some((first?, later?))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_fall_on_rule_headers_only() {
        let text = "a = 1\n[[rule]]\nx = 1\n  [[rule]]  \nx = 2\n# [[rule]]\n[rule]\n[[rule]]\n";
        let cuts = rule_header_cuts(text, 8);
        assert!(!cuts.is_empty());
        for &c in &cuts {
            let line = text[c..].lines().next().unwrap();
            assert_eq!(line.trim(), "[[rule]]", "cut at {c}: {line:?}");
        }
        assert!(cuts.windows(2).all(|w| w[0] < w[1]), "{cuts:?}");
        assert_eq!(rule_header_cuts(text, 1), Vec::<usize>::new());
        assert_eq!(rule_header_cuts("a = 1\nb = 2\n", 4), Vec::<usize>::new());
    }

    #[test]
    fn a_cut_is_never_at_the_very_start() {
        // The first part must hold something: a header on the first line is not a cut.
        assert_eq!(
            rule_header_cuts("[[rule]]\nx = 1\n", 2),
            Vec::<usize>::new()
        );
    }

    #[derive(serde::Deserialize, Debug, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Rules {
        #[serde(default)]
        rule: Vec<toml::Spanned<toml::Table>>,
    }

    #[test]
    fn later_parts_keep_the_positions_of_the_whole_file() {
        let text = "[[rule]]\nx = 1\n[[rule]]\nx = 2\n[[rule]]\nx = 3\n";
        let cuts = rule_header_cuts(text, 3);
        assert_eq!(cuts.len(), 2, "{cuts:?}");
        let (first, later) = read_parts::<Rules, Rules>(text, &cuts).unwrap();
        let whole: Rules = toml::from_str(text).unwrap();
        let mut joined = first.rule;
        for l in later {
            joined.extend(l.rule);
        }
        assert_eq!(joined.len(), 3);
        for (a, b) in joined.iter().zip(&whole.rule) {
            assert_eq!(a.span(), b.span());
            assert_eq!(a.get_ref(), b.get_ref());
        }
    }

    #[test]
    fn a_cut_inside_a_multi_line_string_fails_the_part_before_it() {
        let text = "[[rule]]\nx = \"\"\"\n[[rule]]\n\"\"\"\n[[rule]]\nx = 3\n";
        let cuts = rule_header_cuts(text, 3);
        assert_eq!(cuts.first(), Some(&text.find("[[rule]]\n\"\"\"").unwrap()));
        assert!(read_parts::<Rules, Rules>(text, &cuts).is_none());
    }

    #[test]
    fn a_later_part_with_more_than_rules_fails() {
        let text = "[[rule]]\nx = \"a long first rule, to put the middle before the next\"\n\
                    [[rule]]\nx = 2\n[dataplane]\nworkers = 2\n";
        let cuts = rule_header_cuts(text, 2);
        assert_eq!(cuts.len(), 1);
        assert!(read_parts::<toml::Table, Rules>(text, &cuts).is_none());
    }
}
