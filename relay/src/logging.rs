//! Log output in the journal's conventions when mcrd runs under systemd.
//!
//! systemd connects a service's stderr to the journal and says so in `JOURNAL_STREAM`
//! (`DEVICE:INODE` of that stream). Lines written there may start with a syslog priority
//! (`<3>` error ... `<7>` debug, sd-daemon(3)) and need no timestamp, since the journal adds
//! its own, and no colours. [`JOURNAL_FORMAT`] writes them so; elsewhere mcrd keeps the usual
//! `tracing` lines, with colours only when stderr is a terminal. With `log_format = "json"`
//! each line is one JSON object (tracing-subscriber's JSON format), behind the same priority
//! prefix in the journal so that `journalctl -p` still filters by level. [`layer`] picks one.

use std::fmt;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

use crate::config::LogFormat;

/// The formatting layer for `format`, written to `writer`: journal conventions when
/// `journal` (see [`stderr_is_journal`]), colours only when `ansi`.
pub fn layer<S, W>(
    format: LogFormat,
    journal: bool,
    ansi: bool,
    writer: W,
) -> Box<dyn Layer<S> + Send + Sync>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let base = tracing_subscriber::fmt::layer().with_writer(writer);
    match (format, journal) {
        (LogFormat::Text, true) => base.with_ansi(false).event_format(JOURNAL_FORMAT).boxed(),
        (LogFormat::Text, false) => base.with_ansi(ansi).with_target(false).boxed(),
        (LogFormat::Json, journal) => {
            let json = base.json().flatten_event(false).with_current_span(false);
            if journal {
                json.map_event_format(PriorityPrefixed).boxed()
            } else {
                json.boxed()
            }
        }
    }
}

/// Another format's line behind the journal's `<PRIORITY>` prefix.
pub struct PriorityPrefixed<F>(F);

impl<S, N, F> FormatEvent<S, N> for PriorityPrefixed<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        write!(writer, "<{}>", priority(*event.metadata().level()))?;
        self.0.format_event(ctx, writer, event)
    }
}

/// The syslog priority of a `tracing` level (the journal shows and filters by it).
pub fn priority(level: Level) -> u8 {
    match level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

/// Whether stderr is the journal stream systemd named in `JOURNAL_STREAM`.
pub fn stderr_is_journal() -> bool {
    let Some(value) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    // fstat of our stderr, through a duplicate of the descriptor (closed on return).
    let Ok(st) = std::io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .and_then(|fd| std::fs::File::from(fd).metadata())
    else {
        return false;
    };
    names_stream(&value.to_string_lossy(), st.dev(), st.ino())
}

/// Whether a `JOURNAL_STREAM` value (`DEVICE:INODE`, decimal) names this device and inode.
fn names_stream(value: &str, dev: u64, ino: u64) -> bool {
    let Some((d, i)) = value.split_once(':') else {
        return false;
    };
    d.parse() == Ok(dev) && i.parse() == Ok(ino)
}

/// One line per event: `<PRIORITY>message key=value ...`, without time, level or colour.
pub type JournalFormat = PriorityPrefixed<FieldsLine>;

/// The journal's text format: [`FieldsLine`] behind the priority prefix.
pub const JOURNAL_FORMAT: JournalFormat = PriorityPrefixed(FieldsLine);

/// An event's message and fields, then a newline: nothing else.
pub struct FieldsLine;

impl<S, N> FormatEvent<S, N> for FieldsLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::fmt::MakeWriter;
    use tracing_subscriber::prelude::*;

    use super::*;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Buffer {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'a self) -> Buffer {
            self.clone()
        }
    }

    #[test]
    fn journal_lines_carry_the_priority_and_no_time_or_colour() {
        let buf = Buffer::default();
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .with_writer(buf.clone())
                .with_ansi(false)
                .event_format(JOURNAL_FORMAT),
        );
        tracing::subscriber::with_default(subscriber, || {
            tracing::error!("control socket gone");
            tracing::warn!(errno = "ENOBUFS", count = 3, "send errors");
            tracing::info!("mcrd ready");
            tracing::debug!("detail");
        });
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert_eq!(
            text,
            "<3>control socket gone\n<4>send errors errno=\"ENOBUFS\" count=3\n<6>mcrd ready\n<7>detail\n"
        );
    }

    fn lines_of(format: LogFormat, journal: bool) -> Vec<String> {
        let buf = Buffer::default();
        let subscriber =
            tracing_subscriber::registry().with(layer(format, journal, false, buf.clone()));
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(uid = 1000, action = "config reload", "control: refused");
            tracing::info!("mcrd ready");
        });
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        text.lines().map(str::to_string).collect()
    }

    #[test]
    fn json_lines_are_one_object_each_with_level_message_and_fields() {
        let lines = lines_of(LogFormat::Json, false);
        assert_eq!(lines.len(), 2, "{lines:?}");
        let first: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(first["level"], "WARN");
        assert_eq!(first["fields"]["message"], "control: refused");
        assert_eq!(first["fields"]["uid"], 1000);
        assert_eq!(first["fields"]["action"], "config reload");
        assert!(first["timestamp"].is_string(), "{first}");
        let second: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
        assert_eq!(second["level"], "INFO");
    }

    #[test]
    fn json_lines_in_the_journal_keep_the_priority_prefix() {
        let lines = lines_of(LogFormat::Json, true);
        let json = lines[0]
            .strip_prefix("<4>")
            .expect("warning priority first");
        let first: serde_json::Value = serde_json::from_str(json).unwrap();
        assert_eq!(first["fields"]["message"], "control: refused");
        assert!(lines[1].starts_with("<6>{"), "{lines:?}");
    }

    #[test]
    fn text_lines_say_the_level_and_the_fields() {
        let lines = lines_of(LogFormat::Text, false);
        assert!(lines[0].contains("WARN"), "{lines:?}");
        assert!(
            lines[0].contains("control: refused uid=1000 action=\"config reload\""),
            "{lines:?}"
        );
        assert_eq!(lines_of(LogFormat::Text, true)[1], "<6>mcrd ready");
    }

    #[test]
    fn journal_stream_must_name_stderr() {
        assert!(names_stream("64769:123456", 64769, 123456));
        assert!(!names_stream("64769:123457", 64769, 123456));
        assert!(!names_stream("nonsense", 1, 2));
        assert_eq!(priority(Level::TRACE), 7);
    }
}
