//! The `analyzer` binary as a user runs it: exit codes, error messages, and the reports it
//! writes (checked with insta snapshots).

use std::path::{Path, PathBuf};

use assert_cmd::Command;

fn analyzer() -> Command {
    Command::cargo_bin("analyzer").expect("binary built by cargo test")
}

fn bin_path() -> PathBuf {
    assert_cmd::cargo::cargo_bin("analyzer")
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// The proof of issue #4: the seed's runs, ingested from the seed's own numbers, give the seed's
/// "Comparison with Historical Results" table, and the committed files are exactly what the
/// tools produce.
#[test]
fn seed_records_and_report_are_reproduced() {
    let out = tempfile::tempdir().unwrap();
    let status = std::process::Command::new("sh")
        .arg(workspace().join("scripts/make-seed-records.sh"))
        .env("ANALYZER", bin_path())
        .env("OUT", out.path())
        .status()
        .unwrap();
    assert!(status.success());
    for f in [
        "phase4.json",
        "before-fix.json",
        "after-fix.json",
        "seed-comparison.md",
    ] {
        let made = std::fs::read_to_string(out.path().join(f)).unwrap();
        let committed = std::fs::read_to_string(workspace().join("reports").join(f)).unwrap();
        assert_eq!(
            made, committed,
            "reports/{f} is not what the tools produce; rerun scripts/make-seed-records.sh"
        );
    }
    let report = std::fs::read_to_string(out.path().join("seed-comparison.md")).unwrap();
    // The seed's figures, computed from the counters.
    for row in [
        "| MCR-1 Ingress | 490k pps ᴿ | 123k pps ᴿ | 689k pps | **-75%** ❌ | **+41%** ✅ |",
        "| MCR-1 Egress | 307k pps ᴿ | 83k pps ᴿ | 97k pps | **-73%** ❌ | **-68%** ❌ |",
        "| MCR-1 Buffer Exhaustion | 37% ᴿ | 32% ᴿ | 86% |",
        "| Traffic Generator | 733k pps ᴿ | 779k pps ᴿ | 693k pps | +6% | -5% |",
        "- **MCR-1 Ingress:** 9,940,000 / 14.43 s = **689k pps**",
        // The seed's first table, After Fix against Before Fix, from the same command
        // (`--chain`): the offered load fell 11%, so the rates are shown without a verdict and
        // the shares of the offered traffic are judged instead.
        "## Each run against the one before",
        "| MCR-1 Ingress | 123k pps ᴿ | 689k pps | +460% |",
        "| MCR-1 Egress | 83k pps ᴿ | 97k pps | +17% |",
        "| Traffic Generator | 779k pps ᴿ | 693k pps | -11% |",
        "| MCR-1 Received (% of offered) | 16% ᴿ | 99% | **+84 pp** ✅ |",
        "offered load differs: 693k pps against 779k pps",
    ] {
        assert!(report.contains(row), "missing {row}");
    }
    for png in ["rates.png", "waterfall-after-fix-2025-11-16.png"] {
        let bytes = std::fs::read(out.path().join("png").join(png)).unwrap();
        assert!(
            bytes.starts_with(b"\x89PNG") && bytes.len() > 10_000,
            "{png}"
        );
    }
    insta::assert_snapshot!("seed_comparison", report);
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/pipeline")
        .join(name)
}

/// The summary table's rows of rates (pps), as printed.
fn rate_rows(report: &str) -> Vec<&str> {
    let summary = report
        .split("## Summary")
        .nth(1)
        .and_then(|s| s.split("\n\n").nth(1))
        .expect("a summary table");
    summary.lines().filter(|l| l.contains(" pps")).collect()
}

/// Issue 15: a real 3-hop mcrd run at 5k pps (every datagram delivered) against the seed's
/// PHASE4, which was offered 733k pps. The rates are not evidence of a regression; the report
/// says why it does not judge them, judges the shares of the offered traffic, and exits 0.
#[test]
fn lower_offered_load_is_not_judged_as_a_rate_regression() {
    let out = analyzer()
        .arg("compare")
        .arg(workspace().join("reports/phase4.json"))
        .arg(fixture("mcrd-3h-5000pps.json"))
        .assert()
        .code(0);
    let text = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    let status = text.lines().find(|l| l.starts_with("**Status:**")).unwrap();
    assert!(
        status.contains("no regression among the comparable metrics")
            && status.contains("offered load differs: 5k pps against 733k pps; rates, CPU per packet and latency are not judged"),
        "{status}"
    );
    let key = text
        .lines()
        .find(|l| l.starts_with("**Key result:**"))
        .unwrap();
    assert!(
        key.contains("offered load differs: 5k pps against 733k pps"),
        "{key}"
    );
    let rates = rate_rows(&text);
    assert!(
        rates.iter().any(|l| l.starts_with("| hop 1 Egress |")),
        "{text}"
    );
    for row in rates {
        assert!(
            !row.contains('❌') && !row.contains('✅') && !row.contains('≈'),
            "{row}"
        );
    }
    assert!(
        text.contains("| hop 1 Sent on (% of offered) | 42% ᴿ | 100% | **+58 pp** ✅ |"),
        "{text}"
    );
    assert!(text.contains("- mcrd 3h 5k pps · hop 1 Ingress: not judged: offered load differs"));
}

/// Issue 15: at equal offered load (77k and 79k pps, within the tolerance) a real drop is still
/// a regression: the same 3-hop pipeline with mcrd starved of buffers and send slots
/// (`--buffer-count 16 --max-in-flight-sends 1 --uring-entries 8 --batch-size 1 --relay-gso off`)
/// lost 61% to kernel drops at MCR-1, and every hop's egress fell by as much.
#[test]
fn equal_offered_load_with_a_real_egress_drop_exits_1() {
    let out = analyzer()
        .arg("compare")
        .arg(fixture("mcrd-3h-80000pps.json"))
        .arg(fixture("mcrd-3h-80000pps-starved.json"))
        .assert()
        .code(1);
    let text = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    assert!(!text.contains("## Conditions"), "{text}");
    assert!(!text.contains("differs"), "{text}");
    assert!(
        text.contains("| MCR-1 Egress | 77k pps | 31k pps | **-60%** ❌ |"),
        "{text}"
    );
    assert!(
        text.contains("| MCR-3 Egress | 77k pps | 31k pps | **-60%** ❌ |"),
        "{text}"
    );
    assert!(
        !text.contains("(% of offered)"),
        "shares only where the load differs"
    );
}

/// When the only metrics both runs have are rates and the offered load differs, nothing is
/// judged: exit 0, and the report says so.
#[test]
fn nothing_comparable_exits_0_and_says_nothing_was_judged() {
    let dir = tempfile::tempdir().unwrap();
    let rec = |name: &str, gen: f64, tx: u64| {
        format!(
            r#"{{"schema":"mcr.analyzer.run","version":1,"name":"{name}","duration_ns":1000000000,
            "generator":{{"reported_pps":{gen}}},
            "hops":[{{"name":"MCR-1","counters":{{"tx_sent":{tx}}}}}]}}"#
        )
    };
    let base = write(dir.path(), "base.json", &rec("base", 733_000.0, 307_000));
    let low = write(dir.path(), "low.json", &rec("low", 100_000.0, 100_000));
    let out = analyzer()
        .arg("compare")
        .arg(&base)
        .arg(&low)
        .assert()
        .code(0);
    let text = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    assert!(
        text.contains("**Status:** nothing was judged. low against base: offered load differs: 100k pps against 733k pps"),
        "{text}"
    );
    assert!(text.contains("so nothing was judged"), "{text}");
    // The same runs with a tolerance wide enough to call the loads equal: judged, regressed.
    analyzer()
        .args(["compare", "--load-tolerance", "90"])
        .arg(&base)
        .arg(&low)
        .assert()
        .code(1);
}

