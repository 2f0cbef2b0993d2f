//! Reading the TOML file and turning it into a validated [`Config`].

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::spec::{
    Config, ControlConfig, DataplaneConfig, Monitor, OutputSpec, RuleSpec, MAX_DSCP,
};

/// Where `mcrd` and `mcrctl config check` look when no file is named.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/mcr/relay.toml";

/// A configuration the daemon refuses, with where and why.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
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
    /// TOML syntax or a type error the TOML reader found.
    #[error("{file}:{line}:{column}: {message}")]
    Syntax {
        file: String,
        line: usize,
        column: usize,
        message: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    log_level: Option<Spanned<String>>,
    #[serde(default)]
    dataplane: Option<Spanned<DataplaneConfig>>,
    #[serde(default)]
    control: Option<Spanned<ControlConfig>>,
    #[serde(default)]
    rule: Vec<Spanned<RawRule>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: Option<Spanned<String>>,
    input: Spanned<String>,
    group: Spanned<String>,
    port: Spanned<u16>,
    #[serde(default)]
    source: Option<Spanned<String>>,
    outputs: Spanned<Vec<Spanned<RawOutput>>>,
    #[serde(default)]
    monitor: Option<Monitor>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOutput {
    dest: Spanned<String>,
    port: Spanned<u16>,
    interface: Spanned<String>,
    #[serde(default)]
    ttl: Option<Spanned<u8>>,
    #[serde(default)]
    dscp: Option<Spanned<u8>>,
    #[serde(default)]
    source: Option<Spanned<String>>,
    #[serde(default)]
    source_port: Option<Spanned<u16>>,
}

/// Reads and validates a config file.
pub fn parse_file(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text, &path.display().to_string())
}

/// Validates config text; `file` names it in errors.
pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
    let ctx = Ctx { text, file };
    let raw: RawConfig = toml::from_str(text).map_err(|e| {
        let (line, column) = e.span().map(|s| ctx.line_col(s.start)).unwrap_or((1, 1));
        ConfigError::Syntax {
            file: file.to_string(),
            line,
            column,
            message: e.message().to_string(),
        }
    })?;

    let dataplane = match raw.dataplane {
        Some(d) => {
            let span = d.span();
            let d = d.into_inner();
            validate_dataplane(&d).map_err(|(field, msg)| {
                ctx.invalid(span.clone(), &format!("dataplane.{field}"), msg)
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
                    span,
                    "control.mode",
                    format!("`{}` is not an octal file mode like \"0660\"", c.mode),
                ));
            }
            c
        }
        None => ControlConfig::default(),
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
            l
        }
        None => "info".to_string(),
    };

    let mut rules = Vec::with_capacity(raw.rule.len());
    let mut names: HashMap<String, usize> = HashMap::new();
    let mut keys: HashMap<(String, Ipv4Addr, u16, Option<Ipv4Addr>), usize> = HashMap::new();
    for (i, raw_rule) in raw.rule.into_iter().enumerate() {
        let span = raw_rule.span();
        let rule = ctx.rule(i, raw_rule.into_inner())?;
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
                    "duplicate rule: {}:{} on {} is already matched by the rule on line {first}",
                    rule.group, rule.port, rule.input
                ),
            ));
        }
        rules.push(rule);
    }

    Ok(Config {
        dataplane,
        control,
        log_level,
        rules,
    })
}

/// Parses an octal mode string such as `"0660"`.
pub fn parse_mode(mode: &str) -> Option<u32> {
    let digits = mode.strip_prefix("0o").unwrap_or(mode);
    u32::from_str_radix(digits, 8).ok().filter(|m| *m <= 0o777)
}

