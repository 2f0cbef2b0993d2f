//! Reading the TOML file and turning it into a validated [`Config`].

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::Spanned;

use super::place::ConfigText;
use super::raw::{read_raw, RawConfig, RawRule};
use super::spec::{
    Config, ControlConfig, DataplaneConfig, MetricsConfig, OutputSpec, RuleSpec, MAX_DSCP,
};
use super::validate::{validate_rule, OutputField, RuleField};

/// Where `mcrd` and `mcrctl config check` look when no file is named.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/mcr/relay.toml";

/// A configuration the daemon refuses, with where and why.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The cause is in the message (replies and `config check` print only the message) and
    /// therefore not also the `source()`, which a chain printer would repeat.
    #[error("cannot read config file {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    /// A field at a known place in the file is wrong.
    #[error("{file}:{line}:{column}: {field}: {message}")]
    Invalid {
        file: String,
        line: usize,
        column: usize,
        field: String,
        message: String,
    },
    /// The file kept changing while a reload read it.
    #[error(
        "{path} kept changing while it was read; replace it with a rename \
         (`cp new.toml {path}.tmp && mv {path}.tmp {path}`) and reload again"
    )]
    Unsettled { path: PathBuf },
    /// TOML syntax or a type error the TOML reader found.
    #[error("{file}:{line}:{column}: {message}")]
    Syntax {
        file: String,
        line: usize,
        column: usize,
        message: String,
    },
}

/// Reads and validates a config file.
pub fn parse_file(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
        path: path.to_path_buf(),
        error,
    })?;
    parse(&text, &path.display().to_string())
}

/// How long a reload waits for the file to stop changing between two reads.
pub const SETTLE_INTERVAL: std::time::Duration = std::time::Duration::from_millis(25);
/// Most reads a reload makes while waiting for the file to stop changing.
const SETTLE_READS: usize = 40;

/// Like [`parse_file`], but reads the file until two reads [`SETTLE_INTERVAL`] apart agree, so
/// that a reload does not act on a file caught while a writer (`cp`, an editor saving in
/// place) has truncated it and not yet written it whole. A file still changing after about a
/// second is refused.
pub fn parse_file_settled(path: &Path) -> Result<Config, ConfigError> {
    let read = || {
        std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_path_buf(),
            error,
        })
    };
    let mut text = read()?;
    for _ in 0..SETTLE_READS {
        std::thread::sleep(SETTLE_INTERVAL);
        let again = read()?;
        if again == text {
            return parse(&text, &path.display().to_string());
        }
        text = again;
    }
    Err(ConfigError::Unsettled {
        path: path.to_path_buf(),
    })
}

/// Validates config text; `file` names it in errors.
pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
    let ctx = ConfigText::new(text, file);
    let raw = read_raw(text).map_err(|e| {
        let (line, column) = e.span().map(|s| ctx.line_col(s.start)).unwrap_or((1, 1));
        let message = match e.span().and_then(|s| ctx.key_before(s.start)) {
            Some(key) => format!("{key}: {}", e.message()),
            None => e.message().to_string(),
        };
        ConfigError::Syntax {
            file: file.to_string(),
            line,
            column,
            message,
        }
    })?;
    validated(raw, &ctx)
}

/// The configuration `raw` gives, checked; `ctx` places errors in the file.
fn validated(raw: RawConfig, ctx: &ConfigText) -> Result<Config, ConfigError> {
    let dataplane = match raw.dataplane {
        Some(d) => {
            let span = d.span();
            let d = d.into_inner();
            validate_dataplane(&d).map_err(|(field, msg)| {
                ctx.invalid(
                    ctx.key_span("dataplane", field, span.clone()),
                    &format!("dataplane.{field}"),
                    msg,
                )
            })?;
            d
        }
        None => DataplaneConfig::default(),
    };
    let control = match raw.control {
        Some(c) => {
            let span = c.span();
            let c = c.into_inner();
            if parse_mode(&c.mode).is_none() {
                return Err(ctx.invalid(
                    ctx.key_span("control", "mode", span),
                    "control.mode",
                    format!("`{}` is not an octal file mode like \"0660\"", c.mode),
                ));
            }
            c
        }
        None => ControlConfig::default(),
    };
    let metrics = match raw.metrics.and_then(|m| m.listen) {
        Some(l) => {
            let text = l.get_ref();
            match text.parse::<SocketAddr>() {
                Ok(a) if a.port() != 0 => MetricsConfig { listen: Some(a) },
                Ok(_) => {
                    return Err(ctx.invalid(
                        l.span(),
                        "metrics.listen",
                        "port 0 would listen on a random port; name one (e.g. 19108)".into(),
                    ))
                }
                Err(_) => {
                    return Err(ctx.invalid(
                        l.span(),
                        "metrics.listen",
                        format!("`{text}` is not ADDRESS:PORT like \"127.0.0.1:19108\""),
                    ))
                }
            }
        }
        None => MetricsConfig::default(),
    };
    let log_level = match raw.log_level {
        Some(l) => {
            let span = l.span();
            let l = l.into_inner();
            if tracing_subscriber::EnvFilter::try_new(&l).is_err() {
                return Err(ctx.invalid(
                    span,
                    "log_level",
                    format!("`{l}` is not a log filter (try \"info\" or \"debug\")"),
                ));
            }
            Some(l)
        }
        None => None,
    };

    let mut rules = Vec::with_capacity(raw.rule.len());
    let mut names: HashMap<String, usize> = HashMap::new();
    let mut keys: HashMap<(String, IpAddr, u16, Option<IpAddr>), usize> = HashMap::new();
    for (i, raw_rule) in raw.rule.into_iter().enumerate() {
        let span = raw_rule.span();
        let rule = ctx.rule(i, span.clone(), raw_rule.into_inner())?;
        let line = ctx.line_col(span.start).0;
        if let Some(first) = names.insert(rule.name.clone(), line) {
            return Err(ctx.invalid(
                span,
                &format!("rule[{i}].name"),
                format!(
                    "duplicate rule name `{}` (first used on line {first})",
                    rule.name
                ),
            ));
        }
        if let Some(first) = keys.insert(rule.match_key(), line) {
            return Err(ctx.invalid(
                span,
                &format!("rule[{i}]"),
                format!(
                    "duplicate rule: {} on {} is already matched by the rule on line {first}",
                    SocketAddr::new(rule.group, rule.port),
                    rule.input
                ),
            ));
        }
        rules.push(rule);
    }

    Ok(Config {
        dataplane,
        control,
        metrics,
        log_level,
        log_format: raw.log_format,
        rules,
        allow_empty: raw.allow_empty,
    })
}