/// Nothing judged (a 3-hop chain against the direct path) is no reason to leave out where the
/// run lost its packets: real records of socat losing a fifth at its first hop.
#[test]
fn a_run_not_judged_still_says_where_it_lost_packets() {
    let records = workspace().join("reports/pipeline/full/records");
    let out = analyzer()
        .arg("compare")
        .arg(records.join("direct-0h-20000pps/rep1.json"))
        .arg(records.join("socat-3h-20000pps/rep1.json"))
        .assert()
        .code(0);
    let text = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    let key = text
        .lines()
        .find(|l| l.starts_with("**Key result:**"))
        .unwrap_or_else(|| panic!("no key result:\n{text}"));
    assert!(key.contains("hop count differs: 3 against 0"), "{key}");
    assert!(key.contains("so nothing was judged."), "{key}");
    assert!(
        key.contains("Most packets were lost at SOCAT-1 to kernel drops before the relay saw them"),
        "{key}"
    );
}

/// A hop that received more than the generator sent is an inconsistent record, said as such,
/// not a loss of "-18,886%".
#[test]
fn a_hop_receiving_more_than_was_sent_is_inconsistent() {
    let dir = tempfile::tempdir().unwrap();
    let rec = |name: &str, rx: u64| {
        format!(
            r#"{{"schema":"mcr.analyzer.run","version":1,"name":"{name}","duration_ns":1000000000,
            "generator":{{"sent":10000,"elapsed_ns":1000000000}},
            "hops":[{{"name":"MCR-1","counters":{{"rx":{rx},"kernel_drops":0,"tx_sent":{rx}}}}}]}}"#
        )
    };
    let base = write(dir.path(), "base.json", &rec("base", 10_000));
    let odd = write(dir.path(), "odd.json", &rec("odd", 1_898_600));
    let out = analyzer().arg("compare").arg(&base).arg(&odd).assert();
    let text = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    assert!(
        !text.contains("18,886%") && !text.contains("-18,"),
        "{text}"
    );
    assert!(
        text.contains("The record is inconsistent: MCR-1 received 1,898,600, more than the 10,000 generator sent"),
        "{text}"
    );
    assert!(
        text.contains("*inconsistent*: 1,888,600 more received"),
        "{text}"
    );
}