/// Whether a worker may be pinned to `cpu` on this machine.
fn cpu_allowed(cpu: u32) -> bool {
    match crate::dataplane::sys::allowed_cpus() {
        Ok(cpus) => cpus.contains(&cpu),
        // Without the mask, refuse only what no CPU set can name.
        Err(_) => (cpu as usize) < crate::dataplane::sys::CPU_SET_CAPACITY,
    }
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
    if let Some(cpu) = d.cpus.iter().find(|&&c| !cpu_allowed(c)) {
        let allowed = crate::dataplane::sys::allowed_cpus()
            .map(|c| format!("{c:?}"))
            .unwrap_or_else(|e| format!("unknown: {e}"));
        return Err((
            "cpus",
            format!("CPU {cpu} is not one this process may run on (allowed: {allowed})"),
        ));
    }
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
        crate::dataplane::limits::UDP_MAX_SEGMENTS,
    )?;
    range("busy_poll_us", d.busy_poll_us, 0, 1_000_000)?;
    range("rx_coalesce_us", d.rx_coalesce_us, 0, 100_000)?;
    range("realtime_priority", d.realtime_priority, 0, 99)?;
    Ok(())
}

struct Ctx<'a> {
    text: &'a str,
    file: &'a str,
}

impl Ctx<'_> {
    fn line_col(&self, offset: usize) -> (usize, usize) {
        let before = &self.text[..offset.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.len() - before.rfind('\n').map(|p| p + 1).unwrap_or(0) + 1;
        (line, column)
    }

    fn invalid(&self, span: Range<usize>, field: &str, message: String) -> ConfigError {
        let (line, column) = self.line_col(span.start);
        ConfigError::Invalid {
            file: self.file.to_string(),
            line,
            column,
            field: field.to_string(),
            message,
        }
    }

    fn addr(&self, v: &Spanned<String>, field: &str) -> Result<Ipv4Addr, ConfigError> {
        v.get_ref().parse().map_err(|_| {
            self.invalid(
                v.span(),
                field,
                format!("`{}` is not an IPv4 address", v.get_ref()),
            )
        })
    }

    fn interface(&self, v: &Spanned<String>, field: &str) -> Result<String, ConfigError> {
        let name = v.get_ref();
        // IFNAMSIZ is 16 including the terminating NUL.
        if name.is_empty() || name.len() > 15 || name.contains(['/', ' ', '\0']) {
            return Err(self.invalid(
                v.span(),
                field,
                format!("`{name}` is not a valid interface name"),
            ));
        }
        Ok(name.clone())
    }

    fn rule(&self, i: usize, raw: RawRule) -> Result<RuleSpec, ConfigError> {
        let f = |name: &str| format!("rule[{i}].{name}");
        let input = self.interface(&raw.input, &f("input"))?;
        let group = self.addr(&raw.group, &f("group"))?;
        let source = raw
            .source
            .as_ref()
            .map(|s| self.addr(s, &f("source")))
            .transpose()?;
        let port = *raw.port.get_ref();
        if port == 0 {
            return Err(self.invalid(raw.port.span(), &f("port"), "port 0 matches nothing".into()));
        }
        let name = match &raw.name {
            Some(n) if n.get_ref().is_empty() || n.get_ref().len() > 64 => {
                return Err(self.invalid(
                    n.span(),
                    &f("name"),
                    "a rule name must be 1 to 64 characters".into(),
                ))
            }
            Some(n) => n.get_ref().clone(),
            None => format!("{input}-{group}-{port}"),
        };
        if raw.outputs.get_ref().is_empty() {
            return Err(self.invalid(
                raw.outputs.span(),
                &f("outputs"),
                "a rule needs at least one output".into(),
            ));
        }
        let mut outputs = Vec::with_capacity(raw.outputs.get_ref().len());
        for (j, o) in raw.outputs.get_ref().iter().enumerate() {
            let o = o.get_ref();
            let of = |name: &str| format!("rule[{i}].outputs[{j}].{name}");
            let dest = self.addr(&o.dest, &of("dest"))?;
            let port = *o.port.get_ref();
            if port == 0 {
                return Err(self.invalid(
                    o.port.span(),
                    &of("port"),
                    "port 0 cannot be sent to".into(),
                ));
            }
            let interface = self.interface(&o.interface, &of("interface"))?;
            let ttl = o.ttl.as_ref().map(|t| *t.get_ref()).unwrap_or(16);
            if dest.is_unspecified() || dest.is_broadcast() {
                return Err(self.invalid(
                    o.dest.span(),
                    &of("dest"),
                    format!("{dest} cannot be a destination"),
                ));
            }
            let dscp = match &o.dscp {
                Some(d) if *d.get_ref() > MAX_DSCP => {
                    return Err(self.invalid(
                        d.span(),
                        &of("dscp"),
                        format!("{} is out of range 0..={MAX_DSCP}", d.get_ref()),
                    ))
                }
                d => d.as_ref().map(|d| *d.get_ref()),
            };
            let source = match &o.source {
                Some(a) => Some(self.addr(a, &of("source"))?),
                None => None,
            };
            let source_port = match &o.source_port {
                Some(p) if *p.get_ref() == 0 => {
                    return Err(self.invalid(
                        p.span(),
                        &of("source_port"),
                        "leave source_port out for an ephemeral port; 0 is not a port".into(),
                    ))
                }
                p => p.as_ref().map(|p| *p.get_ref()),
            };
            outputs.push(OutputSpec {
                dscp,
                source,
                source_port,
                ..OutputSpec::new(dest, port, interface, ttl)
            });
        }
        Ok(RuleSpec {
            name,
            input,
            group,
            port,
            source,
            outputs,
            monitor: raw.monitor,
        })
    }
}

