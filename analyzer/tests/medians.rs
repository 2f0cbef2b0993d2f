//! `analyzer medians`: the medians tables of the committed campaigns are what the analyzer
//! makes from their committed records (they were made by the jq programs this replaced, so
//! the same numbers come out), and bad records are refused naming the file and the field.

use std::path::{Path, PathBuf};

use assert_cmd::Command;

fn analyzer() -> Command {
    Command::cargo_bin("analyzer").expect("binary built by cargo test")
}

fn reports() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../reports")
}

fn medians(layout: &str, records: &Path) -> std::process::Output {
    analyzer()
        .args(["medians", layout])
        .arg(records)
        .output()
        .unwrap()
}

#[test]
fn committed_full_pipeline_table_is_reproduced() {
    let dir = reports().join("pipeline/full");
    let out = analyzer()
        .args(["medians", "pipeline-full"])
        .arg(dir.join("records"))
        .arg("--sets")
        .arg(dir.join("sets"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        std::fs::read_to_string(dir.join("medians.md")).unwrap(),
        "reports/pipeline/full/medians.md is not what `analyzer medians pipeline-full` makes"
    );
    // Without --sets there is nothing to read the checks from.
    let out = medians("pipeline-full", &dir.join("records"));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--sets"));
}

#[test]
fn a_conservation_check_of_another_version_is_refused_naming_it() {
    let full = reports().join("pipeline/full");
    let tmp = tempfile::tempdir().unwrap();
    let set = "mcrd-3h-20000pps";
    for rep in ["rep1", "rep2", "rep3"] {
        let to = tmp.path().join("sets").join(set).join(rep);
        std::fs::create_dir_all(&to).unwrap();
        for f in ["conservation.json", "host-cpu.json"] {
            std::fs::copy(full.join("sets").join(set).join(rep).join(f), to.join(f)).unwrap();
        }
    }
    std::fs::create_dir_all(tmp.path().join("records")).unwrap();
    let records = tmp.path().join("records").join(set);
    std::fs::create_dir_all(&records).unwrap();
    for rep in ["rep1", "rep2", "rep3"] {
        let f = format!("{rep}.json");
        std::fs::copy(full.join("records").join(set).join(&f), records.join(&f)).unwrap();
    }
    let c = tmp
        .path()
        .join("sets")
        .join(set)
        .join("rep2/conservation.json");
    let text = std::fs::read_to_string(&c)
        .unwrap()
        .replace("\"version\": 1", "\"version\": 2");
    std::fs::write(&c, text).unwrap();
    let out = analyzer()
        .args(["medians", "pipeline-full"])
        .arg(tmp.path().join("records"))
        .arg("--sets")
        .arg(tmp.path().join("sets"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("rep2/conservation.json") && err.contains("field `version`"),
        "{err}"
    );
}

#[test]
fn committed_campaign_tables_are_reproduced() {
    for (layout, dir) in [
        ("relay-speed", "relay-speed"),
        ("fast-path", "relay-speed-fastpath"),
        ("fast-path", "relay-speed-fastpath/userspace"),
    ] {
        let dir = reports().join(dir);
        let out = medians(layout, &dir.join("records"));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let committed = std::fs::read_to_string(dir.join("medians.md")).unwrap();
        assert_eq!(
            String::from_utf8(out.stdout).unwrap(),
            committed,
            "{}/medians.md is not what `analyzer medians {layout}` makes of its records",
            dir.display()
        );
    }
}

/// A small campaign (direct, kernel and mcrd at one rate, two repeats) copied from
/// reports/relay-speed/records, with `edit` applied to mcrd's second repeat.
fn small_campaign(edit: impl FnOnce(&mut serde_json::Value)) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    for set in [
        "direct-0h-20000pps",
        "kernel-3h-20000pps",
        "mcrd-3h-20000pps",
    ] {
        std::fs::create_dir(tmp.path().join(set)).unwrap();
        for rep in ["rep1", "rep2"] {
            let from = reports().join(format!("relay-speed/records/{set}/{rep}.json"));
            std::fs::copy(from, tmp.path().join(format!("{set}/{rep}.json"))).unwrap();
        }
    }
    let p = tmp.path().join("mcrd-3h-20000pps/rep2.json");
    let mut doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    edit(&mut doc);
    std::fs::write(&p, serde_json::to_string(&doc).unwrap()).unwrap();
    tmp
}

#[test]
fn per_hop_cost_pairs_each_chain_with_the_direct_run_of_its_repeat() {
    let tmp = small_campaign(|_| {});
    let out = medians("relay-speed", tmp.path());
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let host = |set: &str, rep: &str| {
        let doc: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(tmp.path().join(format!("{set}/{rep}.json"))).unwrap(),
        )
        .unwrap();
        doc["host_cpu"]["busy_ns"].as_f64().unwrap() / doc["receiver"]["received"].as_f64().unwrap()
    };
    let per_hop = |rep| (host("mcrd-3h-20000pps", rep) - host("direct-0h-20000pps", rep)) / 3.0;
    let expected = ((per_hop("rep1") + per_hop("rep2")) / 2.0).round();
    let row = text
        .lines()
        .find(|l| l.starts_with("| 20000 | mcrd |"))
        .unwrap_or_else(|| panic!("no mcrd row in\n{text}"));
    let cells: Vec<&str> = row.split(" | ").collect();
    assert_eq!(cells[8], format!("{expected}"), "{row}");
    assert!(
        text.contains("| mcrd | 20000 | 20000 | none |"),
        "capacity row:\n{text}"
    );
}

#[test]
fn a_record_of_another_version_is_refused_naming_file_and_field() {
    let tmp = small_campaign(|d| d["version"] = 2.into());
    let out = medians("relay-speed", tmp.path());
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("mcrd-3h-20000pps/rep2.json") && err.contains("version"),
        "{err}"
    );
}

#[test]
fn a_missing_field_is_refused_naming_file_and_field() {
    let tmp = small_campaign(|d| {
        d["host_cpu"].as_object_mut().unwrap().remove("busy_ns");
    });
    let out = medians("fast-path", tmp.path());
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("mcrd-3h-20000pps/rep2.json") && err.contains("field `host_cpu.busy_ns`"),
        "{err}"
    );
}

#[test]
fn a_directory_without_records_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let out = medians("relay-speed", tmp.path());
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("no records"), "{err}");
}

#[test]
fn names_are_escaped_in_their_cells() {
    let tmp = small_campaign(|_| {});
    std::fs::rename(
        tmp.path().join("mcrd-3h-20000pps"),
        tmp.path().join("mc|rd-3h-20000pps"),
    )
    .unwrap();
    let out = medians("relay-speed", tmp.path());
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("| 20000 | mc\\|rd | 2 |"), "{text}");
}
