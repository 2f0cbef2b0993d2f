//! JSON the veth pipeline harness (`scripts/pipeline_veth.sh`) writes next to the tools' own
//! records: kernel counter deltas (`mcr.pipeline.kernel`), its packet-conservation check
//! (`mcr.pipeline.conservation`) and the host CPU the run caused (`mcr.pipeline.host_cpu`).
//! The harness is a shell script, so these types are the contract it is checked against: a
//! missing field or a wrong type is an error naming its path.

use std::path::Path;

use serde::Deserialize;

use super::compat::read_versioned;
use crate::error::Result;
use crate::record::{Conservation, HostCpu, Kernel, Link, NamespaceUdp, RunRecord, Stage};

pub const KERNEL_SCHEMA: &str = "mcr.pipeline.kernel";
pub const CONSERVATION_SCHEMA: &str = "mcr.pipeline.conservation";
pub const HOST_CPU_SCHEMA: &str = "mcr.pipeline.host_cpu";
/// The version of all three documents this analyzer reads.
pub const PIPELINE_VERSION: u32 = 1;
/// Their newest minor version this analyzer knows: the fields of a newer one are skipped and
/// named in the record's sources (see `compat.rs`).
pub const PIPELINE_MINOR_VERSION: u32 = 0;
/// `mcr.pipeline.conservation` 1.1 added `family` and the stages' `icmp6` (IPv6 runs); the
/// record keeps neither (they stay in the harness's file), as it keeps no stage detail.
pub const CONSERVATION_MINOR_VERSION: u32 = crate::pipeline::conservation::MINOR_VERSION;

/// `mcr.pipeline.kernel` v1: counter deltas over the run; absent counters were not read.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KernelDoc {
    #[allow(dead_code)]
    schema: String,
    #[allow(dead_code)]
    version: u32,
    links: Vec<Link>,
    namespaces: Vec<NamespaceUdp>,
    #[serde(default)]
    softnet_dropped: Option<u64>,
}

/// Reads a kernel counter document into `rec.kernel` (replacing what an earlier one gave);
/// returns the fields of a newer minor version it skipped.
pub fn kernel(path: &Path, doc: &serde_json::Value, rec: &mut RunRecord) -> Result<Vec<String>> {
    let (k, skipped): (KernelDoc, _) = read_versioned(
        path,
        doc,
        KERNEL_SCHEMA,
        PIPELINE_VERSION,
        PIPELINE_MINOR_VERSION,
    )?;
    rec.kernel = Kernel {
        links: k.links,
        namespaces: k.namespaces,
        softnet_dropped: k.softnet_dropped,
    };
    Ok(skipped)
}

/// The part of `mcr.pipeline.conservation` v1 the record keeps; the rest (per-stage detail,
/// frame totals) stays in the harness's file.
#[derive(Debug, Deserialize)]
struct ConservationDoc {
    ok: bool,
    stages: Vec<StageDoc>,
}

#[derive(Debug, Deserialize)]
struct StageDoc {
    stage: String,
    #[serde(rename = "in")]
    input: u64,
    dropped: u64,
    out: u64,
    unexplained: i64,
}

/// Reads the harness's conservation check into `rec.conservation`; returns the fields of a
/// newer minor version it skipped.
pub fn conservation(
    path: &Path,
    doc: &serde_json::Value,
    rec: &mut RunRecord,
) -> Result<Vec<String>> {
    let (c, skipped): (ConservationDoc, _) = read_versioned(
        path,
        doc,
        CONSERVATION_SCHEMA,
        PIPELINE_VERSION,
        CONSERVATION_MINOR_VERSION,
    )?;
    let stages: Vec<Stage> = c
        .stages
        .into_iter()
        .map(|s| Stage {
            name: s.stage,
            input: s.input,
            dropped: s.dropped,
            out: s.out,
            unexplained: s.unexplained,
        })
        .collect();
    let conservation = Conservation { ok: c.ok, stages };
    if let Some((i, wrong)) = conservation.unbalanced_stage() {
        return Err(crate::Error::field(
            path,
            format!("stages[{i}].unexplained"),
            wrong,
        ));
    }
    rec.conservation = Some(conservation);
    Ok(skipped)
}

