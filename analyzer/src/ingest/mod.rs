//! `analyzer ingest`: builds a run record from what the tools of a run wrote.
//!
//! Each input is a file with a role (generator, a named hop, receiver, host). Its format is
//! recognised from its content: JSON with a `schema` field (our tools), `perf stat -x,` CSV, or
//! plain text counter lines. Several files may fill one role (a hop's stats JSON plus its
//! `perf stat` CSV); later files fill in or override earlier ones. Values from the command line
//! (`--set`) fill the environment and configuration.

mod apply;
pub mod compat;
pub mod host;
pub mod json;
pub mod perf_csv;
pub mod pipeline;
pub mod text;

use std::path::{Path, PathBuf};

use relay::stats::report::{StatsReport, STATS_MINOR_VERSION, STATS_SCHEMA, STATS_VERSION};
use trafficgen::record::{
    RecvRecord, SendRecord, SweepRecord, RECORD_MINOR_VERSION, RECORD_VERSION, RECV_SCHEMA,
    SEND_SCHEMA, SWEEP_SCHEMA,
};

use crate::error::{read_nonempty, Error, Result};
use crate::record::{Generator, Hop, HostCpu, Receiver, RunRecord, Setting, Source};

/// The part of a run an input file describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    Generator,
    /// A relay hop, by name; hops are ordered by first appearance.
    Hop(String),
    Receiver,
    /// The whole host's CPU time.
    Host,
    /// Kernel counters outside the relays (`mcr.pipeline.kernel` JSON).
    Kernel,
    /// The harness's packet-conservation check (`mcr.pipeline.conservation` JSON).
    Conservation,
}

impl Role {
    fn label(&self) -> String {
        match self {
            Role::Generator => "generator".into(),
            Role::Hop(n) => format!("hop:{n}"),
            Role::Receiver => "receiver".into(),
            Role::Host => "host".into(),
            Role::Kernel => "kernel".into(),
            Role::Conservation => "conservation".into(),
        }
    }
}

/// One input file and its role.
#[derive(Debug, Clone)]
pub struct Input {
    pub role: Role,
    pub path: PathBuf,
}

/// Everything `ingest` needs.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub name: String,
    pub date: Option<String>,
    pub description: Option<String>,
    pub inputs: Vec<Input>,
    /// `KEY=VALUE` settings; see [`apply_setting`].
    pub settings: Vec<String>,
    /// Read kernel, CPU, sysctls and git revision of this machine.
    pub env_from_host: bool,
}

/// Builds the record.
pub fn ingest(opts: &Options) -> Result<RunRecord> {
    if opts.inputs.is_empty() {
        return Err(Error::Usage(
            "nothing to ingest: give at least one of --generator, --hop NAME=FILE, --receiver, --host".into(),
        ));
    }
    let mut rec = RunRecord::new(opts.name.clone());
    rec.date = opts.date.clone();
    rec.description = opts.description.clone();
    if opts.env_from_host {
        rec.environment = host::environment();
        rec.sources.push(Source {
            role: "environment".into(),
            format: "host".into(),
            path: "/proc, git rev-parse HEAD".into(),
            ignored: Vec::new(),
        });
    }
    for input in &opts.inputs {
        let (format, ignored) = read_input(&mut rec, input)?;
        rec.sources.push(Source {
            role: input.role.label(),
            format,
            path: input.path.display().to_string(),
            ignored,
        });
    }
    for s in &opts.settings {
        apply_setting(&mut rec, s)?;
        rec.sources.push(Source {
            role: "setting".into(),
            format: "set".into(),
            path: format!("--set {s}"),
            ignored: Vec::new(),
        });
    }
    if rec.duration_ns.is_none() {
        if let Some(ns) = rec.generator.as_ref().and_then(|g| g.elapsed_ns) {
            // The seed's "calculated rates" divide every hop's counters by the generator's
            // elapsed time; we do the same unless a duration is given or a hop has its own.
            rec.duration_ns = Some(ns);
            rec.sources.push(Source {
                role: "duration".into(),
                format: "derived".into(),
                path: "generator.elapsed_ns".into(),
                ignored: Vec::new(),
            });
        }
    }
    rec.validate(Path::new("(ingested record)"))?;
    Ok(rec)
}

fn hop_mut<'a>(rec: &'a mut RunRecord, name: &str) -> &'a mut Hop {
    if let Some(i) = rec.hops.iter().position(|h| h.name == name) {
        return &mut rec.hops[i];
    }
    rec.hops.push(Hop {
        name: name.to_string(),
        ..Default::default()
    });
    rec.hops.last_mut().expect("just pushed")
}