#[cfg(test)]
mod tests {
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

    #[test]
    fn good_config_parses() {
        let c = parse(GOOD, "relay.toml").unwrap();
        assert_eq!(c.log_level, "debug");
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
        assert_eq!(c.rules[1].source, Some(Ipv4Addr::new(10, 0, 0, 5)));
    }

    #[test]
    fn packaged_example_config_parses_and_its_unit_allows_real_time_workers() {
        let c = parse(include_str!("../../packaging/relay.toml"), "relay.toml").unwrap();
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
        assert!(e.contains("not an IPv4 address"), "{e}");
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
    fn bad_output_address_names_output_index() {
        let text = "[[rule]]\ninput = \"eth0\"\ngroup = \"239.1.1.1\"\nport = 5000\noutputs = [\n { dest = \"239.2.2.2\", port = 1, interface = \"eth1\" },\n { dest = \"nope\", port = 1, interface = \"eth1\" },\n]\n";
        let e = err(text);
        assert!(e.starts_with("relay.toml:7:"), "{e}");
        assert!(e.contains("rule[0].outputs[1].dest"), "{e}");
    }

    #[test]
    fn port_out_of_range_is_a_syntax_error_with_line() {
        let e =
            err("[[rule]]\ninput = \"eth0\"\ngroup = \"239.1.1.1\"\nport = 70000\noutputs = []\n");
        assert!(e.starts_with("relay.toml:4:"), "{e}");
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
    fn dataplane_bounds_are_checked() {
        let e = err("[dataplane]\nworkers = 0\n");
        assert!(
            e.contains("dataplane.workers") && e.contains("out of range"),
            "{e}"
        );
        let e = err("[dataplane]\nworkers = 2\ncpus = [0]\n");
        assert!(e.contains("dataplane.cpus"), "{e}");
        let e = err("[dataplane]\nworkers = 1\ncpus = [1024]\n");
        assert!(
            e.contains("dataplane.cpus") && e.contains("CPU 1024"),
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
    fn mode_parses_octal() {
        assert_eq!(parse_mode("0660"), Some(0o660));
        assert_eq!(parse_mode("0o600"), Some(0o600));
        assert_eq!(parse_mode("999"), None);
        assert_eq!(parse_mode("7777"), None);
    }
}
