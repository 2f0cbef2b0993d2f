//! The control protocol: one JSON request per line, one JSON response per line.
//!
//! ```text
//! -> {"version":1,"request":"stats"}
//! <- {"version":1,"ok":true,"result":{"stats":{...StatsReport...}}}
//! -> {"version":1,"request":{"rules_remove":{"name":"cam1"}}}
//! <- {"version":1,"ok":false,"error":{"kind":"not_found","message":"no rule named `cam1`"}}
//! ```
//! Documented in `relay/README.md` ("Control protocol"). Unknown fields are refused, so a
//! typo is an error reply rather than a silently ignored option.

use serde::{Deserialize, Serialize};

use crate::config::RuleSpec;
use crate::stats::report::StatsReport;

/// Protocol version spoken by this build.
pub const PROTOCOL_VERSION: u32 = 1;
/// Largest request line accepted, bytes.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    pub version: u32,
    pub request: Command,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Command {
    Ping,
    Stats,
    RulesList,
    /// `rules_list` narrowed: the rule named `flow`, or up to `limit` rules in name order
    /// from the first named after `after`. Old clients keep sending `rules_list`, which
    /// still answers every rule.
    RulesPage {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        flow: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
    },
    /// `stats` with only the flow of rule `flow`, or the first `limit` flows in name order.
    StatsPage {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        flow: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
    },
    RulesAdd {
        rule: RuleSpec,
    },
    RulesRemove {
        name: String,
    },
    /// Re-read the config file the daemon was started with and apply it atomically.
    ConfigReload,
    /// Set the log filter (`info`, `debug`, `relay=trace`, ...).
    LogLevel {
        level: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Response {
    pub version: u32,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Reply>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorReply>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Reply {
    Pong { pid: u32, version: String },
    Stats(Box<StatsReport>),
    Rules(Vec<ListedRule>),
    Done { message: String },
}

/// One rule in a `rules_list` reply: as the user wrote it, and the path that forwards it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListedRule {
    pub rule: RuleSpec,
    /// `"kernel"` (the fast path's program), `"userspace"` (the worker threads) or
    /// `"waiting"` (neither: the input is gone or another mcrd's; see `path_reason`).
    pub path: String,
    /// Why the rule is not on the kernel path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorReply {
    pub kind: ErrorKind,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Not JSON, not a known command, a wrong field.
    BadRequest,
    UnsupportedVersion,
    TooLarge,
    Timeout,
    /// The request was understood but refused (duplicate rule, unknown interface, bad config).
    Rejected,
    NotFound,
    Busy,
    Internal,
}

impl Response {
    pub fn ok(result: Reply) -> Self {
        Self {
            version: PROTOCOL_VERSION,
            ok: true,
            result: Some(result),
            error: None,
        }
    }

    pub fn error(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            version: PROTOCOL_VERSION,
            ok: false,
            result: None,
            error: Some(ErrorReply {
                kind,
                message: message.into(),
            }),
        }
    }
}

impl Request {
    pub fn new(request: Command) -> Self {
        Self {
            version: PROTOCOL_VERSION,
            request,
        }
    }
}

/// Parses one request line; the error is the reply to send.
pub fn parse_request(line: &[u8]) -> Result<Request, Response> {
    if line.len() > MAX_REQUEST_BYTES {
        return Err(Response::error(
            ErrorKind::TooLarge,
            format!(
                "request of {} bytes exceeds the limit of {MAX_REQUEST_BYTES}",
                line.len()
            ),
        ));
    }
    // Read the version first so an old or new client gets a precise answer.
    #[derive(Deserialize)]
    struct VersionOnly {
        version: Option<u32>,
    }
    match serde_json::from_slice::<VersionOnly>(line) {
        Ok(VersionOnly { version: Some(v) }) if v != PROTOCOL_VERSION => {
            return Err(Response::error(
                ErrorKind::UnsupportedVersion,
                format!(
                    "protocol version {v} is not supported; this daemon speaks {PROTOCOL_VERSION}"
                ),
            ))
        }
        Ok(VersionOnly { version: None }) => {
            return Err(Response::error(
                ErrorKind::BadRequest,
                "missing field `version`",
            ))
        }
        _ => {}
    }
    serde_json::from_slice(line)
        .map_err(|e| Response::error(ErrorKind::BadRequest, format!("malformed request: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The requests as relay/README.md ("Control protocol") documents them for other clients:
    /// the daemon must keep reading exactly these lines, and `mcrctl` must keep sending them.
    #[test]
    fn the_documented_request_lines_parse_to_their_commands() {
        let rule = RuleSpec {
            name: "a".into(),
            input: "eth0".into(),
            group: "239.1.1.1".parse().unwrap(),
            port: 5000,
            source: None,
            outputs: vec![crate::config::OutputSpec::new(
                "239.2.2.2".parse().unwrap(),
                6000,
                "eth1",
                16,
            )],
            monitor: None,
            min_ttl: None,
        };
        let documented = [
            (r#"{"version":1,"request":"ping"}"#, Command::Ping),
            (r#"{"version":1,"request":"stats"}"#, Command::Stats),
            (
                r#"{"version":1,"request":"rules_list"}"#,
                Command::RulesList,
            ),
            (
                r#"{"version":1,"request":{"rules_add":{"rule":{"name":"a","input":"eth0","group":"239.1.1.1","port":5000,"outputs":[{"dest":"239.2.2.2","port":6000,"interface":"eth1","ttl":16}]}}}}"#,
                Command::RulesAdd { rule },
            ),
            (
                r#"{"version":1,"request":{"rules_remove":{"name":"a"}}}"#,
                Command::RulesRemove { name: "a".into() },
            ),
            (
                r#"{"version":1,"request":{"rules_page":{"flow":"a"}}}"#,
                Command::RulesPage {
                    flow: Some("a".into()),
                    after: None,
                    limit: None,
                },
            ),
            (
                r#"{"version":1,"request":{"rules_page":{"after":"a","limit":10}}}"#,
                Command::RulesPage {
                    flow: None,
                    after: Some("a".into()),
                    limit: Some(10),
                },
            ),
            (
                r#"{"version":1,"request":{"stats_page":{"limit":3}}}"#,
                Command::StatsPage {
                    flow: None,
                    limit: Some(3),
                },
            ),
            (
                r#"{"version":1,"request":"config_reload"}"#,
                Command::ConfigReload,
            ),
            (
                r#"{"version":1,"request":{"log_level":{"level":"debug"}}}"#,
                Command::LogLevel {
                    level: "debug".into(),
                },
            ),
        ];
        for (line, command) in documented {
            assert_eq!(parse_request(line.as_bytes()).unwrap().request, command);
            assert_eq!(
                serde_json::to_string(&Request::new(command)).unwrap(),
                line,
                "what mcrctl sends"
            );
        }
    }

    fn command() -> impl proptest::strategy::Strategy<Value = Command> {
        use proptest::prelude::*;
        prop_oneof![
            Just(Command::Ping),
            Just(Command::Stats),
            Just(Command::RulesList),
            Just(Command::ConfigReload),
            (
                proptest::option::of(any::<String>()),
                proptest::option::of(any::<String>()),
                proptest::option::of(any::<u32>())
            )
                .prop_map(|(flow, after, limit)| Command::RulesPage {
                    flow,
                    after,
                    limit
                }),
            (
                proptest::option::of(any::<String>()),
                proptest::option::of(any::<u32>())
            )
                .prop_map(|(flow, limit)| Command::StatsPage { flow, limit }),
            crate::config::arb::rule().prop_map(|rule| Command::RulesAdd { rule }),
            any::<String>().prop_map(|name| Command::RulesRemove { name }),
            any::<String>().prop_map(|level| Command::LogLevel { level }),
        ]
    }

    proptest::proptest! {
        /// Whatever `mcrctl` serializes, the daemon parses back to the same request.
        #[test]
        fn any_request_round_trips(cmd in command()) {
            let line = serde_json::to_vec(&Request::new(cmd.clone())).unwrap();
            proptest::prop_assert!(!line.contains(&b'\n'), "one line");
            proptest::prop_assert_eq!(parse_request(&line).unwrap().request, cmd);
        }

        /// Replies (errors with any message, rule lists, done messages) parse back whole.
        #[test]
        fn replies_round_trip(
            message in proptest::prelude::any::<String>(),
            rules in proptest::collection::vec(crate::config::arb::rule(), 0..3),
        ) {
            for r in [
                Response::error(ErrorKind::Rejected, message.clone()),
                Response::ok(Reply::Done { message: message.clone() }),
                Response::ok(Reply::Rules(
                    rules
                        .iter()
                        .map(|rule| ListedRule {
                            rule: rule.clone(),
                            path: "userspace".into(),
                            path_reason: Some(message.clone()),
                        })
                        .collect(),
                )),
            ] {
                let text = serde_json::to_string(&r).unwrap();
                proptest::prop_assert!(!text.contains('\n'), "one line");
                let back: Response = serde_json::from_str(&text).unwrap();
                proptest::prop_assert_eq!(back, r);
            }
        }
    }

    #[test]
    fn garbage_gets_a_bad_request_reply() {
        for bad in [
            &b"not json"[..],
            b"{}",
            b"{\"version\":1}",
            b"{\"version\":1,\"request\":\"explode\"}",
            b"{\"version\":1,\"request\":\"stats\",\"extra\":1}",
            b"\xff\xfe",
        ] {
            let e = parse_request(bad).unwrap_err();
            assert_eq!(
                e.error.unwrap().kind,
                ErrorKind::BadRequest,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn other_versions_and_huge_requests_are_refused_precisely() {
        let e = parse_request(br#"{"version":2,"request":"stats"}"#).unwrap_err();
        assert_eq!(e.error.unwrap().kind, ErrorKind::UnsupportedVersion);
        let big = vec![b' '; MAX_REQUEST_BYTES + 1];
        assert_eq!(
            parse_request(&big).unwrap_err().error.unwrap().kind,
            ErrorKind::TooLarge
        );
    }
}