#[test]
fn compare_exits_1_on_regression_and_0_without() {
    let dir = tempfile::tempdir().unwrap();
    let rec = |name: &str, tx: u64| {
        format!(
            r#"{{"schema":"mcr.analyzer.run","version":1,"name":"{name}","duration_ns":1000000000,
            "hops":[{{"name":"MCR-1","counters":{{"rx":1000000,"tx_sent":{tx},"buf_exhaust":{}}}}}]}}"#,
            1_000_000 - tx
        )
    };
    let base = write(dir.path(), "base.json", &rec("base", 900_000));
    let same = write(dir.path(), "same.json", &rec("same", 895_000));
    let worse = write(dir.path(), "worse.json", &rec("worse", 600_000));
    analyzer()
        .arg("compare")
        .arg(&base)
        .arg(&same)
        .assert()
        .code(0);
    let out = analyzer()
        .arg("compare")
        .arg(&base)
        .arg(&worse)
        .assert()
        .code(1);
    let text = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    assert!(text.contains("**REGRESSION**"), "{text}");
    // The same verdicts as a JSON record; the exit codes do not change with --json.
    let json = dir.path().join("verdicts.json");
    analyzer()
        .arg("compare")
        .arg(&base)
        .arg(&worse)
        .arg("--json")
        .arg(&json)
        .assert()
        .code(1);
    let (rec, _) = analyzer::verdicts::ComparisonRecord::load(&json).unwrap();
    assert!(rec.regressed);
    let tx = rec.pairs[0]
        .judgements
        .iter()
        .find(|j| j.metric.key == "hop1.tx_pps")
        .unwrap();
    assert_eq!(
        (tx.verdict.as_str(), tx.test.as_str()),
        ("regressed", "threshold")
    );
    assert_eq!((tx.n_baseline, tx.n_run), (1, 1));
    analyzer()
        .arg("compare")
        .arg(&base)
        .arg(&same)
        .arg("--json")
        .arg(&json)
        .assert()
        .code(0);
    let (rec, _) = analyzer::verdicts::ComparisonRecord::load(&json).unwrap();
    assert!(!rec.regressed);
    assert!(rec.pairs[0]
        .judgements
        .iter()
        .all(|j| j.verdict != "regressed"));
    // Thresholds wider than the changes (-33%, +30 pp) turn the same numbers into noise.
    analyzer()
        .args(["compare", "--threshold", "50", "--threshold-pp", "40"])
        .arg(&base)
        .arg(&worse)
        .assert()
        .code(0);
}

#[test]
fn repeats_are_judged_by_mann_whitney() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    for (i, tx) in [900_000u64, 905_000, 898_000, 902_000, 899_000]
        .iter()
        .enumerate()
    {
        let text = format!(
            r#"{{"schema":"mcr.analyzer.run","version":1,"name":"base","duration_ns":1000000000,
            "hops":[{{"name":"MCR-1","counters":{{"rx":1000000,"tx_sent":{tx}}}}}]}}"#
        );
        write(&a, &format!("{i}.json"), &text);
        let text = text
            .replace("\"base\"", "\"new\"")
            .replace(&tx.to_string(), &(tx - 200_000).to_string());
        write(&b, &format!("{i}.json"), &text);
    }
    let out = analyzer().arg("compare").arg(&a).arg(&b).assert().code(1);
    let text = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    assert!(text.contains("Mann-Whitney U (exact), p = 0.008"), "{text}");
    assert!(text.contains("(median of 5)"), "{text}");
    // Two of the new runs against five: the test cannot reach p < 0.05 (smallest p = 2/21),
    // so the same -22% is "cannot tell", not "within noise", and not a regression.
    let two = format!(
        "{},{}",
        b.join("0.json").display(),
        b.join("1.json").display()
    );
    let out = analyzer().arg("compare").arg(&a).arg(&two).assert().code(0);
    let text = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    assert!(text.contains("cannot tell with n = 5 + 2"), "{text}");
    assert!(
        text.contains("**Status:** no regression shown. Cannot tell, too few repeats for the test: MCR-1 Egress in new (n = 5 + 2)."),
        "{text}"
    );
    assert!(text.contains("its smallest p is 0.095"), "{text}");
    assert!(text.contains("? cannot tell"), "{text}");
    assert!(!text.contains("MCR-1 Egress: within noise"), "{text}");
}

