//! `analyzer pipeline conservation|kernel|host-cpu|summary|hop|row`: from the raw counters of real runs of
//! `scripts/pipeline_veth.sh` (`tests/fixtures/pipeline-raw/`), the same documents, byte for
//! byte, as the jq and awk programs they replaced made; bad inputs are refused naming the file
//! and the field.

use std::path::{Path, PathBuf};

use assert_cmd::Command;

fn analyzer() -> Command {
    Command::cargo_bin("analyzer").expect("binary built by cargo test")
}

fn raw(relay: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/pipeline-raw")
        .join(relay)
}

const RELAYS: [&str; 3] = ["mcrd", "route", "socat"];
/// The harness's pid in the fixtures' host snapshots.
const ROOT: &str = "8764";

fn run(args: &[&std::ffi::OsStr]) -> std::process::Output {
    analyzer().arg("pipeline").args(args).output().unwrap()
}

fn stdout_of(out: std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn conservation(dir: &Path) -> std::process::Output {
    run(&[
        "conservation".as_ref(),
        "--generator".as_ref(),
        dir.join("send.json").as_os_str(),
        "--receiver".as_ref(),
        dir.join("recv.json").as_os_str(),
        "--chain".as_ref(),
        dir.join("chain.json").as_os_str(),
    ])
}

#[test]
fn conservation_kernel_and_host_cpu_reproduce_the_harness_documents() {
    for relay in RELAYS {
        let dir = raw(relay);
        let expected = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
        assert_eq!(
            stdout_of(conservation(&dir)),
            expected("conservation.json"),
            "{relay}: conservation"
        );
        let kernel = run(&[
            "kernel".as_ref(),
            "--chain".as_ref(),
            dir.join("chain.json").as_os_str(),
            "--host-cpu".as_ref(),
            dir.join("host-cpu.json").as_os_str(),
        ]);
        assert_eq!(
            stdout_of(kernel),
            expected("kernel.json"),
            "{relay}: kernel"
        );
        let host = run(&[
            "host-cpu".as_ref(),
            "--before".as_ref(),
            dir.join("host-before.txt").as_os_str(),
            "--after".as_ref(),
            dir.join("host-after.txt").as_os_str(),
            "--root".as_ref(),
            ROOT.as_ref(),
            "--clk-tck".as_ref(),
            "100".as_ref(),
        ]);
        assert_eq!(
            stdout_of(host),
            expected("host-cpu.json"),
            "{relay}: host CPU"
        );
    }
}

#[test]
fn summary_hop_counters_and_nightly_row_reproduce_the_harness_text() {
    for relay in RELAYS {
        let dir = raw(relay);
        let expected = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
        let summary = run(&[
            "summary".as_ref(),
            "--generator".as_ref(),
            dir.join("send.json").as_os_str(),
            "--receiver".as_ref(),
            dir.join("recv.json").as_os_str(),
            "--chain".as_ref(),
            dir.join("chain.json").as_os_str(),
            "--host-cpu".as_ref(),
            dir.join("host-cpu.json").as_os_str(),
        ]);
        assert_eq!(
            stdout_of(summary),
            expected("summary.txt"),
            "{relay}: summary"
        );
        for hop in ["1", "2", "3"] {
            let out = run(&[
                "hop".as_ref(),
                "--chain".as_ref(),
                dir.join("chain.json").as_os_str(),
                "--hop".as_ref(),
                hop.as_ref(),
            ]);
            if relay == "mcrd" {
                // mcrd counts for itself.
                assert_eq!(out.status.code(), Some(2));
                assert!(String::from_utf8_lossy(&out.stderr).contains("counts for itself"));
            } else {
                assert_eq!(
                    stdout_of(out),
                    expected(&format!("hop{hop}.txt")),
                    "{relay}: hop {hop}"
                );
            }
        }
    }
    for relay in RELAYS {
        let dir = raw(relay);
        let row = run(&[
            "row".as_ref(),
            "--label".as_ref(),
            "rep1".as_ref(),
            "--conservation".as_ref(),
            dir.join("conservation.json").as_os_str(),
            "--host-cpu".as_ref(),
            dir.join("host-cpu.json").as_os_str(),
        ]);
        assert_eq!(
            stdout_of(row),
            std::fs::read_to_string(dir.join("nightly-row.md")).unwrap(),
            "{relay}: nightly row"
        );
    }
    let out = run(&[
        "hop".as_ref(),
        "--chain".as_ref(),
        raw("route").join("chain.json").as_os_str(),
        "--hop".as_ref(),
        "4".as_ref(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--hop 4"));
}

#[test]
fn every_packet_of_the_fixture_runs_is_accounted_for() {
    for relay in RELAYS {
        let doc: serde_json::Value =
            serde_json::from_str(&stdout_of(conservation(&raw(relay)))).unwrap();
        assert_eq!(doc["ok"], true, "{relay}: {doc:#}");
        assert_eq!(doc["frames"]["unexplained"], 0, "{relay}");
        // generator, 4 links, 3 relays, receiver
        assert_eq!(doc["stages"].as_array().unwrap().len(), 9, "{relay}");
    }
}

/// A copy of the mcrd fixture with `edit` applied to one of its files.
fn edited(file: &str, edit: impl FnOnce(&mut serde_json::Value)) -> tempfile::TempDir {
    edited_in("mcrd", file, edit)
}

/// A copy of fixture `relay` with `edit` applied to one of its files.
fn edited_in(
    relay: &str,
    file: &str,
    edit: impl FnOnce(&mut serde_json::Value),
) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    for f in std::fs::read_dir(raw(relay)).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, tmp.path().join(f.file_name().unwrap())).unwrap();
    }
    let p = tmp.path().join(file);
    let mut doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    edit(&mut doc);
    std::fs::write(&p, serde_json::to_string(&doc).unwrap()).unwrap();
    tmp
}

fn refused(dir: &Path, names: &[&str]) {
    let out = conservation(dir);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    for n in names {
        assert!(err.contains(n), "{n} not in: {err}");
    }
}

#[test]
fn a_record_of_another_version_is_refused_naming_file_and_field() {
    let tmp = edited("recv.json", |d| d["version"] = 2.into());
    refused(tmp.path(), &["recv.json", "field `version`"]);
    let tmp = edited("chain.json", |d| d["version"] = 7.into());
    refused(tmp.path(), &["chain.json", "field `version`"]);
    let tmp = edited("chain.json", |d| d["ns"][1]["stats"]["version"] = 9.into());
    refused(tmp.path(), &["chain.json", "field `ns[1].stats.version`"]);
}

#[test]
fn a_missing_field_is_refused_naming_file_and_field() {
    let tmp = edited("send.json", |d| {
        d.as_object_mut().unwrap().remove("packets_sent");
    });
    refused(tmp.path(), &["send.json", "packets_sent"]);
    let tmp = edited("chain.json", |d| {
        d["ns"][2]["after"]["links"]["out0"]
            .as_object_mut()
            .unwrap()
            .remove("tx_packets");
    });
    refused(
        tmp.path(),
        &["chain.json", "ns[2].after.links.out0", "tx_packets"],
    );
    let tmp = edited("chain.json", |d| {
        d["ns"][4]["before"]["udp"]
            .as_object_mut()
            .unwrap()
            .remove("InErrors");
    });
    refused(
        tmp.path(),
        &["chain.json", "field `ns[4].before.udp.InErrors`"],
    );
    // An mcrd hop without its stats: the drops cannot be counted.
    let tmp = edited("chain.json", |d| {
        d["ns"][1]["stats"] = serde_json::Value::Null
    });
    refused(tmp.path(), &["chain.json", "field `ns[1].stats`"]);
    // mcrd's stats in another shape (a map where the contract has a count) is not guessed at.
    let tmp = edited("chain.json", |d| {
        d["ns"][1]["stats"]["totals"]["malformed"] = serde_json::json!({"short": 0})
    });
    refused(tmp.path(), &["chain.json", "ns[1].stats.totals.malformed"]);
}

#[test]
fn a_counter_that_explains_nothing_fails_the_check() {
    // One frame more into MCR-2 than MCR-1 sent: unexplained at that link, and not ok.
    let tmp = edited("chain.json", |d| {
        let rx = &mut d["ns"][2]["after"]["links"]["in0"]["rx_packets"];
        *rx = (rx.as_u64().unwrap() + 1).into();
    });
    let doc: serde_json::Value =
        serde_json::from_str(&stdout_of(conservation(tmp.path()))).unwrap();
    assert_eq!(doc["ok"], false);
    let link = doc["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stage"].as_str().unwrap().starts_with("link plan-r1 ->"))
        .unwrap();
    assert_eq!(link["unexplained"], -1, "{link:#}");
}