/// The part of `mcr.pipeline.host_cpu` v1 the record keeps.
#[derive(Debug, Deserialize)]
struct HostCpuDoc {
    /// Host busy time less other processes': the CPU the run caused.
    run_ns: u64,
    window_ns: u64,
    other_processes_ns: u64,
    method: String,
}

/// Reads the harness's host CPU attribution into `rec.host_cpu`; returns the fields of a newer
/// minor version it skipped.
pub fn host_cpu(path: &Path, doc: &serde_json::Value, rec: &mut RunRecord) -> Result<Vec<String>> {
    let (h, skipped): (HostCpuDoc, _) = read_versioned(
        path,
        doc,
        HOST_CPU_SCHEMA,
        PIPELINE_VERSION,
        PIPELINE_MINOR_VERSION,
    )?;
    if h.window_ns == 0 {
        return Err(crate::Error::field(
            path,
            "window_ns",
            "must be greater than 0",
        ));
    }
    let out = rec.host_cpu.get_or_insert_with(HostCpu::default);
    out.busy_ns = Some(h.run_ns);
    out.window_ns = Some(h.window_ns);
    out.other_processes_ns = Some(h.other_processes_ns);
    out.method = Some(h.method);
    Ok(skipped)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(
        f: fn(&Path, &serde_json::Value, &mut RunRecord) -> Result<Vec<String>>,
        text: &str,
    ) -> Result<RunRecord> {
        let doc: serde_json::Value = serde_json::from_str(text).unwrap();
        let mut rec = RunRecord::new("x");
        f(Path::new("k.json"), &doc, &mut rec).map(|_| rec)
    }

    const KERNEL: &str = r#"{"schema":"mcr.pipeline.kernel","version":1,
        "links":[{"from":"p-gen:out0","to":"p-r1:in0","tx_packets":10,"tx_dropped":0,"rx_packets":8,"rx_dropped":2},
                 {"from":"p-r1:out0","to":"p-recv:in0","tx_packets":8}],
        "namespaces":[{"name":"p-r1","role":"hop","in_errors":1,"rcvbuf_errors":1,"sndbuf_errors":0}],
        "softnet_dropped":5}"#;

    #[test]
    fn reads_kernel_counters_and_keeps_absent_ones_absent() {
        let rec = run(kernel, KERNEL).unwrap();
        let k = &rec.kernel;
        assert_eq!(k.links.len(), 2);
        assert_eq!(k.links[0].dropped(), Some(2));
        assert_eq!(k.links[1].rx_packets, None, "not reported stays unknown");
        assert_eq!(k.links[1].dropped(), None);
        assert_eq!(k.namespaces[0].in_errors, Some(1));
        assert_eq!(k.softnet_dropped, Some(5));
    }

    #[test]
    fn kernel_counter_of_the_wrong_type_is_named() {
        let bad = KERNEL.replace(r#""rx_dropped":2"#, r#""rx_dropped":"two""#);
        let e = run(kernel, &bad).unwrap_err().to_string();
        assert!(
            e.contains("k.json") && e.contains("links[0].rx_dropped"),
            "{e}"
        );
        let neg = KERNEL.replace(r#""softnet_dropped":5"#, r#""softnet_dropped":-5"#);
        let e = run(kernel, &neg).unwrap_err().to_string();
        assert!(e.contains("softnet_dropped"), "{e}");
    }

    #[test]
    fn kernel_document_without_links_or_with_a_typo_is_refused() {
        let e = run(
            kernel,
            r#"{"schema":"mcr.pipeline.kernel","version":1,"namespaces":[]}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("links"), "{e}");
        let typo = KERNEL.replace("tx_packets\":10", "tx_pakets\":10");
        let e = run(kernel, &typo).unwrap_err().to_string();
        assert!(e.contains("links[0]") && e.contains("tx_pakets"), "{e}");
        let v2 = KERNEL.replace(r#""version":1"#, r#""version":2"#);
        let e = run(kernel, &v2).unwrap_err().to_string();
        assert!(e.contains("field `version`"), "{e}");
    }

    const CONS: &str = r#"{"schema":"mcr.pipeline.conservation","version":1,"relay":"mcrd",
        "frames":{"sent":13},"stages":[
          {"stage":"generator","in":13,"dropped":0,"out":13,"unexplained":0,"detail":{}},
          {"stage":"link a -> b","in":13,"dropped":2,"out":10,"unexplained":1}],
        "ok":false}"#;

    #[test]
    fn reads_conservation_stages_and_verdict() {
        let rec = run(conservation, CONS).unwrap();
        let c = rec.conservation.unwrap();
        assert!(!c.ok);
        assert_eq!(c.stages[1].name, "link a -> b");
        assert_eq!((c.stages[1].input, c.stages[1].unexplained), (13, 1));
    }

    #[test]
    fn conservation_with_bad_arithmetic_or_types_is_named() {
        let bad = CONS.replace(r#""unexplained":1"#, r#""unexplained":0"#);
        let e = run(conservation, &bad).unwrap_err().to_string();
        assert!(e.contains("stages[1].unexplained"), "{e}");
        let e = run(conservation, &CONS.replace(r#""ok":false"#, r#""ok":"no""#))
            .unwrap_err()
            .to_string();
        assert!(e.contains("field `ok`"), "{e}");
        let e = run(conservation, &CONS.replace(r#""ok":false"#, r#""x":1"#))
            .unwrap_err()
            .to_string();
        assert!(e.contains("ok"), "{e}");
    }

    const HOST: &str = r#"{"schema":"mcr.pipeline.host_cpu","version":1,"window_ns":4000000000,
        "host_busy_ns":3000000000,"other_processes_ns":1000000000,"run_ns":2000000000,
        "method":"host busy minus other processes","other_processes":[]}"#;

    #[test]
    fn reads_host_cpu_details() {
        let h = run(host_cpu, HOST).unwrap().host_cpu.unwrap();
        assert_eq!(h.busy_ns, Some(2_000_000_000));
        assert_eq!(h.window_ns, Some(4_000_000_000));
        assert_eq!(h.other_processes_ns, Some(1_000_000_000));
        assert_eq!(h.method.as_deref(), Some("host busy minus other processes"));
        assert_eq!(h.user_ns, None, "tick-sampled parts are not taken");
    }

    #[test]
    fn host_cpu_with_missing_or_bad_fields_is_named() {
        let e = run(
            host_cpu,
            &HOST.replace(r#""method":"host busy minus other processes","#, ""),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("method"), "{e}");
        let e = run(
            host_cpu,
            &HOST.replace("\"window_ns\":4000000000", "\"window_ns\":0"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("field `window_ns`"), "{e}");
        let e = run(
            host_cpu,
            &HOST.replace(
                "\"other_processes_ns\":1000000000",
                "\"other_processes_ns\":-1",
            ),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("other_processes_ns"), "{e}");
    }

    /// Issue 19: every record kind the analyzer reads takes `minor_version`; a newer minor
    /// version's fields are skipped and named, a known one's unknown fields are errors.
    #[test]
    fn harness_documents_of_a_newer_minor_version_are_read() {
        let newer = KERNEL.replace(
            r#""version":1,"#,
            r#""version":1,"minor_version":2,"backlog":{"max":1},"#,
        );
        let doc: serde_json::Value = serde_json::from_str(&newer).unwrap();
        let mut rec = RunRecord::new("x");
        let skipped = kernel(Path::new("k.json"), &doc, &mut rec).unwrap();
        assert_eq!(skipped, ["backlog"]);
        assert_eq!(rec.kernel.softnet_dropped, Some(5));
        let known = newer.replace(r#""minor_version":2"#, r#""minor_version":0"#);
        let e = run(kernel, &known).unwrap_err().to_string();
        assert!(
            e.contains("`backlog`") && e.contains("unknown field"),
            "{e}"
        );
        let plain = KERNEL.replace(r#""version":1,"#, r#""version":1,"minor_version":0,"#);
        assert!(run(kernel, &plain).is_ok());
    }
}