#[test]
fn bad_input_exits_2_naming_file_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let good = write(
        dir.path(),
        "good.json",
        r#"{"schema":"mcr.analyzer.run","version":1,"name":"g"}"#,
    );
    let cases = [
        ("empty.json", "", "empty"),
        (
            "version.json",
            r#"{"schema":"mcr.analyzer.run","version":9,"name":"x"}"#,
            "field `version`",
        ),
        (
            "nan.json",
            r#"{"schema":"mcr.analyzer.run","version":1,"name":"x","hops":[{"name":"a","counters":{"rx":"12k"}}]}"#,
            "hops[0].counters.rx",
        ),
        (
            "missing.json",
            r#"{"schema":"mcr.analyzer.run","version":1}"#,
            "name",
        ),
        (
            "broken.json",
            r#"{"schema":"mcr.analyzer.run","#,
            "not valid JSON",
        ),
        // A counter that wrapped (0 - 1) is refused, not summed into a wrong percentage.
        (
            "wrapped.json",
            r#"{"schema":"mcr.analyzer.run","version":1,"name":"x","hops":[{"name":"a","counters":{"rx":7595133,"kernel_drops":18446744073709551615}}]}"#,
            "hops[0].counters.kernel_drops",
        ),
    ];
    for (name, text, field) in cases {
        let bad = write(dir.path(), name, text);
        let out = analyzer()
            .arg("compare")
            .arg(&good)
            .arg(&bad)
            .assert()
            .code(2);
        let err = String::from_utf8(out.get_output().stderr.clone()).unwrap();
        assert!(err.contains(name) && err.contains(field), "{name}: {err}");
        assert!(out.get_output().stdout.is_empty(), "no report on bad input");
    }
    let missing = dir.path().join("nope.json");
    let out = analyzer()
        .arg("compare")
        .arg(&good)
        .arg(&missing)
        .assert()
        .code(2);
    let err = String::from_utf8(out.get_output().stderr.clone()).unwrap();
    assert!(err.contains("nope.json"), "{err}");
    assert_eq!(
        err.matches("No such file or directory").count(),
        1,
        "the cause is printed once: {err}"
    );
}

#[test]
fn usage_errors_exit_2_and_help_exits_0() {
    analyzer()
        .arg("compare")
        .arg("only-one.json")
        .assert()
        .code(2);
    analyzer().arg("frobnicate").assert().code(2);
    analyzer().args(["ingest", "--name", "x"]).assert().code(2);
    analyzer()
        .args(["ingest", "--name", "x", "--hop", "nofile"])
        .assert()
        .code(2);
    analyzer().arg("--help").assert().code(0);
}

#[test]
fn ingest_text_counter_that_is_not_a_number_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "mcr1.log", "recv=9,940,000\negr_sent=lots\n");
    let out = analyzer()
        .args(["ingest", "--name", "x", "--hop"])
        .arg(format!("MCR-1={}", f.display()))
        .assert()
        .code(2);
    let err = String::from_utf8(out.get_output().stderr.clone()).unwrap();
    assert!(
        err.contains("mcr1.log") && err.contains("egr_sent (line 2)"),
        "{err}"
    );
}

#[test]
fn trend_flags_a_regressed_newest_run() {
    let dir = tempfile::tempdir().unwrap();
    let tx = [
        900_000u64, 905_000, 898_000, 902_000, 899_000, 901_000, 700_000, 702_000, 698_000,
    ];
    let mut files = Vec::new();
    for (i, t) in tx.iter().enumerate() {
        files.push(write(
            dir.path(),
            &format!("night-{i:02}.json"),
            &format!(
                r#"{{"schema":"mcr.analyzer.run","version":1,"name":"night-{i:02}","date":"2026-11-{:02}","duration_ns":1000000000,
                "hops":[{{"name":"MCR-1","counters":{{"rx":1000000,"tx_sent":{t}}}}}]}}"#,
                i + 10
            ),
        ));
    }
    let png = dir.path().join("png");
    let out = analyzer()
        .arg("trend")
        .args(&files)
        .arg("--png-dir")
        .arg(&png)
        .current_dir(dir.path())
        .assert()
        .code(1);
    let text = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    let text = text.replace(&dir.path().display().to_string(), "DIR");
    assert!(png.join("trend-hop1-tx-pps.png").exists());
    insta::assert_snapshot!("trend_regressed", text);
    let json = dir.path().join("trend.json");
    analyzer()
        .arg("trend")
        .args(&files)
        .arg("--json")
        .arg(&json)
        .assert()
        .code(1);
    let (rec, _) = analyzer::verdicts::TrendRecord::load(&json).unwrap();
    assert!(rec.regressed);
    let tx = rec
        .series
        .iter()
        .find(|s| s.metric.key == "hop1.tx_pps")
        .unwrap();
    assert_eq!(tx.verdict, "regressed");
    assert_eq!(tx.segments[1].first_run, 6);
    // The history before the drop is flat: no regression.
    analyzer().arg("trend").args(&files[..6]).assert().code(0);
}