#[test]
fn a_host_snapshot_with_a_bad_line_is_refused_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let before = tmp.path().join("host-before.txt");
    std::fs::write(&before, "uptime 1.00\nstat 1 2 x\n").unwrap();
    let out = run(&[
        "host-cpu".as_ref(),
        "--before".as_ref(),
        before.as_os_str(),
        "--after".as_ref(),
        raw("mcrd").join("host-after.txt").as_os_str(),
        "--root".as_ref(),
        ROOT.as_ref(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("host-before.txt: field `line 2`"), "{err}");
}

/// Issue 22: `pipeline_veth.sh --ipv6 --hops 1 --relay mcrd --packets 20000 --pps 20000`
/// (`fixtures/pipeline-raw/mcrd-ipv6`): a 1.1 chain whose snapshots carry the IPv6 UDP MIB and
/// each interface's ICMPv6 messages. Its conservation document says the family, counts the
/// ICMPv6 frames per stage (none crossed in this window: the harness waits for the MLD reports
/// of the set-up to end) and balances.
#[test]
fn an_ipv6_run_is_conserved_and_says_its_family() {
    let dir = raw("mcrd-ipv6");
    let text = stdout_of(conservation(&dir));
    assert_eq!(
        text,
        std::fs::read_to_string(dir.join("conservation.json")).unwrap()
    );
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(doc["ok"], true, "{doc:#}");
    assert_eq!(doc["family"], "ipv6");
    assert_eq!(doc["minor_version"], 1);
    // generator, 2 links, 1 relay, receiver; each with its ICMPv6 frames
    let stages = doc["stages"].as_array().unwrap();
    assert_eq!(stages.len(), 5);
    for s in stages {
        assert_eq!(s["icmp6"]["in_frames"], 0, "{s:#}");
        assert_eq!(s["icmp6"]["out_frames"], 0, "{s:#}");
    }
    // An IPv4 run's document stays 1.0, without the new fields.
    let v4: serde_json::Value =
        serde_json::from_str(&stdout_of(conservation(&raw("mcrd")))).unwrap();
    assert!(v4.get("family").is_none() && v4.get("minor_version").is_none());
    assert!(v4["stages"][0].get("icmp6").is_none());
}

/// MLD reports sent during the window (4 out of the generator's out0, 2 out of the relay's)
/// enter the veth counters beside the data: conservation takes them out where the ICMPv6
/// counters say they were sent, and without those counters the same frames are unexplained.
#[test]
fn icmp6_frames_in_the_window_are_counted_not_unexplained() {
    fn add(v: &mut serde_json::Value, n: u64) {
        *v = (v.as_u64().unwrap() + n).into();
    }
    let frames = |d: &mut serde_json::Value| {
        add(&mut d["ns"][0]["after"]["links"]["out0"]["tx_packets"], 4);
        add(&mut d["ns"][1]["after"]["links"]["in0"]["rx_packets"], 4);
        add(&mut d["ns"][1]["after"]["links"]["out0"]["tx_packets"], 2);
        add(&mut d["ns"][2]["after"]["links"]["in0"]["rx_packets"], 2);
    };
    let tmp = edited_in("mcrd-ipv6", "chain.json", |d| {
        frames(d);
        add(&mut d["ns"][0]["after"]["icmp6"]["out0"]["out_msgs"], 4);
        add(&mut d["ns"][1]["after"]["icmp6"]["out0"]["out_msgs"], 2);
    });
    let doc: serde_json::Value =
        serde_json::from_str(&stdout_of(conservation(tmp.path()))).unwrap();
    assert_eq!(doc["ok"], true, "{doc:#}");
    let stage = |name: &str| {
        doc["stages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["stage"].as_str().unwrap().starts_with(name))
            .unwrap()
            .clone()
    };
    let gen = stage("generator");
    assert_eq!(
        (gen["in"].clone(), gen["out"].clone()),
        (20003.into(), 20003.into())
    );
    assert_eq!(gen["icmp6"]["out_frames"], 4);
    let relay = stage("relay pl6-r1");
    assert_eq!(
        relay["icmp6"],
        serde_json::json!({"in_frames": 4, "out_frames": 2})
    );
    assert_eq!(relay["unexplained"], 0);
    assert_eq!(stage("receiver")["icmp6"]["in_frames"], 2);

    let tmp = edited_in("mcrd-ipv6", "chain.json", frames);
    let doc: serde_json::Value =
        serde_json::from_str(&stdout_of(conservation(tmp.path()))).unwrap();
    assert_eq!(doc["ok"], false, "{doc:#}");
}

/// An IPv6 run's UDP counters are the IPv6 MIB's: a snapshot without them is refused naming
/// `udp6`, and a socat hop's `rx` leaves out the ICMPv6 frames that came into in0.
#[test]
fn an_ipv6_run_reads_the_ipv6_udp_mib() {
    let tmp = edited_in("mcrd-ipv6", "chain.json", |d| {
        d["ns"][2]["before"]["udp6"]
            .as_object_mut()
            .unwrap()
            .remove("InErrors");
    });
    refused(
        tmp.path(),
        &["chain.json", "field `ns[2].before.udp6.InErrors`"],
    );
    let tmp = edited_in("mcrd-ipv6", "chain.json", |d| {
        d["relay"] = "socat".into();
        d["ns"][1]["stats"] = serde_json::Value::Null;
        let add = |v: &mut serde_json::Value, n: u64| *v = (v.as_u64().unwrap() + n).into();
        add(&mut d["ns"][0]["after"]["links"]["out0"]["tx_packets"], 3);
        add(&mut d["ns"][0]["after"]["icmp6"]["out0"]["out_msgs"], 3);
        add(&mut d["ns"][1]["after"]["links"]["in0"]["rx_packets"], 3);
        add(&mut d["ns"][1]["after"]["udp6"]["InErrors"], 7);
    });
    let out = run(&[
        "hop".as_ref(),
        "--chain".as_ref(),
        tmp.path().join("chain.json").as_os_str(),
        "--hop".as_ref(),
        "1".as_ref(),
    ]);
    // 20003 frames of data came in; 7 of them the socket dropped.
    assert_eq!(stdout_of(out), "rx=19996\nkernel_drops=7\ntx_sent=20003\n");
}
