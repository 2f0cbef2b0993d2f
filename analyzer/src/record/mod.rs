//! The run record: one JSON document that holds a whole benchmark run.
//!
//! A record is the analyzer's input contract (documented field by field in `analyzer/README.md`).
//! Its rule is that an unknown value stays unknown: every counter is optional and a counter the
//! source did not report is *absent*, never 0; perf-style counters additionally distinguish
//! "unavailable" (asked for, the machine could not count it) from absent (not collected).
//! Where an old log gives only a rate or a percentage, the record keeps that under `reported`
//! and the reports say the number was reported rather than computed from counters.
//!
//! The types are in `schema.rs`, reading and writing in `io.rs`, the checks serde cannot make in
//! `validate.rs`; the sections with rules of their own (`kernel.rs`, `conservation.rs`,
//! `streams.rs`, `measured.rs`) next to them.

mod conservation;
mod io;
mod kernel;
mod measured;
mod schema;
mod streams;
mod validate;

pub use conservation::{Conservation, Stage};
pub use io::check_schema;
pub use kernel::{Kernel, Link, NamespaceUdp};
pub use measured::{Measured, UNAVAILABLE};
pub use schema::*;
pub use streams::{MonitoredFlow, ReceivedStream, RtpLoss, StreamKind, TsLoss};
pub use validate::MAX_COUNT;