/// `trend` over the Parquet history (`history append`'s parts) says what it says over the
/// records the history was made of, one rate at a time.
#[test]
fn trend_reads_the_parquet_history() {
    let dir = tempfile::tempdir().unwrap();
    let tx = [
        900_000u64, 905_000, 898_000, 902_000, 899_000, 901_000, 700_000, 702_000, 698_000,
    ];
    let night = |i: usize, rate: u64, t: u64| {
        format!(
            r#"{{"schema":"mcr.analyzer.run","version":1,"name":"night-{i:02}","date":"2026-11-{:02}T0{}:00:00Z","duration_ns":1000000000,
            "configuration":{{"generator":{{"target_pps":{rate}}}}},
            "hops":[{{"name":"MCR-1","relay":"mcr","counters":{{"rx":1000000,"tx_sent":{t}}}}}]}}"#,
            i + 10,
            if rate == 20_000 { 1 } else { 2 }
        )
    };
    let (mut slow, mut fast) = (Vec::new(), Vec::new());
    for (i, t) in tx.iter().enumerate() {
        let a = write(dir.path(), &format!("a-{i:02}.json"), &night(i, 20_000, *t));
        let b = write(
            dir.path(),
            &format!("b-{i:02}.json"),
            &night(i, 150_000, 900_000),
        );
        // One part per three nights, both rates in each.
        let ds = dir.path().join("dataset");
        if i % 3 == 2 {
            let mut night_files = slow[slow.len() - 2..].to_vec();
            night_files.push(a.clone());
            night_files.extend(fast[fast.len() - 2..].iter().cloned());
            night_files.push(b.clone());
            analyzer()
                .args(["history", "append", "--to"])
                .arg(&ds)
                .args(&night_files)
                .assert()
                .success();
        }
        slow.push(a);
        fast.push(b);
    }
    let ds = dir.path().join("dataset");
    let from_records = analyzer()
        .arg("trend")
        .args(&slow)
        .current_dir(dir.path())
        .assert()
        .code(1);
    let from_history = analyzer()
        .arg("trend")
        .arg(&ds)
        .args(["--rate", "20000"])
        .current_dir(dir.path())
        .assert()
        .code(1);
    let text =
        |o: &assert_cmd::assert::Assert| String::from_utf8(o.get_output().stdout.clone()).unwrap();
    assert_eq!(text(&from_history), text(&from_records));
    // The other rate is flat; without a rate both are one series of 18 runs.
    analyzer()
        .arg("trend")
        .arg(&ds)
        .args(["--rate", "150000"])
        .assert()
        .code(0);
    let all = analyzer().arg("trend").arg(&ds).assert();
    assert!(text(&all).starts_with("# Trend: 18 runs"), "{}", text(&all));
    // --rate is for a history.
    analyzer()
        .arg("trend")
        .args(&slow)
        .args(["--rate", "20000"])
        .assert()
        .code(2);
}

/// Run names are the user's: a `|` in one cannot split the change-point cell or the heading.
#[test]
fn trend_escapes_run_names() {
    let dir = tempfile::tempdir().unwrap();
    let tx = [
        900_000u64, 905_000, 898_000, 902_000, 899_000, 901_000, 700_000, 702_000, 698_000,
    ];
    let mut files = Vec::new();
    for (i, t) in tx.iter().enumerate() {
        files.push(write(
            dir.path(),
            &format!("night-{i:02}.json"),
            &format!(
                r#"{{"schema":"mcr.analyzer.run","version":1,"name":"night|{i:02}","date":"2026-11-{:02}","duration_ns":1000000000,
                "hops":[{{"name":"MCR-1","counters":{{"rx":1000000,"tx_sent":{t}}}}}]}}"#,
                i + 10
            ),
        ));
    }
    let out = analyzer().arg("trend").args(&files).assert().code(1);
    let text = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    let row = text
        .lines()
        .find(|l| l.starts_with("| MCR-1 Egress"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(row.contains("night\\|06 (2026-11-16) ("), "{row}");
    // Bars that end a cell: not escaped.
    let bars = row
        .char_indices()
        .filter(|&(i, c)| c == '|' && (i == 0 || &row[i - 1..i] != "\\"))
        .count();
    assert_eq!(bars, 7, "six cells: {row}");
    assert!(text.contains("1. night\\|00 (2026-11-10) `"), "{text}");
}

/// A full pipeline of text and CSV inputs through `ingest` and `compare`: receiver, latency,
/// host CPU, perf counters with "unavailable", kernel drops and a configuration change.
#[test]
fn full_pipeline_report_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let runs = [
        ("base", 64, 4_000u64, 990_000u64, "20us"),
        ("new", 1024, 25_000, 960_000, "45us"),
    ];
    for (name, depth, kdrops, received, p50) in runs {
        write(
            d,
            &format!("{name}-gen.txt"),
            "Total packets sent: 1,000,000\nElapsed time: 10.00s\n",
        );
        let rx = 1_000_000 - kdrops;
        let matched = rx - 10;
        let tx = received;
        let ex = matched - tx - 3;
        write(
            d,
            &format!("{name}-mcr1.txt"),
            &format!(
                "rx={rx} kernel_drops={kdrops} filtered=4 malformed=0 no_match=6 matched={matched}\n\
                 buf_exhaust={ex} tx_errors=3 in_flight=0 tx_sent={tx}\ncpu_user=1.5s cpu_system=2.5s\n"
            ),
        );
        write(
            d,
            &format!("{name}-mcr1.csv"),
            "4000.0,msec,task-clock,1,100.00,,\n120,,context-switches,1,100.00,,\n<not supported>,,cycles,0,100.00,,\n",
        );
        write(
            d,
            &format!("{name}-recv.txt"),
            &format!(
                "received={received} lost={}\np50={p50} p99=400us\n",
                1_000_000 - received
            ),
        );
        write(
            d,
            &format!("{name}-host.txt"),
            "user=3s system=5s softirq=6s\n",
        );
        analyzer()
            .current_dir(d)
            .args(["ingest", "--name", name, "--date", "2026-11-20"])
            .args(["--generator", &format!("{name}-gen.txt")])
            .args(["--hop", &format!("MCR-1={name}-mcr1.txt")])
            .args(["--hop", &format!("MCR-1={name}-mcr1.csv")])
            .args(["--receiver", &format!("{name}-recv.txt")])
            .args(["--host", &format!("{name}-host.txt")])
            .args(["--set", &format!("config.relay.uring_entries={depth}")])
            .args(["--set", "env.kernel=6.18.0", "--set", "hop.MCR-1.relay=mcr"])
            .args(["--out", &format!("{name}.json")])
            .assert()
            .code(0);
    }
    let out = analyzer()
        .current_dir(d)
        .args([
            "compare",
            "base.json",
            "new.json",
            "--png-dir",
            "png",
            "--out",
            "report.md",
        ])
        .assert()
        .code(1);
    assert!(out.get_output().stdout.is_empty());
    let report = std::fs::read_to_string(d.join("report.md")).unwrap();
    assert!(report.contains("| Unexplained remainder | 0 |"), "{report}");
    assert!(d.join("png/latency.png").exists());
    insta::assert_snapshot!("full_pipeline", report);
}