/// Parses an octal mode string such as `"0660"`.
pub fn parse_mode(mode: &str) -> Option<u32> {
    let digits = mode.strip_prefix("0o").unwrap_or(mode);
    u32::from_str_radix(digits, 8).ok().filter(|m| *m <= 0o777)
}

fn validate_dataplane(d: &DataplaneConfig) -> Result<(), (&'static str, String)> {
    fn range(field: &'static str, v: u32, lo: u32, hi: u32) -> Result<(), (&'static str, String)> {
        if v < lo || v > hi {
            return Err((field, format!("{v} is out of range {lo}..={hi}")));
        }
        Ok(())
    }
    range("workers", d.workers, 1, 256)?;
    if !d.cpus.is_empty() && d.cpus.len() != d.workers as usize {
        return Err((
            "cpus",
            format!(
                "{} CPUs listed for {} workers: list one CPU per worker, or none",
                d.cpus.len(),
                d.workers
            ),
        ));
    }
    // Two workers pinned to one CPU share it and each runs at half speed at best: a list
    // with a CPU twice is a typo, not a plan.
    let mut listed = std::collections::HashSet::new();
    if let Some(cpu) = d.cpus.iter().find(|&&c| !listed.insert(c)) {
        return Err((
            "cpus",
            format!("CPU {cpu} is listed twice: each worker needs a CPU of its own"),
        ));
    }
    // Whether this machine can give the CPUs is `machine::check`'s question, asked at start.
    range("ring_frames", d.ring_frames, 64, 1 << 20)?;
    if d.ring_frame_size != 0 {
        range("ring_frame_size", d.ring_frame_size, 256, 65536)?;
    }
    range("buffer_count", d.buffer_count, 16, 1 << 20)?;
    range("buffer_size", d.buffer_size, 576, 65507)?;
    range("uring_entries", d.uring_entries, 8, 32768)?;
    range("max_in_flight_sends", d.max_in_flight_sends, 1, 32768)?;
    range("batch_size", d.batch_size, 1, 4096)?;
    range(
        "max_gso_segments",
        d.max_gso_segments,
        1,
        crate::sys::UDP_MAX_SEGMENTS,
    )?;
    range("busy_poll_us", d.busy_poll_us, 0, 1_000_000)?;
    range("rx_coalesce_us", d.rx_coalesce_us, 0, 100_000)?;
    range("realtime_priority", d.realtime_priority, 0, 99)?;
    range(
        "fast_path_max_flows",
        d.fast_path_max_flows,
        1,
        super::spec::MAX_FAST_PATH_MAX_FLOWS,
    )?;
    let most = crate::rules::bpf::MAX_KERNEL_FLOWS_PER_INPUT;
    if !(1..=most).contains(&d.fast_path_max_flows_per_input) {
        return Err((
            "fast_path_max_flows_per_input",
            format!(
                "{} is out of range 1..={most}: the packet sockets' filter excludes each kernel flow of an input and holds at most 4096 instructions",
                d.fast_path_max_flows_per_input
            ),
        ));
    }
    if d.fast_path_max_flows_per_input > d.fast_path_max_flows {
        return Err((
            "fast_path_max_flows_per_input",
            format!(
                "{} is more than fast_path_max_flows ({})",
                d.fast_path_max_flows_per_input, d.fast_path_max_flows
            ),
        ));
    }
    Ok(())
}

