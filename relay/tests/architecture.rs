//! The relay's architecture, checked from its own source: which part may use which
//! (README, "Architecture"). A change that adds a forbidden arrow fails here, naming the file
//! and the line, instead of being found in a review months later.
//!
//! An arrow is a `crate::PART` path in a source file of another part (comments excluded),
//! test modules included: a test that needs a forbidden part is a sign the code does.

use std::path::{Path, PathBuf};

/// Parts of `relay/src`: a folder or a single file, by the name `crate::` paths use.
fn part_of(rel: &Path) -> String {
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

/// (from, to, why) arrows that must never exist.
const NEVER: &[(&str, &str, &str)] = &[
    // The parser is pure: bytes in, views out.
    (
        "wire",
        "*",
        "wire/ parses bytes and uses nothing of the relay",
    ),
    // The packet path neither serves requests nor renders stats.
    (
        "dataplane",
        "control",
        "the packet path never reaches the control plane",
    ),
    (
        "dataplane",
        "daemon",
        "the packet path never reaches the daemon",
    ),
    (
        "dataplane",
        "stats",
        "the packet path writes counters, never the report",
    ),
    (
        "dataplane",
        "metrics",
        "the packet path never reaches the metrics server",
    ),
    (
        "counters",
        "control",
        "counters are written by the packet path only",
    ),
    ("counters", "dataplane", "counters know no worker"),
    ("counters", "fastpath", "counters know no kernel program"),
    // The rule table and the fast path are built and tested without the planes around them.
    (
        "rules",
        "control",
        "a rule table is built without the control plane",
    ),
    (
        "rules",
        "dataplane",
        "a rule table is built without workers",
    ),
    ("rules", "stats", "a rule table is built without the stats"),
    (
        "fastpath",
        "control",
        "the fast path is driven, it drives nothing",
    ),
    ("fastpath", "dataplane", "the fast path knows no worker"),
    (
        "fastpath",
        "stats",
        "the fast path's counters are read by the stats, not the reverse",
    ),
    (
        "stats",
        "control",
        "the stats are read by the control plane, not the reverse",
    ),
    (
        "control",
        "metrics",
        "the control socket and the metrics endpoint are apart",
    ),
    // The low-level helpers shared with trafficgen (feature `sys`).
    ("sys", "*", "sys.rs is the checked libc calls alone"),
    // Issue 21, knot 1: `dataplane::Shared` holds only what workers read; the rest is the
    // daemon's `Runtime`, and the stats read counters given to them as values.
    (
        "stats",
        "dataplane",
        "the stats read counters and the table, not the data plane",
    ),
    (
        "stats",
        "runtime",
        "the runtime calls the stats with its sources, not the reverse",
    ),
    (
        "dataplane",
        "fastpath",
        "the workers never touch the kernel program",
    ),
    (
        "dataplane",
        "runtime",
        "the workers see only what `Shared` holds",
    ),
    (
        "config",
        "dataplane",
        "the config is checked with the host helpers (`sys`), not the workers' code",
    ),
    (
        "membership",
        "dataplane",
        "group membership is a host helper",
    ),
    ("netif", "dataplane", "interface lookups are host helpers"),
    (
        "linkwatch",
        "dataplane",
        "link events reach the control plane, not the workers",
    ),
    (
        "metrics",
        "dataplane",
        "the metrics endpoint reads the runtime's report",
    ),
    // Issue 21, knot 2: rules own no counters. The counter table is published beside the rule
    // table (`dataplane::Snapshot`), by rule position, and carried by what the rule table
    // says is the same rule (`RuleTable::positions_in`).
    (
        "rules",
        "counters",
        "a rule table holds no counters; they are a table of their own beside it",
    ),
    (
        "counters",
        "rules",
        "the counter table is by rule position; which rule is which is the rule table's",
    ),
];

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The `crate::PART` paths of a source text, with their line numbers, outside comments.
fn arrows(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            let after = &rest[i + "crate::".len()..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.push((n + 1, name));
            }
            rest = after;
        }
    }
    found
}