/// Value of the `schema` field of a run record.
pub const RUN_SCHEMA: &str = "mcr.analyzer.run";
/// Value of the `version` field this analyzer writes and reads.
pub const RUN_VERSION: u32 = 1;
/// The newest `minor_version` of the run record this analyzer knows (written as absent = 0).
/// A record of a newer minor version is read without the fields added since, which are listed
/// in [`RunRecord::skipped`].
pub const RUN_MINOR_VERSION: u32 = 0;

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::path::Path;

    fn write(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    #[test]
    fn round_trip_keeps_absent_counters_absent() {
        let mut r = RunRecord::new("x");
        r.hops.push(Hop {
            name: "MCR-1".into(),
            counters: HopCounters {
                rx: Some(10),
                tx_sent: Some(0),
                ..Default::default()
            },
            ..Default::default()
        });
        let f = tempfile::NamedTempFile::new().unwrap();
        r.save(f.path()).unwrap();
        let text = std::fs::read_to_string(f.path()).unwrap();
        assert!(text.contains("\"tx_sent\": 0"));
        assert!(!text.contains("buf_exhaust"), "absent must not become 0");
        assert_eq!(RunRecord::load(f.path()).unwrap(), r);
    }

    #[test]
    fn wrong_version_names_the_field() {
        let f = write(r#"{"schema":"mcr.analyzer.run","version":2,"name":"x"}"#);
        let e = RunRecord::load(f.path()).unwrap_err().to_string();
        assert!(
            e.contains("field `version`") && e.contains("version 2"),
            "{e}"
        );
    }

    #[test]
    fn wrong_schema_names_the_field() {
        let f = write(r#"{"schema":"mcr.relay.stats","version":1,"name":"x"}"#);
        let e = RunRecord::load(f.path()).unwrap_err().to_string();
        assert!(e.contains("field `schema`"), "{e}");
    }

    #[test]
    fn counter_that_is_not_a_number_names_its_path() {
        let f = write(
            r#"{"schema":"mcr.analyzer.run","version":1,"name":"x",
                "hops":[{"name":"MCR-1","counters":{"rx":"lots"}}]}"#,
        );
        let e = RunRecord::load(f.path()).unwrap_err().to_string();
        assert!(e.contains("hops[0].counters.rx"), "{e}");
        assert!(e.contains(&f.path().display().to_string()), "{e}");
    }

    #[test]
    fn stream_checks_round_trip_and_a_wrapped_count_is_named() {
        let flow = r#"{"rule":"camera","input":"239.1.1.1:5000","outputs":["239.1.1.1:5000"],
            "kind":"mpegts","datagrams":6313,"foreign":0,"gaps":38,"lost":LOST,"repeats":0,
            "dropped":0}"#;
        let stream = r#"{"group":"239.1.1.1:5000","format":"rtp","id":7,"datagrams":6154,
            "rtp":{"lost":47,"duplicates":0,"reordered":0},
            "mpegts":{"continuity_errors":49,"lost_ts_packets":329,"duplicate_ts_packets":0,
                "transport_errors":0}}"#;
        let text = |lost: &str| {
            format!(
                r#"{{"schema":"mcr.analyzer.run","version":1,"name":"x",
                "hops":[{{"name":"MCR-1","streams":[{}]}}],"receiver":{{"streams":[{stream}]}}}}"#,
                flow.replace("LOST", lost)
            )
        };
        let f = write(&text("266"));
        let r = RunRecord::load(f.path()).unwrap();
        assert_eq!(r.hops[0].streams[0].kind, StreamKind::Mpegts);
        let again = write(&r.to_json());
        assert_eq!(RunRecord::load(again.path()).unwrap(), r);
        let f = write(&text(&u64::MAX.to_string()));
        let e = RunRecord::load(f.path()).unwrap_err().to_string();
        assert!(
            e.contains("hops[0].streams[0].lost") && e.contains("wrapped"),
            "{e}"
        );
    }

    #[test]
    fn missing_required_field_is_named() {
        let f = write(
            r#"{"schema":"mcr.analyzer.run","version":1,"name":"x","hops":[{"counters":{}}]}"#,
        );
        let e = RunRecord::load(f.path()).unwrap_err().to_string();
        assert!(e.contains("hops[0]") && e.contains("name"), "{e}");
    }

    #[test]
    fn history_as_json_lines_names_the_bad_line() {
        let good = r#"{"schema":"mcr.analyzer.run","version":1,"name":"a"}"#;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("history.jsonl");
        std::fs::write(&p, format!("{good}\n\n{good}\n")).unwrap();
        assert_eq!(RunRecord::load_many(&p).unwrap().len(), 2);
        std::fs::write(
            &p,
            format!("{good}\n{{\"schema\":\"mcr.analyzer.run\",\"version\":3}}\n"),
        )
        .unwrap();
        let e = RunRecord::load_many(&p).unwrap_err().to_string();
        assert!(
            e.contains("history.jsonl:2") && e.contains("version"),
            "{e}"
        );
        std::fs::write(dir.path().join("b.json"), good).unwrap();
        std::fs::write(dir.path().join("a.json"), good).unwrap();
        let v = RunRecord::load_many(dir.path()).unwrap();
        assert!(v[0].0.ends_with("a.json") && v[1].0.ends_with("b.json"));
    }

    #[test]
    fn empty_file_is_an_error() {
        let f = write("  \n");
        let e = RunRecord::load(f.path()).unwrap_err().to_string();
        assert!(e.contains("empty"), "{e}");
    }

    #[test]
    fn negative_reported_rate_is_rejected() {
        let f = write(
            r#"{"schema":"mcr.analyzer.run","version":1,"name":"x",
                "hops":[{"name":"a","reported":{"rx_pps":-1}}]}"#,
        );
        let e = RunRecord::load(f.path()).unwrap_err().to_string();
        assert!(e.contains("hops[0].reported.rx_pps"), "{e}");
    }

    #[test]
    fn record_without_the_new_sections_still_loads() {
        let f = write(
            r#"{"schema":"mcr.analyzer.run","version":1,"name":"old",
                "host_cpu":{"busy_ns":5},"generator":{"sent":1}}"#,
        );
        let r = RunRecord::load(f.path()).unwrap();
        assert!(r.kernel.is_empty() && r.conservation.is_none());
        assert_eq!(r.host_cpu.unwrap().window_ns, None);
        assert_eq!(r.generator.unwrap().end_markers_sent, None);
    }

    #[test]
    fn kernel_and_conservation_round_trip_with_absent_counters_absent() {
        let f = write(
            r#"{"schema":"mcr.analyzer.run","version":1,"name":"x",
                "kernel":{"links":[{"from":"a:out0","to":"b:in0","tx_packets":5}],
                          "namespaces":[{"name":"b","in_errors":0}],"softnet_dropped":0},
                "conservation":{"ok":true,"stages":[{"name":"s","in":5,"dropped":1,"out":4,"unexplained":0}]},
                "host_cpu":{"busy_ns":1,"window_ns":2,"other_processes_ns":0,"method":"m"}}"#,
        );
        let r = RunRecord::load(f.path()).unwrap();
        assert_eq!(r.kernel.links[0].rx_dropped, None);
        assert_eq!(r.kernel.namespaces[0].in_errors, Some(0));
        let out = tempfile::NamedTempFile::new().unwrap();
        r.save(out.path()).unwrap();
        let text = std::fs::read_to_string(out.path()).unwrap();
        assert!(!text.contains("rx_dropped") && !text.contains("rcvbuf_errors"));
        assert_eq!(RunRecord::load(out.path()).unwrap(), r);
    }

    #[test]
    fn bad_kernel_conservation_or_host_values_name_the_field() {
        let case = |body: &str, field: &str| {
            let f = write(&format!(
                r#"{{"schema":"mcr.analyzer.run","version":1,"name":"x",{body}}}"#
            ));
            let e = RunRecord::load(f.path()).unwrap_err().to_string();
            assert!(
                e.contains(field) && e.contains(&f.path().display().to_string()),
                "{field}: {e}"
            );
        };
        case(
            r#""kernel":{"links":[{"from":"a","to":"b","tx_dropped":"x"}]}"#,
            "kernel.links[0].tx_dropped",
        );
        case(r#""kernel":{"links":[{"from":"a"}]}"#, "kernel.links[0]");
        case(
            r#""kernel":{"links":[{"from":"a","to":" "}]}"#,
            "kernel.links[0]",
        );
        case(
            r#""kernel":{"softnet_dropped":-1}"#,
            "kernel.softnet_dropped",
        );
        case(
            r#""conservation":{"ok":true,"stages":[{"name":"s","in":5,"dropped":1,"out":4,"unexplained":2}]}"#,
            "conservation.stages[0].unexplained",
        );
        case(r#""conservation":{"stages":[]}"#, "conservation");
        case(r#""host_cpu":{"window_ns":0}"#, "host_cpu.window_ns");
        case(r#""host_cpu":{"method":7}"#, "host_cpu.method");
        case(
            r#""receiver":{"end_markers_received":1.5}"#,
            "receiver.end_markers_received",
        );
    }

    /// Issue 19: a run record with `minor_version` was refused ("unknown field
    /// `minor_version`"). A known minor version reads as before (an unknown field is still an
    /// error naming it); a newer one is read without its new fields, which are listed.
    #[test]
    fn a_record_with_a_minor_version_is_read_and_names_what_it_skipped() {
        let p = Path::new("r.json");
        let known = r#"{"schema":"mcr.analyzer.run","version":1,"minor_version":0,"name":"a",
            "hops":[{"name":"MCR-1","counters":{"rx":5}}]}"#;
        let r = RunRecord::parse(p, known).unwrap();
        assert_eq!((r.hops[0].counters.rx, r.skipped.len()), (Some(5), 0));

        let typo = known.replace(r#""rx":5"#, r#""rx":5,"rx_fames":1"#);
        let e = RunRecord::parse(p, &typo).unwrap_err().to_string();
        assert!(e.contains("hops[0].counters.rx_fames"), "{e}");
        assert!(e.contains("unknown field"), "{e}");

        let newer = typo
            .replace(r#""minor_version":0"#, r#""minor_version":3"#)
            .replace(r#""name":"a","#, r#""name":"a","dashboard":{"url":"x"},"#);
        let r = RunRecord::parse(p, &newer).unwrap();
        assert_eq!(r.hops[0].counters.rx, Some(5));
        assert_eq!(r.skipped, ["dashboard", "hops[0].counters.rx_fames"]);
        // Still refused: a wrong type, and a newer major version.
        let wrong = newer.replace(r#""rx":5"#, r#""rx":"five""#);
        let e = RunRecord::parse(p, &wrong).unwrap_err().to_string();
        assert!(e.contains("hops[0].counters.rx"), "{e}");
        let major = newer.replace(r#""version":1"#, r#""version":2"#);
        let e = RunRecord::parse(p, &major).unwrap_err().to_string();
        assert!(e.contains("newer"), "{e}");
        // Written back, the record is a 1.0 record without the skipped fields.
        let again = RunRecord::parse(p, &serde_json::to_string(&r).unwrap()).unwrap();
        assert!(again.skipped.is_empty());
    }

    /// Issue 19: NaN and infinite values are refused with the record and the field, wherever
    /// a record can hold a float (text ingest parses `p_nan` or a 400-digit number to them).
    #[test]
    fn nan_and_infinite_values_are_refused_naming_the_field() {
        let p = Path::new("night.json");
        let mut r = RunRecord::new("n");
        r.receiver = Some(Receiver {
            reported_pps: Some(f64::INFINITY),
            ..Default::default()
        });
        let e = r.validate(p).unwrap_err().to_string();
        assert!(
            e.contains("night.json") && e.contains("receiver.reported_pps"),
            "{e}"
        );
        r.receiver = Some(Receiver {
            latency: vec![Percentile {
                percentile: f64::NAN,
                latency_ns: 5,
            }],
            ..Default::default()
        });
        let e = r.validate(p).unwrap_err().to_string();
        assert!(e.contains("receiver.latency[0].percentile"), "{e}");
        r.receiver = None;
        r.sweep = Some(Sweep {
            max_loss_ratio: Some(f64::NAN),
            ..Default::default()
        });
        let e = r.validate(p).unwrap_err().to_string();
        assert!(e.contains("sweep.max_loss_ratio"), "{e}");
        r.sweep = None;
        r.hops.push(Hop {
            name: "MCR-1".into(),
            ..Default::default()
        });
        r.hops[0].reported.tx_pps = Some(f64::NEG_INFINITY);
        let e = r.validate(p).unwrap_err().to_string();
        assert!(e.contains("hops[0].reported.tx_pps"), "{e}");
    }
}