/// The checks of a rule's values, here beside the others; `place.rs` has the rest of the
/// type, which only finds places.
impl ConfigText<'_> {
    /// An integer field read wide, checked against `lo..=hi`.
    fn int<T: TryFrom<i64>>(
        &self,
        v: &Spanned<i64>,
        field: &str,
        what: &str,
        lo: i64,
        hi: i64,
    ) -> Result<T, ConfigError> {
        let n = *v.get_ref();
        if n < lo || n > hi {
            return Err(self.invalid(v.span(), field, format!("{n} is not {what} ({lo} to {hi})")));
        }
        T::try_from(n).map_err(|_| self.invalid(v.span(), field, format!("{n} is out of range")))
    }

    fn addr(&self, v: &Spanned<String>, field: &str) -> Result<IpAddr, ConfigError> {
        let text = v.get_ref();
        text.parse().map_err(|_| {
            let hint = if text.starts_with('[') {
                " (write an IPv6 address without brackets: the port is a key of its own)"
            } else {
                ""
            };
            self.invalid(
                v.span(),
                field,
                format!("`{text}` is not an IPv4 or IPv6 address{hint}"),
            )
        })
    }

    fn rule(&self, i: usize, span: Range<usize>, raw: RawRule) -> Result<RuleSpec, ConfigError> {
        let f = |name: &str| format!("rule[{i}].{name}");
        let group = self.addr(&raw.group, &f("group"))?;
        let source = raw
            .source
            .as_ref()
            .map(|s| self.addr(s, &f("source")))
            .transpose()?;
        let input = raw.input.get_ref().clone();
        let port = self.int(&raw.port, &f("port"), "a UDP port", 1, 65535)?;
        let name = match &raw.name {
            Some(n) => n.get_ref().clone(),
            None => format!("{input}-{group}-{port}"),
        };
        let mut outputs = Vec::with_capacity(raw.outputs.get_ref().len());
        for (j, o) in raw.outputs.get_ref().iter().enumerate() {
            let o = o.get_ref();
            let of = |name: &str| format!("rule[{i}].outputs[{j}].{name}");
            let ttl = match &o.ttl {
                Some(t) => self.int(t, &of("ttl"), "a TTL", 1, 255)?,
                None => 16,
            };
            let dscp = match &o.dscp {
                Some(d) => Some(self.int(d, &of("dscp"), "a DSCP", 0, i64::from(MAX_DSCP))?),
                None => None,
            };
            let source = match &o.source {
                Some(a) => Some(self.addr(a, &of("source"))?),
                None => None,
            };
            let source_port = match &o.source_port {
                Some(p) => Some(self.int(p, &of("source_port"), "a UDP port", 1, 65535)?),
                None => None,
            };
            outputs.push(OutputSpec {
                dscp,
                source,
                source_port,
                ..OutputSpec::new(
                    self.addr(&o.dest, &of("dest"))?,
                    self.int(&o.port, &of("port"), "a UDP port", 1, 65535)?,
                    o.interface.get_ref().clone(),
                    ttl,
                )
            });
        }
        let min_ttl = match &raw.min_ttl {
            Some(t) => Some(self.int(t, &f("min_ttl"), "a TTL", 1, 255)?),
            None => None,
        };
        let spec = RuleSpec {
            name,
            input,
            group,
            port,
            source,
            outputs,
            monitor: raw.monitor,
            min_ttl,
        };
        validate_rule(&spec).map_err(|e| {
            let at = match e.field {
                RuleField::Name => raw.name.as_ref().map_or(span.clone(), |n| n.span()),
                RuleField::Input => raw.input.span(),
                RuleField::Group => raw.group.span(),
                RuleField::Port => raw.port.span(),
                RuleField::Source => raw.source.as_ref().map_or(span.clone(), |s| s.span()),
                RuleField::Outputs => raw.outputs.span(),
                RuleField::Output(j, field) => {
                    let o = &raw.outputs.get_ref()[j];
                    let r = o.get_ref();
                    match field {
                        OutputField::Dest => r.dest.span(),
                        OutputField::Port => r.port.span(),
                        OutputField::Interface => r.interface.span(),
                        OutputField::Ttl => r.ttl.as_ref().map_or(o.span(), |t| t.span()),
                        OutputField::Dscp => r.dscp.as_ref().map_or(o.span(), |d| d.span()),
                        OutputField::Source => r.source.as_ref().map_or(o.span(), |a| a.span()),
                        OutputField::SourcePort => {
                            r.source_port.as_ref().map_or(o.span(), |p| p.span())
                        }
                    }
                }
            };
            self.invalid(at, &f(&e.field.to_string()), e.message)
        })?;
        Ok(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::super::raw::read_raw_in_parts;
    use super::super::spec::{LogFormat, Monitor};
    use super::*;

    const GOOD: &str = r#"
log_level = "debug"

[dataplane]
workers = 2
cpus = [0, 1]

[control]
socket = "/tmp/mcr-test.sock"

[[rule]]
name = "cam1"
input = "eth0"
group = "239.1.1.1"
port = 5000
outputs = [
  { dest = "239.2.2.2", port = 6000, interface = "eth1", ttl = 4 },
  { dest = "10.9.9.9", port = 7000, interface = "eth2" },
]

[[rule]]
input = "eth0"
group = "239.1.1.2"
port = 5000
source = "10.0.0.5"
outputs = [{ dest = "239.2.2.3", port = 6000, interface = "eth1" }]
"#;

    /// A config of `n` rules, every fifth with a source and two outputs.
    fn varied_rules(n: usize) -> String {
        let mut text = String::from("log_level = \"info\"\n[dataplane]\nworkers = 1\n");
        for i in 0..n {
            text += &format!(
                "\n[[rule]]\nname = \"r{i}\"\ninput = \"eth0\"\ngroup = \"239.1.{}.{}\"\nport = 5000\n",
                i / 256,
                i % 256
            );
            if i % 5 == 0 {
                text += "source = \"10.0.0.5\"\noutputs = [{ dest = \"239.2.2.2\", port = 6000, interface = \"eth1\" }, { dest = \"10.1.1.1\", port = 7000, interface = \"eth2\" }]\n";
            } else {
                text += "outputs = [{ dest = \"239.2.2.3\", port = 6000, interface = \"eth1\" }]\n";
            }
        }
        text
    }

    #[test]
    fn a_file_read_in_parts_gives_the_config_read_whole() {
        let text = varied_rules(300);
        let ctx = ConfigText::new(&text, "t.toml");
        let whole = parse(&text, "t.toml").unwrap();
        for parts in [2, 3, 7] {
            let raw = read_raw_in_parts(&text, parts).expect("cut at rule headers");
            assert_eq!(validated(raw, &ctx).unwrap(), whole, "{parts} parts");
        }
        // An error in a later part is placed in the whole file, as it is read whole.
        let bad = text.replacen("group = \"239.1.0.244\"", "group = \"239.1.0.444\"", 1);
        let line = bad[..bad.find("239.1.0.444").unwrap()].lines().count();
        let raw = read_raw_in_parts(&bad, 3).expect("still TOML");
        let err = validated(raw, &ConfigText::new(&bad, "t.toml"))
            .unwrap_err()
            .to_string();
        assert_eq!(err, parse(&bad, "t.toml").unwrap_err().to_string());
        assert!(err.starts_with(&format!("t.toml:{line}:")), "{err}");
    }

    #[test]
    fn files_that_parts_could_read_differently_are_read_whole() {
        let text = varied_rules(40);
        // Inline rules first, `[[rule]]` tables later: an error read whole, and the first
        // part alone would read.
        let mut inline = String::from("rule = [\n");
        for i in 0..40 {
            inline += &format!(
                "  {{ input = \"eth0\", group = \"239.9.0.{i}\", port = 1, outputs = [] }},\n"
            );
        }
        inline += "]\n[[rule]]\ninput = \"eth0\"\ngroup = \"239.8.0.1\"\nport = 1\noutputs = []\n";
        assert!(parse(&inline, "t.toml").is_err());
        assert!(read_raw_in_parts(&inline, 2).is_none());
        // Settings after the rules end the last part's "rules only".
        let late = format!("{text}\n[control]\nsocket = \"/tmp/x.sock\"\n");
        assert!(read_raw_in_parts(&late, 2).is_none());
        assert!(parse(&late, "t.toml").is_ok());
        // A multi-line string holding a header line.
        let tricky = text.replacen(
            "name = \"r20\"",
            "name = \"r20\"\nmonitor = \"\"\"\n[[rule]]\n\"\"\"",
            1,
        );
        assert!(read_raw_in_parts(&tricky, 2).is_none());
    }

    #[test]
    fn log_format_is_text_or_json_and_a_wrong_one_is_named_with_its_place() {
        assert_eq!(parse("", "r.toml").unwrap().log_format, LogFormat::Text);
        let c = parse("log_format = \"json\"\n", "r.toml").unwrap();
        assert_eq!(c.log_format, LogFormat::Json);
        let e = parse("\nlog_format = \"xml\"\n", "r.toml")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("r.toml:2:"), "{e}");
        assert!(e.contains("xml") && e.contains("json"), "{e}");
    }

    #[test]
    fn the_file_s_log_level_wins_then_a_valid_rust_log_then_info() {
        let set = parse("log_level = \"debug\"\n", "r.toml").unwrap();
        assert_eq!(set.log_filter(Some("trace")), "debug");
        let unset = parse("", "r.toml").unwrap();
        assert_eq!(unset.log_level, None);
        assert_eq!(unset.log_filter(Some("relay=trace")), "relay=trace");
        assert_eq!(unset.log_filter(Some("[[[")), "info");
        assert_eq!(unset.log_filter(None), "info");
    }

    #[test]
    fn good_config_parses() {
        let c = parse(GOOD, "relay.toml").unwrap();
        assert_eq!(c.log_level.as_deref(), Some("debug"));
        assert_eq!(c.dataplane.workers, 2);
        assert_eq!(
            c.dataplane.ring_frames,
            DataplaneConfig::default().ring_frames
        );
        assert_eq!(c.control.socket, PathBuf::from("/tmp/mcr-test.sock"));
        assert_eq!(c.rules.len(), 2);
        assert_eq!(c.rules[0].outputs.len(), 2);
        assert_eq!(c.rules[0].outputs[0].ttl, 4);
        assert_eq!(c.rules[0].outputs[1].ttl, 16);
        assert_eq!(c.rules[1].name, "eth0-239.1.1.2-5000");
        assert_eq!(c.rules[1].source, Some([10, 0, 0, 5].into()));
    }

    /// Issue 23: the conffile forwarded live traffic on eth0/eth1/eth2 as installed.
    #[test]
    fn packaged_config_forwards_nothing_until_edited() {
        let c = parse(include_str!("../../packaging/relay.toml"), "relay.toml").unwrap();
        assert!(c.rules.is_empty());
        assert_eq!(c.control.group.as_deref(), Some("mcr"));
    }

    #[test]
    fn packaged_example_config_parses_and_its_unit_allows_real_time_workers() {
        let c = parse(
            include_str!("../../packaging/examples/relay.toml"),
            "relay.toml",
        )
        .unwrap();
        // Off by default (they cost a shared host more than they save); the unit file's
        // LimitRTPRIO must still allow the priority the README suggests turning on.
        let unit = include_str!("../../packaging/mcrd.service");
        let limit: u32 = unit
            .lines()
            .find_map(|l| l.strip_prefix("LimitRTPRIO="))
            .expect("the unit sets LimitRTPRIO")
            .parse()
            .unwrap();
        assert_eq!(c.dataplane.realtime_priority, 0);
        assert!(limit >= 10);
        assert!(unit.contains("RestrictRealtime=no"));
        // The fast path the example asks for needs these from the unit.
        assert_ne!(c.dataplane.fast_path, super::super::FastPathMode::Off);
        let line = |key: &str| unit.lines().find(|l| l.starts_with(key)).unwrap_or("");
        for cap in ["CAP_NET_RAW", "CAP_BPF", "CAP_NET_ADMIN"] {
            assert!(line("AmbientCapabilities=").contains(cap), "{cap}");
            assert!(line("CapabilityBoundingSet=").contains(cap), "{cap}");
        }
        assert!(line("SystemCallFilter=").contains(" bpf"));
        // Issue 23: readiness, a reload that fails when mcrd refuses the file, the final
        // stats where they outlive the stop, and the workers' CPU counters.
        assert!(unit.lines().any(|l| l == "Type=notify"));
        assert!(
            line("ExecReload=").contains("mcrctl") && line("ExecReload=").contains("config reload")
        );
        assert!(line("ExecStart=").contains("--final-stats /var/lib/mcr/"));
        assert!(unit.lines().any(|l| l == "StateDirectory=mcr"));
        assert!(line("SystemCallFilter=").contains(" perf_event_open"));
    }

    #[test]
    fn fast_path_modes_parse() {
        for (text, mode) in [
            ("auto", super::super::FastPathMode::Auto),
            ("off", super::super::FastPathMode::Off),
            ("required", super::super::FastPathMode::Required),
        ] {
            let c = parse(&format!("[dataplane]\nfast_path = \"{text}\"\n"), "x.toml").unwrap();
            assert_eq!(c.dataplane.fast_path, mode);
        }
        // Not named: the fastest path the kernel and the privileges allow.
        let c = parse("[dataplane]\nworkers = 1\n", "x.toml").unwrap();
        assert_eq!(c.dataplane.fast_path, super::super::FastPathMode::Auto);
    }

    #[test]
    fn fast_path_hooks_parse_and_a_wrong_one_is_refused_naming_the_key() {
        use super::super::FastPathAttach;
        let c = parse("[dataplane]\nfast_path = \"auto\"\n", "x.toml").unwrap();
        assert_eq!(c.dataplane.fast_path_attach, FastPathAttach::Auto);
        for (text, hook) in [
            ("auto", FastPathAttach::Auto),
            ("tcx", FastPathAttach::Tcx),
            ("clsact", FastPathAttach::Clsact),
        ] {
            let c = parse(
                &format!("[dataplane]\nfast_path_attach = \"{text}\"\n"),
                "x.toml",
            )
            .unwrap();
            assert_eq!(c.dataplane.fast_path_attach, hook);
            assert_eq!(hook.to_string(), text);
        }
        let e = err("[dataplane]\nworkers = 1\nfast_path_attach = \"xdp\"\n");
        assert!(
            e.starts_with("relay.toml:3:")
                && e.contains("fast_path_attach")
                && e.contains("`xdp`")
                && e.contains("`auto`, `tcx`, `clsact`"),
            "{e}"
        );
    }

    #[test]
    fn empty_file_is_a_relay_with_no_rules() {
        let c = parse("", "x.toml").unwrap();
        assert!(c.rules.is_empty());
        assert_eq!(c.dataplane, DataplaneConfig::default());
    }

    fn err(text: &str) -> String {
        parse(text, "relay.toml").unwrap_err().to_string()
    }

    #[test]
    fn unknown_field_names_file_line_and_field() {
        let e = err("[dataplane]\nworkers = 1\nwrokers = 2\n");
        assert!(e.starts_with("relay.toml:3:"), "{e}");
        assert!(e.contains("wrokers"), "{e}");
    }

    #[test]
    fn bad_address_names_rule_field_and_line() {
        let text = "[[rule]]\ninput = \"eth0\"\ngroup = \"239.1.1\"\nport = 5000\noutputs = [{ dest = \"239.2.2.2\", port = 1, interface = \"eth1\" }]\n";
        let e = err(text);
        assert!(e.starts_with("relay.toml:3:"), "{e}");
        assert!(e.contains("rule[0].group"), "{e}");
        assert!(e.contains("not an IPv4 or IPv6 address"), "{e}");
    }

    #[test]
    fn ipv6_groups_sources_and_outputs_are_read() {
        let text = "[[rule]]\ninput = \"eth0\"\ngroup = \"ff3e::1234\"\nsource = \"2001:db8::10\"\nport = 5000\noutputs = [{ dest = \"ff3e::4321\", port = 6000, interface = \"eth1\" }, { dest = \"239.2.2.2\", port = 6000, interface = \"eth2\" }]\n";
        let c = parse(text, "relay.toml").unwrap();
        let r = &c.rules[0];
        assert_eq!(r.group, "ff3e::1234".parse::<IpAddr>().unwrap());
        assert_eq!(r.source, Some("2001:db8::10".parse().unwrap()));
        assert_eq!(r.name, "eth0-ff3e::1234-5000");
        assert!(r.outputs[0].dest.is_ipv6() && r.outputs[1].dest.is_ipv4());
    }

    #[test]
    fn ipv6_mistakes_are_explained_where_they_are() {
        let rule = |group: &str, source: &str, dest: &str, out_source: &str| {
            format!("[[rule]]\ninput = \"eth0\"\ngroup = \"{group}\"\n{source}port = 5000\noutputs = [{{ dest = \"{dest}\", port = 1, interface = \"eth1\"{out_source} }}]\n")
        };
        for (text, line, field, why) in [
            (
                rule("[ff3e::1]", "", "ff3e::2", ""),
                3,
                "rule[0].group",
                "without brackets",
            ),
            (
                rule("ff3e::1", "source = \"10.0.0.1\"\n", "ff3e::2", ""),
                4,
                "rule[0].source",
                "a datagram's addresses are of one family",
            ),
            (
                rule("::ffff:239.1.1.1", "", "ff3e::2", ""),
                3,
                "rule[0].group",
                "write it as 239.1.1.1",
            ),
            (
                rule("::", "", "ff3e::2", ""),
                3,
                "rule[0].group",
                ":: is the destination of no datagram",
            ),
            (
                rule("ff3e::1", "", "ff3e::2", ", source = \"10.0.0.1\""),
                5,
                "rule[0].outputs[0].source",
                "from an address of its own family",
            ),
        ] {
            let e = err(&text);
            assert!(e.starts_with(&format!("relay.toml:{line}:")), "{e}");
            assert!(e.contains(field), "{e}");
            assert!(e.contains(why), "{e}");
        }
    }

    #[test]
    fn monitor_is_rtp_or_mpegts_and_off_by_default() {
        let rule = |extra: &str| {
            format!("[[rule]]\ninput = \"eth0\"\ngroup = \"239.1.1.1\"\nport = 5000\n{extra}outputs = [{{ dest = \"239.2.2.2\", port = 1, interface = \"eth1\" }}]\n")
        };
        assert_eq!(parse(&rule(""), "x.toml").unwrap().rules[0].monitor, None);
        for (value, kind) in [("rtp", Monitor::Rtp), ("mpegts", Monitor::Mpegts)] {
            let c = parse(&rule(&format!("monitor = \"{value}\"\n")), "x.toml").unwrap();
            assert_eq!(c.rules[0].monitor, Some(kind));
        }
        let e = err(&rule("monitor = \"srt\"\n"));
        assert!(e.starts_with("relay.toml:5:"), "{e}");
        assert!(e.contains("rtp") && e.contains("mpegts"), "{e}");
    }

    #[test]
    fn min_ttl_is_a_ttl_and_unset_by_default() {
        let rule = |extra: &str| {
            format!("[[rule]]\ninput = \"eth0\"\ngroup = \"239.1.1.1\"\nport = 5000\n{extra}outputs = [{{ dest = \"239.2.2.2\", port = 1, interface = \"eth1\" }}]\n")
        };
        assert_eq!(parse(&rule(""), "x.toml").unwrap().rules[0].min_ttl, None);
        for value in [1, 2, 255] {
            let c = parse(&rule(&format!("min_ttl = {value}\n")), "x.toml").unwrap();
            assert_eq!(c.rules[0].min_ttl, Some(value));
            assert!(c.rules[0]
                .to_string()
                .contains(&format!(" min ttl {value} ->")));
        }
        for value in ["0", "256", "-1", "\"2\""] {
            let e = err(&rule(&format!("min_ttl = {value}\n")));
            assert!(e.starts_with("relay.toml:5:"), "{value}: {e}");
            assert!(e.contains("min_ttl"), "{value}: {e}");
        }
    }

    #[test]
    fn bad_output_address_names_output_index() {
        let text = "[[rule]]\ninput = \"eth0\"\ngroup = \"239.1.1.1\"\nport = 5000\noutputs = [\n { dest = \"239.2.2.2\", port = 1, interface = \"eth1\" },\n { dest = \"nope\", port = 1, interface = \"eth1\" },\n]\n";
        let e = err(text);
        assert!(e.starts_with("relay.toml:7:"), "{e}");
        assert!(e.contains("rule[0].outputs[1].dest"), "{e}");
    }

    #[test]
    fn out_of_range_integers_name_their_field_and_line() {
        let e =
            err("[[rule]]\ninput = \"eth0\"\ngroup = \"239.1.1.1\"\nport = 70000\noutputs = []\n");
        assert!(
            e.starts_with("relay.toml:4:8: rule[0].port: 70000 is not a UDP port"),
            "{e}"
        );
        let out = |o: &str| {
            format!("[[rule]]\ninput = \"eth0\"\ngroup = \"239.1.1.1\"\nport = 5000\noutputs = [\n  {o},\n]\n")
        };
        let e = err(&out(
            "{ dest = \"239.2.2.2\", port = 6000, interface = \"eth1\", ttl = 300 }",
        ));
        assert!(
            e.starts_with("relay.toml:6:")
                && e.contains("rule[0].outputs[0].ttl: 300 is not a TTL"),
            "{e}"
        );
        let e = err(&out(
            "{ dest = \"239.2.2.2\", port = 70000, interface = \"eth1\" }",
        ));
        assert!(e.contains("rule[0].outputs[0].port: 70000"), "{e}");
        // Type errors the TOML reader finds name the key too.
        let e = err(&out(
            "{ dest = \"239.2.2.2\", port = \"6000\", interface = \"eth1\" }",
        ));
        assert!(
            e.starts_with("relay.toml:6:") && e.contains("port: invalid type"),
            "{e}"
        );
        let e = err("[dataplane]\nworkers = -1\n");
        assert!(e.starts_with("relay.toml:2:11: dataplane.workers: "), "{e}");
        let e = err("log_level = 5\n");
        assert!(e.contains("log_level: invalid type"), "{e}");
    }

    #[test]
    fn a_multibyte_character_before_a_key_does_not_panic() {
        // The fuzzer's crash input: a byte-order mark, then `p=` with no value.
        let e = err("\u{feff}p=");
        assert!(e.starts_with("relay.toml:1:"), "{e}");
        let e = err("\u{e9}p = \"x\"\n");
        assert!(e.starts_with("relay.toml:1:"), "{e}");
    }

    #[test]
    fn section_errors_point_at_the_key_not_the_header() {
        let e = err("[dataplane]\nworkers = 2\n\nbuffer_count = 3\n\n[control]\nmode = \"0660\"\n");
        assert!(
            e.starts_with("relay.toml:4:1: dataplane.buffer_count"),
            "{e}"
        );
        let e = err("[control]\nsocket = \"/tmp/x\"\nmode = \"rw\"\n");
        assert!(e.starts_with("relay.toml:3:1: control.mode"), "{e}");
        let e = err("dataplane = { workers = 1, ring_frames = 2 }\n");
        assert!(
            e.starts_with("relay.toml:1:28: dataplane.ring_frames"),
            "{e}"
        );
        // A rule found by no single key (the CPU list against the worker count) points at
        // the key that is checked.
        let e = err("[dataplane]\nworkers = 2\ncpus = [0]\n");
        assert!(e.starts_with("relay.toml:3:1: dataplane.cpus"), "{e}");
    }

    #[test]
    fn duplicate_rules_are_refused() {
        let rule = "[[rule]]\ninput = \"eth0\"\ngroup = \"239.1.1.1\"\nport = 5000\noutputs = [{ dest = \"239.2.2.2\", port = 1, interface = \"eth1\" }]\n";
        let e = err(&format!("{rule}{rule}"));
        assert!(e.contains("duplicate"), "{e}");
        assert!(e.contains("line 1"), "{e}");
        let named = |n: &str, g: &str| {
            rule.replace("[[rule]]\n", &format!("[[rule]]\nname = \"{n}\"\n"))
                .replace("239.1.1.1", g)
        };
        let e = err(&format!(
            "{}{}",
            named("a", "239.1.1.1"),
            named("a", "239.1.1.9")
        ));
        assert!(e.contains("duplicate rule name `a`"), "{e}");
    }

    #[test]
    fn rule_without_outputs_is_refused() {
        let e =
            err("[[rule]]\ninput = \"eth0\"\ngroup = \"239.1.1.1\"\nport = 5000\noutputs = []\n");
        assert!(e.contains("at least one output"), "{e}");
    }

    #[test]
    fn a_cpu_listed_twice_is_refused_naming_the_field_and_the_cpu() {
        let e = err("[dataplane]\nworkers = 2\ncpus = [0, 0]\n");
        assert!(
            e.contains("dataplane.cpus") && e.contains("CPU 0 is listed twice"),
            "{e}"
        );
    }

    #[test]
    fn fast_path_sizes_default_large_and_are_bounded_with_clear_errors() {
        let cfg = parse("", "f").unwrap();
        assert!(cfg.dataplane.fast_path_max_flows >= 65_536);
        let e = err("[dataplane]\nfast_path_max_flows = 0\n");
        assert!(
            e.contains("dataplane.fast_path_max_flows") && e.contains("out of range"),
            "{e}"
        );
        let e = err("[dataplane]\nfast_path_max_flows = 2000000\n");
        assert!(e.contains("dataplane.fast_path_max_flows"), "{e}");
        let e = err("[dataplane]\nfast_path_max_flows_per_input = 5000\n");
        assert!(
            e.contains("dataplane.fast_path_max_flows_per_input") && e.contains("4096"),
            "{e}"
        );
        let e = err("[dataplane]\nfast_path_max_flows = 10\nfast_path_max_flows_per_input = 20\n");
        assert!(e.contains("more than fast_path_max_flows"), "{e}");
        let cfg = parse("[dataplane]\nfast_path_max_flows = 100000\n", "f").unwrap();
        assert_eq!(cfg.dataplane.fast_path_max_flows, 100_000);
    }

    #[test]
    fn line_numbers_are_those_of_the_text() {
        let ctx = ConfigText::new("a\nbc\n\nd", "f");
        assert_eq!(ctx.line_col(0), (1, 1));
        assert_eq!(ctx.line_col(1), (1, 2));
        assert_eq!(ctx.line_col(2), (2, 1));
        assert_eq!(ctx.line_col(4), (2, 3));
        assert_eq!(ctx.line_col(5), (3, 1));
        assert_eq!(ctx.line_col(6), (4, 1));
        assert_eq!(ctx.line_col(99), (4, 2));
    }

    /// `n` rules, each on its own 3 lines, all on one input.
    pub(crate) fn many_rules(n: usize) -> String {
        let mut t = String::new();
        for i in 0..n {
            t.push_str(&format!(
                "[[rule]]\ninput = \"eth0\"\ngroup = \"239.{}.{}.{}\"\nport = 5000\noutputs = [{{ dest = \"239.9.9.9\", port = 5000, interface = \"eth1\" }}]\n",
                1 + i / 65536,
                (i / 256) % 256,
                i % 256
            ));
        }
        t
    }

    #[test]
    fn checking_many_rules_takes_time_linear_in_their_number() {
        // 20,000 rules took ~30 s when each rule's line was counted from the top; a
        // linear parse takes well under a second even in a debug build. The bound is
        // generous: it catches N², not noise.
        let text = many_rules(20_000);
        let t = std::time::Instant::now();
        let cfg = parse(&text, "many.toml").unwrap();
        assert_eq!(cfg.rules.len(), 20_000);
        let e = parse(&(text + "[[rule]]\ninput = \"eth0\"\ngroup = \"239.1.0.0\"\nport = 5000\noutputs = [{ dest = \"239.9.9.9\", port = 5000, interface = \"eth1\" }]\n"), "many.toml").unwrap_err().to_string();
        assert!(e.contains("duplicate rule") && e.contains("line 1"), "{e}");
        assert!(
            t.elapsed() < std::time::Duration::from_secs(20),
            "{:?}",
            t.elapsed()
        );
    }

    #[test]
    fn dataplane_bounds_are_checked() {
        let e = err("[dataplane]\nworkers = 0\n");
        assert!(
            e.contains("dataplane.workers") && e.contains("out of range"),
            "{e}"
        );
        let e = err("[dataplane]\nworkers = 2\ncpus = [0]\n");
        assert!(e.contains("dataplane.cpus"), "{e}");
        // What a file means does not depend on the machine reading it (`machine.rs`).
        assert!(parse("[dataplane]\nworkers = 1\ncpus = [1024]\n", "r.toml").is_ok());
        let e = err("[dataplane]\nfast_path = \"fast\"\n");
        assert!(
            e.contains("unknown variant `fast`") && e.contains("`required`"),
            "{e}"
        );
        let e = err("[dataplane]\nrealtime_priority = 100\n");
        assert!(
            e.contains("dataplane.realtime_priority") && e.contains("0..=99"),
            "{e}"
        );
    }

    #[test]
    fn bad_interface_and_log_level_and_mode_are_refused() {
        let e = err("[[rule]]\ninput = \"a-very-long-interface-name\"\ngroup = \"239.1.1.1\"\nport = 5000\noutputs = [{ dest = \"239.2.2.2\", port = 1, interface = \"eth1\" }]\n");
        assert!(e.contains("rule[0].input"), "{e}");
        let e = err("log_level = \"[[[\"\n");
        assert!(e.contains("log_level"), "{e}");
        let e = err("[control]\nmode = \"rw\"\n");
        assert!(e.contains("control.mode"), "{e}");
    }

    #[test]
    fn rule_checks_are_the_socket_s_and_name_the_field_and_line() {
        let rule = |name: &str, dest: &str, ttl: u32| {
            format!("[[rule]]\nname = \"{name}\"\ninput = \"eth0\"\ngroup = \"239.1.1.1\"\nport = 5000\noutputs = [\n  {{ dest = \"{dest}\", port = 1, interface = \"eth1\", ttl = {ttl} }},\n]\n")
        };
        let e = err(&rule("a\\nb", "239.2.2.2", 4));
        assert!(
            e.starts_with("relay.toml:2:") && e.contains("rule[0].name"),
            "{e}"
        );
        assert!(!e.contains('\n'), "{e}");
        let e = err(&rule("a\\u001b[31m", "239.2.2.2", 4));
        assert!(e.contains("rule[0].name") && !e.contains('\u{1b}'), "{e}");
        let e = err(&rule("a", "0.0.0.0", 4));
        assert!(
            e.starts_with("relay.toml:7:") && e.contains("rule[0].outputs[0].dest"),
            "{e}"
        );
        let e = err(&rule("a", "239.2.2.2", 0));
        assert!(
            e.starts_with("relay.toml:7:") && e.contains("rule[0].outputs[0].ttl"),
            "{e}"
        );
        assert!(parse(&rule("cam-1.a_b:c", "239.2.2.2", 1), "x").is_ok());
    }

    proptest::proptest! {
        /// Any valid rule written as TOML (by serde, as a user would write the fields) parses
        /// back to itself.
        #[test]
        fn rules_round_trip_through_toml(rules in proptest::collection::vec(crate::config::arb::rule(), 0..4)) {
            let mut names = std::collections::HashSet::new();
            let mut keys = std::collections::HashSet::new();
            let rules: Vec<RuleSpec> = rules
                .into_iter()
                .filter(|r| crate::config::validate_rule(r).is_ok())
                .filter(|r| names.insert(r.name.clone()) && keys.insert(r.match_key()))
                .collect();
            #[derive(serde::Serialize)]
            struct File<'a> {
                rule: &'a [RuleSpec],
            }
            let text = toml::to_string(&File { rule: &rules }).unwrap();
            let parsed = parse(&text, "prop.toml").map_err(|e| {
                proptest::test_runner::TestCaseError::fail(format!("{e}\n{text}"))
            })?;
            proptest::prop_assert_eq!(parsed.rules, rules);
        }
    }

    #[test]
    fn output_qos_and_source_keys_parse_and_are_checked() {
        let out = |o: &str| {
            format!("[[rule]]\ninput = \"eth0\"\ngroup = \"239.1.1.1\"\nport = 5000\noutputs = [\n  {o},\n]\n")
        };
        let c = parse(
            &out("{ dest = \"10.0.0.9\", port = 7000, interface = \"eth1\", dscp = 46, source = \"10.0.0.1\", source_port = 6500 }"),
            "x",
        )
        .unwrap();
        let o = &c.rules[0].outputs[0];
        assert_eq!((o.dscp, o.source_port), (Some(46), Some(6500)));
        assert_eq!(o.source, Some([10, 0, 0, 1].into()));
        let c = parse(
            &out("{ dest = \"10.0.0.9\", port = 7000, interface = \"eth1\" }"),
            "x",
        )
        .unwrap();
        let o = &c.rules[0].outputs[0];
        assert_eq!((o.dscp, o.source, o.source_port), (None, None, None));
        let e = err(&out(
            "{ dest = \"10.0.0.9\", port = 7000, interface = \"eth1\", dscp = 64 }",
        ));
        assert!(
            e.starts_with("relay.toml:6:")
                && e.contains("rule[0].outputs[0].dscp: 64 is not a DSCP"),
            "{e}"
        );
        let e = err(&out(
            "{ dest = \"10.0.0.9\", port = 7000, interface = \"eth1\", source_port = 0 }",
        ));
        assert!(e.contains("rule[0].outputs[0].source_port"), "{e}");
        let e = err(&out(
            "{ dest = \"10.0.0.9\", port = 7000, interface = \"eth1\", source = \"239.1.1.1\" }",
        ));
        assert!(
            e.contains("rule[0].outputs[0].source") && e.contains("cannot be a source"),
            "{e}"
        );
    }

    #[test]
    fn metrics_are_off_by_default_and_listen_is_checked() {
        assert_eq!(parse("", "x.toml").unwrap().metrics.listen, None);
        let c = parse("[metrics]\nlisten = \"127.0.0.1:19108\"\n", "x.toml").unwrap();
        assert_eq!(c.metrics.listen, Some("127.0.0.1:19108".parse().unwrap()));
        let c = parse("[metrics]\nlisten = \"[::1]:19108\"\n", "x.toml").unwrap();
        assert_eq!(c.metrics.listen, Some("[::1]:19108".parse().unwrap()));
        let e = err("[metrics]\nlisten = \"localhost\"\n");
        assert!(
            e.starts_with("relay.toml:2:") && e.contains("metrics.listen"),
            "{e}"
        );
        let e = err("[metrics]\nlisten = \"127.0.0.1:0\"\n");
        assert!(e.contains("metrics.listen") && e.contains("port 0"), "{e}");
        let e = err("[metrics]\nlisen = \"127.0.0.1:19108\"\n");
        assert!(e.contains("lisen"), "{e}");
    }

    #[test]
    fn mode_parses_octal() {
        assert_eq!(parse_mode("0660"), Some(0o660));
        assert_eq!(parse_mode("0o600"), Some(0o600));
        assert_eq!(parse_mode("999"), None);
        assert_eq!(parse_mode("7777"), None);
    }
}