/// Issue 14: where a production stream lost packets, from the records of a real run of
/// `scripts/stream_chain.sh` (in `tests/fixtures/streams/`: ffmpeg through two monitored mcrd
/// hops, nftables dropping full datagrams leaving MCR-1 and arriving at the receiver, its
/// counters in `drops.json`). The report puts the first loss between MCR-1 and MCR-2 and the
/// rest on the last link, with the counts nftables dropped: exact for RTP's sequence numbers,
/// and for MPEG-TS within what continuity counters resolve.
#[test]
fn stream_loss_is_localized_from_real_records() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let streams = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/streams");
    // (format, datagrams nftables dropped leaving MCR-1, arriving at the receiver)
    let mut truth = Vec::new();
    for f in ["rtp", "mpegts"] {
        analyzer()
            .current_dir(&streams)
            .args(["ingest", "--name", &format!("ffmpeg {f}")])
            .args(["--hop", &format!("MCR-1={f}/mcr1.json")])
            .args(["--hop", &format!("MCR-2={f}/mcr2.json")])
            .args(["--receiver", &format!("{f}/recv.json"), "--out"])
            .arg(d.join(format!("{f}.json")))
            .assert()
            .code(0);
        let drops: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(streams.join(f).join("drops.json")).unwrap(),
        )
        .unwrap();
        let n = |k: &str| drops[k].as_i64().unwrap();
        truth.push((f, n("dropped_leaving_mcr1"), n("dropped_into_receiver")));
    }
    for &(f, link1, link2) in &truth {
        assert!(
            link1 >= 10 && link2 >= 5,
            "{f}: too few drops to localize: {link1}, {link2}"
        );
        let rec = analyzer::record::RunRecord::load(&d.join(format!("{f}.json"))).unwrap();
        let paths = analyzer::stream_loss::stream_paths(&rec);
        assert_eq!(paths.len(), 1, "{f}: one stream through both hops");
        let p = &paths[0];
        let at: Vec<&str> = p.points.iter().map(|x| x.at.as_str()).collect();
        assert_eq!(at, ["MCR-1", "MCR-2", "receiver"], "{f}");
        assert_eq!(p.first_loss(), Some(1), "{f}: first at MCR-2");
        let new: Vec<i64> = p.points.iter().map(|x| x.new_loss).collect();
        // MCR-1 counted the sends nftables refused as send errors; the receiver's drops were
        // after MCR-2's sends.
        assert_eq!(p.points[1].upstream_dropped, Some(link1 as u64), "{f}");
        assert_eq!(p.points[2].upstream_dropped, Some(0), "{f}");
        if f == "rtp" {
            assert_eq!(new, [0, link1, link2], "RTP sequence numbers are exact");
        } else {
            // Each dropped datagram held 7 TS packets: a lower bound that misses a datagram
            // only when it held a PID's last packets (ffmpeg's stream has 4 PIDs).
            for (got, dropped) in [(new[1], link1), (new[2], link2)] {
                assert!(
                    got <= 7 * dropped && got >= 7 * (dropped - 4),
                    "MPEG-TS: {got} TS packets for {dropped} datagrams of 7"
                );
            }
            assert_eq!(new[0], 0);
        }
    }
    analyzer()
        .current_dir(d)
        .args(["compare", "rtp.json", "mpegts.json", "--out", "report.md"])
        .assert()
        .code(0);
    let report = std::fs::read_to_string(d.join("report.md")).unwrap();
    let (_, l1, l2) = truth[0];
    for line in [
        format!("- **Sequence gaps first appear at MCR-2, not at MCR-1: {l1} sequence numbers lost between MCR-1 and MCR-2.** MCR-1 itself dropped {l1} of the flow's datagrams (buffer exhaustion, send errors): all of them."),
        format!("| **New since the point before** | **0** | **{l1}** | **{l2}** |"),
        format!("- Then {l2} sequence numbers more between MCR-2 and the receiver. MCR-2 dropped none of the flow itself"),
        "Stream `camera` (mpegts): continuity-counter errors first appear at MCR-2, not at MCR-1".to_string(),
        "What continuity counters resolve: an error means at least one TS packet".to_string(),
    ] {
        assert!(report.contains(&line), "missing {line}\n{report}");
    }
    insta::assert_snapshot!("stream_loss", report);
}

