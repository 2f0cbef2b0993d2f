//! `analyzer bisect-step` as a script calls it: the exit code is the answer (0 good, 1 bad,
//! 3 undecided, 2 bad input), the text says why, and `--json` is the versioned record.

use std::path::{Path, PathBuf};

use analyzer::record::{Hop, HopCounters, RunRecord};
use assert_cmd::Command;

/// A directory of runs of a relay that forwarded each of `pps` in one second.
fn set(dir: &Path, name: &str, pps: &[u64]) -> PathBuf {
    let d = dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    for (i, &tx) in pps.iter().enumerate() {
        let mut r = RunRecord::new(name);
        r.duration_ns = Some(1_000_000_000);
        r.hops.push(Hop {
            name: "MCR-1".into(),
            counters: HopCounters {
                rx: Some(1_000_000),
                tx_sent: Some(tx),
                ..Default::default()
            },
            ..Default::default()
        });
        r.save(&d.join(format!("rep{i}.json"))).unwrap();
    }
    d
}

fn step(good: &Path, bad: &Path, cand: &Path, extra: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::cargo_bin("analyzer")
        .unwrap()
        .arg("bisect-step")
        .arg("--good")
        .arg(good)
        .arg("--bad")
        .arg(bad)
        .arg("--candidate")
        .arg(cand)
        .args(extra)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

const GOOD: [u64; 5] = [900_000, 903_000, 898_000, 901_000, 899_500];
const BAD: [u64; 5] = [800_000, 802_000, 797_000, 801_000, 799_000];

#[test]
fn the_exit_code_is_the_answer_and_the_json_record_says_why() {
    let t = tempfile::tempdir().unwrap();
    let (g, b) = (set(t.path(), "good", &GOOD), set(t.path(), "bad", &BAD));
    let like_good = set(
        t.path(),
        "c1",
        &[899_000, 902_000, 900_500, 898_500, 901_500],
    );
    let like_bad = set(
        t.path(),
        "c2",
        &[799_500, 801_500, 800_500, 798_000, 802_500],
    );
    let between = set(
        t.path(),
        "c3",
        &[850_000, 851_000, 849_000, 852_000, 848_000],
    );
    let json = t.path().join("step.json");
    let j = json.to_str().unwrap();
    let (code, out, _) = step(&g, &b, &like_good, &["--json", j]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.starts_with("answer: good\nmetric: hop1.tx_pps"),
        "{out}"
    );
    let (rec, ignored) = analyzer::bisect::record::StepRecord::load(&json).unwrap();
    assert!(ignored.is_empty());
    assert_eq!(rec.answer, "good");
    assert_eq!(rec.against_bad.verdict, "improved");
    assert!(rec.against_bad.p.unwrap() < 0.05);
    assert_eq!(rec.against_good.n_other, 5);
    let (code, out, _) = step(&g, &b, &like_bad, &[]);
    assert_eq!(code, Some(1), "{out}");
    let (code, out, _) = step(&g, &b, &between, &[]);
    assert_eq!(code, Some(3), "{out}");
    assert!(out.contains("differs from both endpoints"), "{out}");
}

#[test]
fn too_few_repeats_say_how_many_more() {
    let t = tempfile::tempdir().unwrap();
    let g = set(t.path(), "good", &GOOD[..2]);
    let b = set(t.path(), "bad", &BAD[..2]);
    let c = set(t.path(), "c", &GOOD[2..4]);
    let (code, out, _) = step(&g, &b, &c, &["--metric", "hop1.tx_pps"]);
    assert_eq!(code, Some(3), "{out}");
    assert!(out.contains("2 more repeats of each side"), "{out}");
}

#[test]
fn bad_input_names_what_is_wrong() {
    let t = tempfile::tempdir().unwrap();
    let (g, b) = (set(t.path(), "good", &GOOD), set(t.path(), "bad", &BAD));
    let (code, _, err) = step(&g, &b, &g, &["--metric", "hop9.tx_pps"]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("--metric hop9.tx_pps: no such metric"),
        "{err}"
    );
    // Nothing got worse: there is nothing to bisect, and no metric is guessed.
    let (code, _, err) = step(&b, &g, &g, &[]);
    assert_eq!(code, Some(2));
    assert!(err.contains("nothing to bisect"), "{err}");
    let (code, _, err) = step(&g, &b, &t.path().join("missing"), &[]);
    assert_eq!(code, Some(2));
    assert!(err.contains("--candidate"), "{err}");
}