/// Reads one input into `rec` and returns the name of its format and the fields it skipped
/// (those of a newer minor version, see [`compat`]).
fn read_input(rec: &mut RunRecord, input: &Input) -> Result<(String, Vec<String>)> {
    let path = input.path.as_path();
    let text = read_nonempty(path)?;
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') {
        let doc: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| Error::format(path, format!("not valid JSON: {e}")))?;
        let schema = json::schema_of(&doc)
            .ok_or_else(|| Error::field(path, "schema", "missing: not a document of our tools"))?
            .to_string();
        let mut version = doc
            .get("version")
            .map(|v| v.to_string())
            .unwrap_or_default();
        let mut ignored = match schema.as_str() {
            STATS_SCHEMA => compat::ignored_fields::<StatsReport>(
                path,
                &text,
                &doc,
                STATS_SCHEMA,
                STATS_VERSION,
                STATS_MINOR_VERSION,
            )?,
            SEND_SCHEMA => compat::ignored_fields::<SendRecord>(
                path,
                &text,
                &doc,
                SEND_SCHEMA,
                RECORD_VERSION,
                RECORD_MINOR_VERSION,
            )?,
            RECV_SCHEMA => compat::ignored_fields::<RecvRecord>(
                path,
                &text,
                &doc,
                RECV_SCHEMA,
                RECORD_VERSION,
                RECORD_MINOR_VERSION,
            )?,
            SWEEP_SCHEMA => compat::ignored_fields::<SweepRecord>(
                path,
                &text,
                &doc,
                SWEEP_SCHEMA,
                RECORD_VERSION,
                RECORD_MINOR_VERSION,
            )?,
            _ => Vec::new(),
        };
        match compat::minor_version(path, &doc)? {
            0 => {}
            minor => version = format!("{version}.{minor}"),
        }
        match (&input.role, schema.as_str()) {
            (Role::Hop(name), relay::stats::report::STATS_SCHEMA) => {
                json::relay_stats(path, &text, &doc, hop_mut(rec, name))?
            }
            (Role::Generator, trafficgen::record::SEND_SCHEMA) => {
                json::trafficgen_send(path, &text, &doc, rec)?
            }
            (Role::Generator, trafficgen::record::SWEEP_SCHEMA) => {
                json::trafficgen_sweep(path, &text, &doc, rec)?
            }
            (Role::Receiver, trafficgen::record::RECV_SCHEMA) => {
                json::trafficgen_recv(path, &text, &doc, rec)?
            }
            (Role::Kernel, pipeline::KERNEL_SCHEMA) => ignored = pipeline::kernel(path, &doc, rec)?,
            (Role::Conservation, pipeline::CONSERVATION_SCHEMA) => {
                ignored = pipeline::conservation(path, &doc, rec)?
            }
            (Role::Host, pipeline::HOST_CPU_SCHEMA) => {
                ignored = pipeline::host_cpu(path, &doc, rec)?
            }
            (role, _) => {
                return Err(Error::field(
                    path,
                    "schema",
                    format!("\"{schema}\" cannot fill the {} role", role.label()),
                ))
            }
        }
        return Ok((format!("{schema}/{version}"), ignored));
    }
    if matches!(input.role, Role::Kernel | Role::Conservation) {
        return Err(Error::format(
            path,
            format!(
                "the {} role takes a JSON document of the pipeline harness",
                input.role.label()
            ),
        ));
    }
    if perf_csv::looks_like(&text) {
        let perf = perf_csv::parse(path, &text)?;
        match &input.role {
            Role::Hop(name) => hop_mut(rec, name).perf.extend(perf),
            Role::Generator => rec
                .generator
                .get_or_insert_with(Generator::default)
                .perf
                .extend(perf),
            Role::Receiver => rec
                .receiver
                .get_or_insert_with(Receiver::default)
                .perf
                .extend(perf),
            Role::Host => {
                // `perf stat -a` gives the busy time of all CPUs as cpu-clock (or task-clock).
                let busy = perf
                    .get("cpu_clock_ns")
                    .or_else(|| perf.get("task_clock_ns"))
                    .and_then(|m| m.count())
                    .ok_or_else(|| {
                        Error::field(
                            path,
                            "cpu-clock",
                            "a host perf file needs cpu-clock or task-clock",
                        )
                    })?;
                rec.host_cpu.get_or_insert_with(HostCpu::default).busy_ns = Some(busy);
            }
            Role::Kernel | Role::Conservation => unreachable!("refused above"),
        }
        return Ok(("perf-csv".into(), Vec::new()));
    }
    let entries = text::parse(&text);
    match &input.role {
        Role::Hop(name) => apply::hop(path, &entries, hop_mut(rec, name))?,
        Role::Generator => {
            let g = rec.generator.get_or_insert_with(Generator::default);
            apply::generator(path, &entries, g, &mut rec.configuration.generator)?
        }
        Role::Receiver => apply::receiver(
            path,
            &entries,
            rec.receiver.get_or_insert_with(Receiver::default),
        )?,
        Role::Host => apply::host(
            path,
            &entries,
            rec.host_cpu.get_or_insert_with(HostCpu::default),
        )?,
        Role::Kernel | Role::Conservation => unreachable!("refused above"),
    }
    Ok(("text".into(), Vec::new()))
}