/// The pipeline harness's own JSON (kernel counters, conservation check, host CPU) goes into the
/// record through `ingest`, and `compare` uses it: link drops explain loss between hops, the
/// harness's verdict is shown, and runs with different relays get neutral hop labels.
#[test]
fn pipeline_json_inputs_and_mixed_relays_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // (run, hop name, relay, frames the backlog refused on the link into the hop (counted by
    // the sending veth and by softnet), frames no counter saw, harness verdict)
    let runs = [
        ("mcrd", "MCR-1", "mcr", 0u64, 0u64, true),
        ("socat", "SOCAT-1", "socat", 700, 40, false),
    ];
    for (name, hop, relay, link_drop, unseen, ok) in runs {
        let (sent, softnet) = (100_000u64, link_drop);
        let frames = sent + 3;
        let rx = frames - link_drop - unseen;
        write(
            d,
            &format!("{name}-gen.txt"),
            "Total packets sent: 100,000\nElapsed time: 10.00s\nend_markers_sent=3\n",
        );
        write(
            d,
            &format!("{name}-hop.txt"),
            &format!("rx={rx} kernel_drops=0 tx_sent={rx}\n"),
        );
        write(
            d,
            &format!("{name}-recv.txt"),
            &format!(
                "received={} lost={} end_markers_received=3\n",
                rx - 3,
                sent - (rx - 3)
            ),
        );
        write(
            d,
            &format!("{name}-kernel.json"),
            &format!(
                r#"{{"schema":"mcr.pipeline.kernel","version":1,
                "links":[{{"from":"p-gen:out0","to":"p-r1:in0","tx_packets":{},"tx_dropped":{link_drop},"rx_packets":{},"rx_dropped":0}},
                         {{"from":"p-r1:out0","to":"p-recv:in0","tx_packets":{rx},"tx_dropped":0,"rx_packets":{rx},"rx_dropped":0}}],
                "namespaces":[{{"name":"p-r1","role":"hop","in_errors":0,"rcvbuf_errors":0,"sndbuf_errors":0}}],
                "softnet_dropped":{softnet}}}"#,
                frames - link_drop,
                frames - link_drop
            ),
        );
        write(
            d,
            &format!("{name}-cons.json"),
            &format!(
                r#"{{"schema":"mcr.pipeline.conservation","version":1,"ok":{ok},"stages":[
                {{"stage":"link p-gen -> p-r1","in":{frames},"dropped":{link_drop},"out":{},"unexplained":0}},
                {{"stage":"relay p-r1 ({name})","in":{},"dropped":0,"out":{rx},"unexplained":{unseen}}}]}}"#,
                frames - link_drop,
                frames - link_drop
            ),
        );
        write(
            d,
            &format!("{name}-host.json"),
            r#"{"schema":"mcr.pipeline.host_cpu","version":1,"method":"host busy minus other processes",
            "window_ns":10500000000,"other_processes_ns":200000000,"run_ns":3000000000}"#,
        );
        analyzer()
            .current_dir(d)
            .args(["ingest", "--name", name, "--date", "2026-11-24"])
            .args(["--generator", &format!("{name}-gen.txt")])
            .args(["--hop", &format!("{hop}={name}-hop.txt")])
            .args(["--set", &format!("hop.{hop}.relay={relay}")])
            .args(["--receiver", &format!("{name}-recv.txt")])
            .args(["--host", &format!("{name}-host.json")])
            .args(["--kernel", &format!("{name}-kernel.json")])
            .args(["--conservation", &format!("{name}-cons.json")])
            .args(["--out", &format!("{name}.json")])
            .assert()
            .code(0);
    }
    let rec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("socat.json")).unwrap()).unwrap();
    assert_eq!(rec["kernel"]["links"][0]["tx_dropped"], 700);
    assert_eq!(rec["kernel"]["softnet_dropped"], 700);
    assert_eq!(rec["conservation"]["ok"], false);
    assert_eq!(rec["host_cpu"]["window_ns"], 10_500_000_000u64);
    assert_eq!(rec["host_cpu"]["busy_ns"], 3_000_000_000u64);

    let out = analyzer()
        .current_dir(d)
        .args(["compare", "mcrd.json", "socat.json"])
        .assert();
    let report = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    assert!(report.contains("| hop 1 Ingress |"), "{report}");
    assert!(!report.contains("| MCR-1 Ingress |"), "{report}");
    assert!(report.contains("| veth link drops |"), "{report}");
    assert!(
        report.contains("FAILED, unexplained: relay p-r1 (socat) 40"),
        "{report}"
    );
    insta::assert_snapshot!("pipeline_json_mixed_relays", report);

    // A pipeline document with a wrong type is refused, naming the file and the field.
    write(
        d,
        "bad-kernel.json",
        r#"{"schema":"mcr.pipeline.kernel","version":1,"links":[{"from":"a","to":"b","rx_dropped":"many"}],"namespaces":[]}"#,
    );
    let out = analyzer()
        .current_dir(d)
        .args(["ingest", "--name", "x", "--kernel", "bad-kernel.json"])
        .assert()
        .code(2);
    let err = String::from_utf8(out.get_output().stderr.clone()).unwrap();
    assert!(
        err.contains("bad-kernel.json") && err.contains("links[0].rx_dropped"),
        "{err}"
    );
}

