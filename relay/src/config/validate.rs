//! The checks every rule passes, wherever it comes from: the config file ([`super::parse`]) and
//! the control socket (`mcrctl rules add`, through [`crate::rules::RuleSet::add`]) both call
//! [`validate_rule`], so a rule the file refuses is refused over the socket too, with the same
//! words.
//!
//! Names and interface names end up in logs, replies and terminals: they are limited to
//! characters that cannot start a new log line or a terminal escape sequence.

use std::fmt;
use std::net::IpAddr;

use super::spec::{OutputSpec, RuleSpec, MAX_DSCP};

/// Longest rule name, in characters.
pub const MAX_RULE_NAME: usize = 64;

/// A field of a rule, for error messages (`name`, `outputs[1].dest`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleField {
    Name,
    Input,
    Group,
    Port,
    Source,
    Outputs,
    Output(usize, OutputField),
}

/// A field of one output of a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputField {
    Dest,
    Port,
    Interface,
    Ttl,
    Dscp,
    Source,
    SourcePort,
}

impl fmt::Display for RuleField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuleField::Name => f.write_str("name"),
            RuleField::Input => f.write_str("input"),
            RuleField::Group => f.write_str("group"),
            RuleField::Port => f.write_str("port"),
            RuleField::Source => f.write_str("source"),
            RuleField::Outputs => f.write_str("outputs"),
            RuleField::Output(i, o) => {
                let name = match o {
                    OutputField::Dest => "dest",
                    OutputField::Port => "port",
                    OutputField::Interface => "interface",
                    OutputField::Ttl => "ttl",
                    OutputField::Dscp => "dscp",
                    OutputField::Source => "source",
                    OutputField::SourcePort => "source_port",
                };
                write!(f, "outputs[{i}].{name}")
            }
        }
    }
}

/// A rule field that fails validation, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct SpecError {
    pub field: RuleField,
    pub message: String,
}

fn fail(field: RuleField, message: String) -> Result<(), SpecError> {
    Err(SpecError { field, message })
}

/// Checks a whole rule; the first field that fails is reported.
pub fn validate_rule(spec: &RuleSpec) -> Result<(), SpecError> {
    // The input first: the default name is made from it.
    if let Err(m) = validate_interface_name(&spec.input) {
        return fail(RuleField::Input, m);
    }
    if let Err(m) = validate_rule_name(&spec.name) {
        return fail(RuleField::Name, m);
    }
    if spec.group.is_unspecified() {
        return fail(
            RuleField::Group,
            format!("{} is the destination of no datagram", spec.group),
        );
    }
    if let Err(m) = written_in_its_own_family(spec.group) {
        return fail(RuleField::Group, m);
    }
    if spec.port == 0 {
        return fail(RuleField::Port, "port 0 matches nothing".into());
    }
    if let Some(source) = spec.source {
        if source.is_unspecified() {
            return fail(
                RuleField::Source,
                format!("{source} is the source of no datagram (leave `source` out to match any)"),
            );
        }
        if let Err(m) = written_in_its_own_family(source) {
            return fail(RuleField::Source, m);
        }
        if source.is_ipv6() != spec.group.is_ipv6() {
            return fail(
                RuleField::Source,
                format!(
                    "{source} is {} but the group {} is {}: a datagram's addresses are of one family",
                    family(source),
                    spec.group,
                    family(spec.group)
                ),
            );
        }
    }
    if spec.outputs.is_empty() {
        return fail(
            RuleField::Outputs,
            "a rule needs at least one output".into(),
        );
    }
    for (i, o) in spec.outputs.iter().enumerate() {
        if let Err((field, m)) = validate_output(o) {
            return fail(RuleField::Output(i, field), m);
        }
    }
    Ok(())
}

fn validate_output(o: &OutputSpec) -> Result<(), (OutputField, String)> {
    if !usable_destination(o.dest) {
        return Err((
            OutputField::Dest,
            format!("{} cannot be a destination", o.dest),
        ));
    }
    if o.port == 0 {
        return Err((OutputField::Port, "port 0 cannot be sent to".into()));
    }
    validate_interface_name(&o.interface).map_err(|m| (OutputField::Interface, m))?;
    if o.ttl == 0 {
        return Err((
            OutputField::Ttl,
            "TTL 0 never leaves this host; use 1 to 255".into(),
        ));
    }
    if let Some(dscp) = o.dscp.filter(|&d| d > MAX_DSCP) {
        return Err((
            OutputField::Dscp,
            format!("{dscp} is not a DSCP (0 to {MAX_DSCP})"),
        ));
    }
    if let Err(m) = written_in_its_own_family(o.dest) {
        return Err((OutputField::Dest, m));
    }
    if let Some(source) = o.source.filter(|s| {
        s.is_unspecified() || s.is_multicast() || matches!(s, IpAddr::V4(v4) if v4.is_broadcast())
    }) {
        return Err((
            OutputField::Source,
            format!(
                "{source} cannot be a source address (leave `source` out for the interface's own)"
            ),
        ));
    }
    if let Some(source) = o.source.filter(|s| s.is_ipv6() != o.dest.is_ipv6()) {
        return Err((
            OutputField::Source,
            format!(
                "{source} is {} but the destination {} is {}: a datagram is sent from an address of its own family",
                family(source),
                o.dest,
                family(o.dest)
            ),
        ));
    }
    if o.source_port == Some(0) {
        return Err((
            OutputField::SourcePort,
            "port 0 is not a port (leave `source_port` out for an ephemeral one)".into(),
        ));
    }
    Ok(())
}