/// Applies one `KEY=VALUE` from the command line. Keys:
/// `env.kernel`, `env.cpu_model`, `env.cores`, `env.hostname`, `env.git_revision`,
/// `env.sysctl.NAME`, `env.NAME` (other facts), `config.generator.NAME`, `config.relay.NAME`,
/// `config.harness.NAME`, `hop.HOP.relay` (implementation), `hop.HOP.tunable.NAME`,
/// `duration` (with a time unit: `14.43s`), `generator.tool`, `receiver.tool`.
/// Values are numbers or booleans when they parse as such, else text.
pub fn apply_setting(rec: &mut RunRecord, setting: &str) -> Result<()> {
    let bad = |msg: String| Error::Usage(format!("--set {setting}: {msg}"));
    let (key, value) = setting
        .split_once('=')
        .ok_or_else(|| bad("expected KEY=VALUE".into()))?;
    let (key, value) = (key.trim(), value.trim());
    let typed = || -> Setting {
        serde_json::from_str::<Setting>(value)
            .ok()
            .filter(|v| v.is_number() || v.is_boolean())
            .unwrap_or_else(|| Setting::from(value))
    };
    let env = &mut rec.environment;
    match key.split('.').collect::<Vec<_>>().as_slice() {
        ["env", "kernel"] => env.kernel = Some(value.into()),
        ["env", "cpu_model"] => env.cpu_model = Some(value.into()),
        ["env", "hostname"] => env.hostname = Some(value.into()),
        ["env", "git_revision"] => env.git_revision = Some(value.into()),
        ["env", "cores"] => {
            env.cores = Some(
                value
                    .parse()
                    .map_err(|_| bad(format!("\"{value}\" is not a CPU count")))?,
            )
        }
        ["env", "sysctl", rest @ ..] if !rest.is_empty() => {
            env.sysctls.insert(rest.join("."), value.into());
        }
        ["env", rest @ ..] if !rest.is_empty() => {
            env.other.insert(rest.join("."), value.into());
        }
        ["config", "generator", rest @ ..] if !rest.is_empty() => {
            rec.configuration.generator.insert(rest.join("."), typed());
        }
        ["config", "relay", rest @ ..] if !rest.is_empty() => {
            rec.configuration.relay.insert(rest.join("."), typed());
        }
        ["config", "harness", rest @ ..] if !rest.is_empty() => {
            rec.configuration.harness.insert(rest.join("."), typed());
        }
        ["hop", name, "relay"] => hop_mut(rec, name).relay = Some(value.into()),
        ["hop", name, "tunable", rest @ ..] if !rest.is_empty() => {
            let v = typed();
            hop_mut(rec, name).tunables.insert(rest.join("."), v);
        }
        ["duration"] => {
            let ns = text::number(value)
                .and_then(|n| n.as_ns())
                .filter(|&n| n > 0)
                .ok_or_else(|| {
                    bad(format!(
                        "\"{value}\" is not a duration with a unit (14.43s)"
                    ))
                })?;
            rec.duration_ns = Some(ns);
        }
        ["generator", "tool"] => {
            rec.generator.get_or_insert_with(Generator::default).tool = Some(value.into())
        }
        ["receiver", "tool"] => {
            rec.receiver.get_or_insert_with(Receiver::default).tool = Some(value.into())
        }
        _ => {
            return Err(bad(format!(
                "unknown key \"{key}\" (see `analyzer ingest --help`)"
            )))
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    #[test]
    fn builds_a_record_from_seed_style_text() {
        let g = file("Total packets sent: 10,000,000\nElapsed time: 14.43s\n");
        let h = file("recv=9,940,000 egr_sent=1,405,182 buf_exhaust=8,534,699\n");
        let p = file("1000.0,msec,task-clock,1,100.00,,\n<not supported>,,cycles,0,100.00,,\n");
        let opts = Options {
            name: "after".into(),
            inputs: vec![
                Input {
                    role: Role::Generator,
                    path: g.path().into(),
                },
                Input {
                    role: Role::Hop("MCR-1".into()),
                    path: h.path().into(),
                },
                Input {
                    role: Role::Hop("MCR-1".into()),
                    path: p.path().into(),
                },
            ],
            settings: vec![
                "config.relay.queue_depth=64".into(),
                "env.sysctl.net.core.wmem_max=212992".into(),
            ],
            ..Default::default()
        };
        let rec = ingest(&opts).unwrap();
        assert_eq!(rec.hops.len(), 1, "two files for one hop merge");
        assert_eq!(rec.hops[0].counters.rx, Some(9_940_000));
        assert_eq!(
            rec.hops[0].perf["task_clock_ns"],
            crate::record::Measured::Count(1_000_000_000)
        );
        assert_eq!(
            rec.hops[0].perf["cycles"],
            crate::record::Measured::Unavailable
        );
        assert_eq!(rec.duration_ns, Some(14_430_000_000));
        assert_eq!(rec.configuration.relay["queue_depth"], Setting::from(64));
        assert_eq!(rec.environment.sysctls["net.core.wmem_max"], "212992");
        assert_eq!(rec.sources.len(), 6);
    }

    fn hop_input(doc: &serde_json::Value) -> (tempfile::NamedTempFile, Options) {
        let f = file(&doc.to_string());
        let opts = Options {
            name: "x".into(),
            inputs: vec![Input {
                role: Role::Hop("MCR-1".into()),
                path: f.path().into(),
            }],
            ..Default::default()
        };
        (f, opts)
    }

    #[test]
    fn stats_of_a_newer_minor_version_load_and_the_sources_name_what_was_skipped() {
        let mut doc = compat::sample_stats();
        let newer = STATS_MINOR_VERSION + 1;
        doc["minor_version"] = newer.into();
        doc["totals"]["rx_later"] = 5.into();
        let (_f, opts) = hop_input(&doc);
        let rec = ingest(&opts).unwrap();
        assert_eq!(rec.hops[0].counters.rx, Some(10));
        assert_eq!(rec.sources[0].format, format!("mcr.relay.stats/1.{newer}"));
        assert_eq!(rec.sources[0].ignored, ["totals.rx_later"]);
        let (_f, opts) = hop_input(&compat::sample_stats());
        let rec = ingest(&opts).unwrap();
        assert_eq!(rec.sources[0].format, "mcr.relay.stats/1");
        assert!(rec.sources[0].ignored.is_empty());
    }

    #[test]
    fn stats_of_a_newer_major_version_are_refused_naming_both_versions() {
        let mut doc = compat::sample_stats();
        doc["version"] = 2.into();
        let (f, opts) = hop_input(&doc);
        let e = ingest(&opts).unwrap_err().to_string();
        assert!(e.contains(&f.path().display().to_string()), "{e}");
        assert!(
            e.contains("field `version`: mcr.relay.stats version 2 is newer than this analyzer reads (version 1)"),
            "{e}"
        );
    }

    #[test]
    fn json_of_the_wrong_kind_for_a_role_is_refused() {
        let f = file(r#"{"schema":"mcr.relay.stats","version":1}"#);
        let opts = Options {
            name: "x".into(),
            inputs: vec![Input {
                role: Role::Generator,
                path: f.path().into(),
            }],
            ..Default::default()
        };
        let e = ingest(&opts).unwrap_err().to_string();
        assert!(
            e.contains("field `schema`") && e.contains("generator"),
            "{e}"
        );
    }

    #[test]
    fn empty_input_file_is_named() {
        let f = file("");
        let opts = Options {
            name: "x".into(),
            inputs: vec![Input {
                role: Role::Hop("a".into()),
                path: f.path().into(),
            }],
            ..Default::default()
        };
        let e = ingest(&opts).unwrap_err().to_string();
        assert!(
            e.contains("empty") && e.contains(&f.path().display().to_string()),
            "{e}"
        );
    }

    #[test]
    fn unknown_setting_is_a_usage_error() {
        let mut rec = RunRecord::new("x");
        assert!(matches!(
            apply_setting(&mut rec, "colour=blue"),
            Err(Error::Usage(_))
        ));
        assert!(apply_setting(&mut rec, "duration=14").is_err());
        apply_setting(&mut rec, "duration=14.43s").unwrap();
        assert_eq!(rec.duration_ns, Some(14_430_000_000));
    }
}