/// `history append` twice (two nights of the real 80k pps fixtures), then `history show`
/// slicing one metric at one hop to Markdown, CSV and PNG.
#[test]
fn history_appends_nights_and_shows_a_slice() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let hist = d.join("dataset");
    for night in ["mcrd-3h-80000pps.json", "mcrd-3h-80000pps-starved.json"] {
        analyzer()
            .args(["history", "append", "--to"])
            .arg(&hist)
            .arg(fixture(night))
            .assert()
            .code(0);
    }
    assert!(hist.join("000001.parquet").exists() && hist.join("000002.parquet").exists());
    assert!(hist.join("000001.parquet.crc32").exists());
    // The same night again: nothing is counted twice, and the run is named.
    let out = analyzer()
        .args(["history", "append", "--to"])
        .arg(&hist)
        .arg(fixture("mcrd-3h-80000pps.json"))
        .assert()
        .code(0);
    let err = String::from_utf8(out.get_output().stderr.clone()).unwrap();
    assert!(err.contains("already in the history"), "{err}");
    assert!(!hist.join("000003.parquet").exists());
    let out = analyzer()
        .current_dir(d)
        .args([
            "history", "show", "dataset", "--metric", "tx_pps", "--hop", "1",
        ])
        .args([
            "--relay",
            "mcr",
            "--from",
            "2026-12-03",
            "--to",
            "2026-12-03",
        ])
        .args(["--csv", "h.csv", "--png", "h.png"])
        .assert()
        .code(0);
    let md = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    assert!(md.contains("## MCR-1 Egress (mcr, target 80k pps)"), "{md}");
    // The two runs are one day's repeats: median of 77k and 31k pps.
    assert!(md.contains("| 2026-12-03 | 2 | 54k pps |"), "{md}");
    let csv = std::fs::read_to_string(d.join("h.csv")).unwrap();
    assert_eq!(csv.lines().count(), 2, "{csv}");
    assert!(csv.starts_with("metric,label,hop,relay,target_pps,day,runs,median"));
    assert!(std::fs::read(d.join("h.png"))
        .unwrap()
        .starts_with(b"\x89PNG"));
    // A bad day is a usage error.
    analyzer()
        .current_dir(d)
        .args(["history", "show", "dataset", "--from", "3 Dec"])
        .assert()
        .code(2);
}

/// Issue 19: a run record with `minor_version` was refused ("unknown field `minor_version`").
/// A newer minor version is compared, and the report names the fields it did not read.
#[test]
fn a_run_record_of_a_newer_minor_version_is_compared_and_its_new_fields_named() {
    let dir = tempfile::tempdir().unwrap();
    let rec = |name: &str, extra: &str| {
        format!(
            r#"{{"schema":"mcr.analyzer.run","version":1,{extra}"name":"{name}","duration_ns":1000000000,
            "hops":[{{"name":"MCR-1","counters":{{"rx":1000000,"tx_sent":900000}}}}]}}"#
        )
    };
    let base = write(dir.path(), "base.json", &rec("base", ""));
    let newer = write(
        dir.path(),
        "newer.json",
        &rec("newer", r#""minor_version":1,"dashboard":"x","#),
    );
    let out = analyzer()
        .arg("compare")
        .arg(&base)
        .arg(&newer)
        .assert()
        .code(0);
    let text = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    assert!(
        text.contains("the record is newer than this analyzer: not read `dashboard`"),
        "{text}"
    );
    let typo = write(
        dir.path(),
        "typo.json",
        &rec("typo", r#""minor_version":0,"dashboard":"x","#),
    );
    let out = analyzer()
        .arg("compare")
        .arg(&base)
        .arg(&typo)
        .assert()
        .code(2);
    let err = String::from_utf8(out.get_output().stderr.clone()).unwrap();
    assert!(
        err.contains("typo.json") && err.contains("`dashboard`"),
        "{err}"
    );
}