fn usable_destination(a: IpAddr) -> bool {
    match a {
        IpAddr::V4(v4) => !v4.is_unspecified() && !v4.is_broadcast(),
        IpAddr::V6(v6) => !v6.is_unspecified(),
    }
}

/// `"IPv4"` or `"IPv6"`, for messages.
fn family(a: IpAddr) -> &'static str {
    if a.is_ipv6() {
        "IPv6"
    } else {
        "IPv4"
    }
}

/// Refuses an IPv4 address written as IPv6 (`::ffff:239.1.1.1`): no IPv6 datagram carries
/// one as its address on the wire, so a rule with it would match nothing.
fn written_in_its_own_family(a: IpAddr) -> Result<(), String> {
    match a {
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() => Err(format!(
            "{v6} is an IPv4 address written as IPv6; write it as {}",
            v6.to_ipv4_mapped()
                .map_or_else(String::new, |v4| v4.to_string())
        )),
        _ => Ok(()),
    }
}

/// A rule name: 1 to 64 characters of `A-Z a-z 0-9 . _ : -`.
pub fn validate_rule_name(name: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-');
    if name.is_empty() || name.chars().count() > MAX_RULE_NAME {
        return Err(format!(
            "a rule name must be 1 to {MAX_RULE_NAME} characters (this one has {})",
            name.chars().count()
        ));
    }
    if let Some(bad) = name.chars().find(|&c| !allowed(c)) {
        return Err(format!(
            "rule name {:?} contains {:?}: a rule name may hold only letters, digits and . _ : -",
            name, bad
        ));
    }
    Ok(())
}

/// An interface name as the kernel accepts it (`dev_valid_name`: at most 15 bytes, not `.` or
/// `..`, no `/`, `:` or white space), and without control characters.
pub fn validate_interface_name(name: &str) -> Result<(), String> {
    let bad = |c: char| c == '/' || c == ':' || c.is_whitespace() || c.is_control();
    if name.is_empty() || name.len() > 15 || name == "." || name == ".." || name.contains(bad) {
        return Err(format!("{name:?} is not a valid interface name"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(f: impl FnOnce(&mut RuleSpec)) -> Result<(), SpecError> {
        let mut r = RuleSpec::on_lo("a", [239, 1, 1, 1], 5000);
        r.outputs[0].ttl = 4;
        f(&mut r);
        validate_rule(&r)
    }

    #[test]
    fn a_good_rule_passes() {
        assert_eq!(check(|_| {}), Ok(()));
        assert_eq!(check(|r| r.name = "cam-1.main_feed:a".into()), Ok(()));
        assert_eq!(check(|r| r.name = "x".repeat(64)), Ok(()));
    }

    #[test]
    fn names_with_control_characters_or_odd_lengths_are_refused() {
        for name in [
            "a\nb",
            "evil\u{1b}[31mred",
            "",
            "sp ace",
            "quo\"te",
            &"x".repeat(65),
        ] {
            let e = check(|r| r.name = name.into()).unwrap_err();
            assert_eq!(e.field, RuleField::Name, "{name:?}");
            assert!(!e.to_string().contains('\n'), "{e}");
            assert!(!e.to_string().contains('\u{1b}'), "{e}");
        }
    }

    #[test]
    fn fields_are_named_in_errors() {
        let e = check(|r| r.outputs[0].dest = std::net::Ipv4Addr::UNSPECIFIED.into()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "outputs[0].dest: 0.0.0.0 cannot be a destination"
        );
        let e = check(|r| r.outputs[0].ttl = 0).unwrap_err();
        assert_eq!(e.field, RuleField::Output(0, OutputField::Ttl));
        let e = check(|r| r.outputs[0].interface = "eth\u{1b}0".into()).unwrap_err();
        assert_eq!(e.field, RuleField::Output(0, OutputField::Interface));
        let e = check(|r| r.input = "a/b".into()).unwrap_err();
        assert_eq!(e.field, RuleField::Input);
        let e = check(|r| r.group = std::net::Ipv4Addr::UNSPECIFIED.into()).unwrap_err();
        assert_eq!(e.field, RuleField::Group);
        let e = check(|r| r.source = Some(std::net::Ipv4Addr::UNSPECIFIED.into())).unwrap_err();
        assert_eq!(e.field, RuleField::Source);
        let e = check(|r| r.outputs.clear()).unwrap_err();
        assert_eq!(e.field, RuleField::Outputs);
        let e = check(|r| r.port = 0).unwrap_err();
        assert_eq!(e.field, RuleField::Port);
        let e = check(|r| r.outputs[0].dscp = Some(64)).unwrap_err();
        assert_eq!(e.field, RuleField::Output(0, OutputField::Dscp));
        let e = check(|r| r.outputs[0].source_port = Some(0)).unwrap_err();
        assert_eq!(
            e.to_string().split(':').next(),
            Some("outputs[0].source_port")
        );
        let e = check(|r| r.outputs[0].source = Some([239, 1, 1, 1].into())).unwrap_err();
        assert_eq!(e.field, RuleField::Output(0, OutputField::Source));
        assert_eq!(check(|r| r.outputs[0].dscp = Some(46)), Ok(()));
    }
}