#[test]
fn no_part_of_the_relay_uses_a_part_it_must_never_use() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    assert!(files.len() > 50, "found only {} source files", files.len());
    let mut broken = Vec::new();
    for file in &files {
        let rel = file.strip_prefix(&src).unwrap();
        let rel_name = rel.to_string_lossy().to_string();
        let from = part_of(rel);
        let text = std::fs::read_to_string(file).unwrap();
        for (line, to) in arrows(&text) {
            if to == from {
                continue;
            }
            for (f, t, why) in NEVER {
                if *f == from && (*t == "*" || *t == to) {
                    broken.push(format!("{rel_name}:{line}: {from} -> {to}: {why}"));
                }
            }
        }
    }
    assert!(
        broken.is_empty(),
        "forbidden arrows:\n{}",
        broken.join("\n")
    );
}

#[test]
fn the_json_contract_uses_nothing_of_the_relay() {
    // The analyzer builds this file without the daemon (default-features = false).
    let report = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/stats/report.rs");
    let text = std::fs::read_to_string(report).unwrap();
    let used = arrows(&text);
    assert!(
        used.is_empty(),
        "stats/report.rs uses the relay's {used:?}; the contract is serde types alone"
    );
}

#[test]
fn the_arrow_reader_sees_paths_and_skips_comments() {
    let text = "use crate::wire::Frame;\n// crate::control is not used\nlet x = crate::stats::report::X; // crate::daemon\n";
    assert_eq!(
        arrows(text),
        vec![(1, "wire".to_string()), (3, "stats".to_string())]
    );
    assert_eq!(part_of(Path::new("dataplane/egress/send.rs")), "dataplane");
    assert_eq!(part_of(Path::new("metrics.rs")), "metrics");
}

/// The fast path's decision (`fastpath/plan.rs`) and slot book (`fastpath/slots.rs`) touch no
/// kernel object: no libbpf, no system call, no attach or map code. That is what lets them be
/// tested without privileges (issue 21, knot 3); the side effects live in `links.rs`,
/// `maps.rs` and `attach.rs`.
#[test]
fn the_fast_path_decision_has_no_side_effect() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/fastpath");
    for file in ["plan.rs", "slots.rs"] {
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        let code: String = text
            .lines()
            .map(|l| l.split("//").next().unwrap_or(""))
            .collect::<Vec<_>>()
            .join("\n");
        for forbidden in [
            "libbpf",
            "libc::",
            "unsafe",
            "super::attach",
            "super::maps",
            "super::links",
            "std::fs",
            "crate::sys",
        ] {
            assert!(
                !code.contains(forbidden),
                "fastpath/{file} uses `{forbidden}`: the decision must stay free of side effects"
            );
        }
    }
}

/// The modules allowed `unsafe` (issue 21, knot 4), by the file that declares each: the
/// crate root denies it everywhere else. A new allowance is a decision, made here.
const UNSAFE_ALLOWED: &[(&str, &str)] = &[
    ("lib.rs", "sys"),
    ("dataplane/mod.rs", "egress"),
    ("dataplane/mod.rs", "ring"),
    ("dataplane/mod.rs", "sys"),
    ("dataplane/mod.rs", "uring"),
    ("fastpath/mod.rs", "attach"),
    ("fastpath/mod.rs", "clsact"),
    ("fastpath/mod.rs", "layout"),
    ("fastpath/mod.rs", "probe"),
    ("fastpath/mod.rs", "skel"),
];

#[test]
fn unsafe_is_denied_but_in_the_listed_system_call_modules() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let root = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    assert!(
        root.contains("#![deny(unsafe_code)]"),
        "lib.rs denies unsafe"
    );
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut found = Vec::new();
    for path in files {
        let rel = path
            .strip_prefix(&src)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let text = std::fs::read_to_string(&path).unwrap();
        let mut lines = text.lines().map(str::trim);
        while let Some(line) = lines.next() {
            if line.starts_with("//") || !line.contains("allow(unsafe_code)") {
                continue;
            }
            // The item the attribute allows: the next module declaration.
            let module = lines
                .find(|l| l.contains("mod "))
                .and_then(|l| l.split("mod ").nth(1))
                .map(|m| m.trim_end_matches(['{', ';', ' ']).to_string())
                .unwrap_or_else(|| panic!("{rel}: allow(unsafe_code) on something not a module"));
            found.push((rel.clone(), module));
        }
    }
    found.sort();
    let mut expected: Vec<(String, String)> = UNSAFE_ALLOWED
        .iter()
        .map(|(f, m)| (f.to_string(), m.to_string()))
        .collect();
    expected.sort();
    assert_eq!(found, expected, "modules allowed unsafe (file, module)");
}
