//! The nightly history as a columnar dataset: one row per run × hop × metric.
//!
//! A history is a directory of Parquet files (`NNNNNN.parquet`), one per `history append`
//! (one night), so appending never rewrites what is there. `history show` reads the parts one
//! at a time with polars' eager Parquet reader, keeps the rows the filters (metric, hop, relay,
//! rate, date range) select, and aggregates the repeats of one day (count, median, 10th and 90th
//! percentiles by linear interpolation, min, max) in plain Rust.
//!
//! Columns (see `analyzer/README.md`): `run`, `date` (the record's, may be null), `day` (its first
//! ten characters, `YYYY-MM-DD`, or `undated`), `source` (the record's file, `history.jsonl:3`),
//! `target_pps` (`configuration.generator.target_pps`, null if not recorded), `hop` (position,
//! 1-based; 0 for whole-run metrics), `hop_name`, `relay` (the hop's implementation; empty when
//! not recorded or not a hop metric), `metric` (the metric key without the hop: `tx_pps`,
//! `receiver.loss_pct`), `label`, `unit`, `value`, `origin`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use polars::prelude::*;

use crate::error::{Error, Result};
use crate::metrics::{self, Origin, Unit};
use crate::record::RunRecord;

/// File extension of one appended part of a history.
pub const PART_EXT: &str = "parquet";
/// Extension of the file beside each part (`000001.parquet.crc32`) that holds its checksum:
/// `crc32 HEX LENGTH`. Written before the part, so a part whose writing was cut short fails
/// its check instead of being read.
pub const SUM_EXT: &str = "crc32";

/// The rows of one record.
#[derive(Default)]
struct Rows {
    run_id: Vec<String>,
    run: Vec<String>,
    date: Vec<Option<String>>,
    day: Vec<String>,
    source: Vec<String>,
    target_pps: Vec<Option<f64>>,
    hop: Vec<u32>,
    hop_name: Vec<String>,
    relay: Vec<String>,
    metric: Vec<String>,
    label: Vec<String>,
    unit: Vec<&'static str>,
    value: Vec<f64>,
    origin: Vec<&'static str>,
}

/// How a unit is named in the dataset.
pub fn unit_name(u: Unit) -> &'static str {
    match u {
        Unit::Pps => "pps",
        Unit::Percent => "percent",
        Unit::NsPerPacket => "ns_per_packet",
        Unit::Nanos => "ns",
        Unit::Packets => "packets",
    }
}

fn unit_from_name(s: &str) -> Unit {
    match s {
        "percent" => Unit::Percent,
        "ns_per_packet" => Unit::NsPerPacket,
        "ns" => Unit::Nanos,
        "packets" => Unit::Packets,
        _ => Unit::Pps,
    }
}

/// `hop3.tx_pps` -> (3, "tx_pps"); `receiver.pps` -> (0, "receiver.pps").
fn split_key(key: &str) -> (u32, String) {
    if let Some((section, rest)) = key.split_once('.') {
        if let Some(n) = section.strip_prefix("hop").and_then(|n| n.parse().ok()) {
            return (n, rest.to_string());
        }
    }
    (0, key.to_string())
}

impl Rows {
    /// Adds a record's rows; a metric that is not a finite number is refused with the record
    /// and the metric (a history's statistics would silently turn NaN).
    fn push(&mut self, source: &str, rec: &RunRecord) -> Result<()> {
        let values = metrics::metrics(rec);
        if let Some(v) = values.iter().find(|v| !v.value.is_finite()) {
            return Err(Error::field(
                Path::new(source),
                v.metric.key.as_str(),
                format!(
                    "is {}: a history holds finite numbers only (record \"{}\")",
                    v.value, rec.name
                ),
            ));
        }
        let id = run_id(rec);
        let day = rec
            .date
            .as_deref()
            .and_then(|d| d.get(..10))
            .unwrap_or("undated")
            .to_string();
        let target = rec
            .configuration
            .generator
            .get("target_pps")
            .and_then(serde_json::Value::as_f64);
        for v in values {
            let (hop, metric) = split_key(&v.metric.key);
            let h = hop.checked_sub(1).and_then(|i| rec.hops.get(i as usize));
            self.run_id.push(id.clone());
            self.run.push(rec.name.clone());
            self.date.push(rec.date.clone());
            self.day.push(day.clone());
            self.source.push(source.to_string());
            self.target_pps.push(target);
            self.hop.push(hop);
            self.hop_name
                .push(h.map(|h| h.name.clone()).unwrap_or_default());
            self.relay
                .push(h.and_then(|h| h.relay.clone()).unwrap_or_default());
            self.metric.push(metric);
            self.label.push(v.metric.label.clone());
            self.unit.push(unit_name(v.metric.unit));
            self.value.push(v.value);
            self.origin.push(match v.origin {
                Origin::Computed { .. } => "computed",
                Origin::Reported => "reported",
                Origin::Measured => "measured",
            });
        }
        Ok(())
    }

    fn frame(self) -> PolarsResult<DataFrame> {
        DataFrame::new_infer_height(vec![
            Column::new("run_id".into(), self.run_id),
            Column::new("run".into(), self.run),
            Column::new("date".into(), self.date),
            Column::new("day".into(), self.day),
            Column::new("source".into(), self.source),
            Column::new("target_pps".into(), self.target_pps),
            Column::new("hop".into(), self.hop),
            Column::new("hop_name".into(), self.hop_name),
            Column::new("relay".into(), self.relay),
            Column::new("metric".into(), self.metric),
            Column::new("label".into(), self.label),
            Column::new("unit".into(), self.unit),
            Column::new("value".into(), self.value),
            Column::new("origin".into(), self.origin),
        ])
    }
}

/// A run's identity in a history: its name and date (`night 3 rep 1@2026-11-03T01:00:00Z`),
/// which a nightly job's repeats do not share; an undated record adds a checksum of its whole
/// content (`name#1a2b3c4d`), so that only the same record is the same run.
pub fn run_id(rec: &RunRecord) -> String {
    match &rec.date {
        Some(d) => format!("{}@{d}", rec.name),
        None => {
            let json = serde_json::to_string(rec).expect("records serialize");
            format!(
                "{}#{:08x}",
                rec.name,
                crate::checksum::crc32(json.as_bytes())
            )
        }
    }
}

/// The number of a part or checksum file (`000012.parquet`, `000012.parquet.crc32` -> 12).
fn part_number(f: &Path) -> Option<u64> {
    let name = f.file_name()?.to_str()?;
    let stem = name
        .strip_suffix(&format!(".{PART_EXT}.{SUM_EXT}"))
        .or_else(|| name.strip_suffix(&format!(".{PART_EXT}")))?;
    stem.parse().ok()
}

/// The parts of a history directory, in append order.
fn parts(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|f| f.extension().is_some_and(|x| x == PART_EXT))
        .collect();
    files.sort();
    Ok(files)
}

/// The checksum file of `part`.
fn sum_path(part: &Path) -> PathBuf {
    let mut name = part.as_os_str().to_owned();
    name.push(format!(".{SUM_EXT}"));
    PathBuf::from(name)
}

/// The parts of `dir` written before parts had checksums (no `.crc32` beside them): read, but
/// not verified. `history show` names them.
pub fn unverified_parts(dir: &Path) -> Result<Vec<PathBuf>> {
    Ok(parts(dir)?
        .into_iter()
        .filter(|p| !sum_path(p).exists())
        .collect())
}

/// Reads a part's bytes and checks them against its checksum file; every error names the part.
fn read_part(part: &Path) -> Result<Vec<u8>> {
    let bytes = std::fs::read(part).map_err(|e| Error::io(part, e))?;
    let sum = sum_path(part);
    let text = match std::fs::read_to_string(&sum) {
        Ok(t) => t,
        // Written before checksums: read as it is (see `unverified_parts`).
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(bytes),
        Err(e) => {
            return Err(Error::format(
                part,
                format!("its checksum file {} cannot be read: {e}", sum.display()),
            ))
        }
    };
    let expected = text
        .trim()
        .strip_prefix("crc32 ")
        .and_then(|r| r.split_once(' '))
        .and_then(|(crc, len)| Some((u32::from_str_radix(crc, 16).ok()?, len.parse::<u64>().ok()?)))
        .ok_or_else(|| {
            Error::format(
                part,
                format!(
                    "its checksum file {} is corrupt (expected `crc32 HEX LENGTH`, found {:?})",
                    sum.display(),
                    text.trim()
                ),
            )
        })?;
    let found = (crate::checksum::crc32(&bytes), bytes.len() as u64);
    if found != expected {
        return Err(Error::format(
            part,
            format!(
                "corrupt: {} bytes with CRC-32 {:08x}, but {} says {} bytes with {:08x}; restore \
                 the part from a copy, or move it and its checksum out of the history to read \
                 the rest",
                found.1,
                found.0,
                sum.display(),
                expected.1,
                expected.0
            ),
        ));
    }
    Ok(bytes)
}

/// The run ids already in the history (a part written before run ids: its dated runs).
fn known_runs(dir: &Path) -> Result<std::collections::HashSet<String>> {
    let mut ids = std::collections::HashSet::new();
    if !dir.exists() {
        return Ok(ids);
    }
    for part in parts(dir)? {
        let df = read_frame(&part)?;
        let bad =
            |e: PolarsError| Error::format(&part, format!("not a readable history part: {e}"));
        if let Ok(c) = df.column("run_id") {
            ids.extend(c.str().map_err(bad)?.iter().flatten().map(str::to_string));
        } else {
            let run = df
                .column("run")
                .and_then(|c| c.str().cloned())
                .map_err(bad)?;
            let date = df
                .column("date")
                .and_then(|c| c.str().cloned())
                .map_err(bad)?;
            for (r, d) in run.iter().zip(date.iter()) {
                if let (Some(r), Some(d)) = (r, d) {
                    ids.insert(format!("{r}@{d}"));
                }
            }
        }
    }
    Ok(ids)
}

/// What `history append` did.
#[derive(Debug, Clone, PartialEq)]
pub struct Appended {
    /// The new part; `None` when every record was already in the history.
    pub part: Option<PathBuf>,
    pub rows: usize,
    pub records: usize,
    /// Records not appended because their run is in the history already (or earlier in the
    /// same append): their run ids.
    pub skipped: Vec<String>,
}

/// Appends the records at `inputs` (records, directories, JSON Lines) to the history in `dir`
/// (created if missing) as one new part and its checksum. A record whose run id ([`run_id`]) is
/// in the history already is skipped and named, so appending a night twice counts it once.
pub fn append(dir: &Path, inputs: &[PathBuf]) -> Result<Appended> {
    let mut known = known_runs(dir)?;
    let mut rows = Rows::default();
    let (mut records, mut seen) = (0usize, 0usize);
    let mut skipped = Vec::new();
    for p in inputs {
        RunRecord::for_each_in(p, |name, rec| {
            seen += 1;
            let id = run_id(&rec);
            if !known.insert(id.clone()) {
                skipped.push(id);
                return Ok(());
            }
            rows.push(&name, &rec)?;
            records += 1;
            Ok(())
        })?;
    }
    if seen == 0 {
        return Err(Error::Usage("history append: no record given".into()));
    }
    if records == 0 {
        return Ok(Appended {
            part: None,
            rows: 0,
            records,
            skipped,
        });
    }
    let mut df = rows.frame()?;
    // Uncompressed: no codec to build, and a night's part is a few kilobytes.
    let mut bytes = Vec::new();
    ParquetWriter::new(&mut bytes)
        .with_compression(ParquetCompression::Uncompressed)
        .finish(&mut df)?;
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    let next = entries
        .iter()
        .filter_map(|f| part_number(f))
        .max()
        .map_or(1, |n| n + 1);
    let path = dir.join(format!("{next:06}.{PART_EXT}"));
    // create_new: never overwrite a part (or checksum) another append wrote meanwhile. The
    // checksum goes first: a part cut short by a crash then fails its check.
    let write_new = |p: &Path, data: &[u8]| -> Result<()> {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(p)
            .map_err(|e| Error::io(p, e))?;
        f.write_all(data)
            .and_then(|()| f.sync_all())
            .map_err(|e| Error::io(p, e))
    };
    let sum = format!(
        "crc32 {:08x} {}\n",
        crate::checksum::crc32(&bytes),
        bytes.len()
    );
    write_new(&sum_path(&path), sum.as_bytes())?;
    write_new(&path, &bytes)?;
    Ok(Appended {
        part: Some(path),
        rows: df.height(),
        records,
        skipped,
    })
}

/// A part as a frame, after its checksum is verified.
fn read_frame(part: &Path) -> Result<DataFrame> {
    let bytes = read_part(part)?;
    ParquetReader::new(std::io::Cursor::new(bytes))
        .finish()
        .map_err(|e| Error::format(part, format!("not a readable history part: {e}")))
}

/// Whether `path` is a history directory: a directory that holds Parquet parts.
pub fn is_history(path: &Path) -> bool {
    path.is_dir() && parts(path).is_ok_and(|p| !p.is_empty())
}

/// One run of a history, as `trend` reads it: the record's file, its label (`name (date)`),
/// the name and implementation of its hop at each position, and its metric values.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryRun {
    pub source: String,
    pub label: String,
    pub hops: Vec<(String, Option<String>)>,
    pub values: Vec<(metrics::Metric, f64)>,
}

/// Every run of the history in `dir`, oldest first (parts in order, runs in the order they
/// were appended), optionally only those whose generator targeted `target_pps`. The metrics
/// are the ones `append` stored: the values `trend` would compute from the records.
pub fn runs(dir: &Path, target_pps: Option<f64>, mut each: impl FnMut(HistoryRun)) -> Result<()> {
    let files = parts(dir)?;
    if files.is_empty() {
        return Err(Error::format(
            dir,
            format!("no history parts (*.{PART_EXT}) here; `analyzer history append` makes them"),
        ));
    }
    for part in &files {
        for run in part_runs(part, target_pps)? {
            each(run);
        }
    }
    Ok(())
}

/// A part's columns by name, each read whole; any error names the part.
struct Columns<'a> {
    df: &'a DataFrame,
    part: &'a Path,
}

impl Columns<'_> {
    fn bad(&self, e: PolarsError) -> Error {
        Error::format(self.part, format!("not a readable history part: {e}"))
    }

    fn strings(&self, name: &str) -> Result<Vec<Option<String>>> {
        let c = self.df.column(name).map_err(|e| self.bad(e))?;
        let c = c.str().map_err(|e| self.bad(e))?;
        Ok(c.iter().map(|v| v.map(str::to_string)).collect())
    }

    fn floats(&self, name: &str) -> Result<Vec<Option<f64>>> {
        let c = self.df.column(name).map_err(|e| self.bad(e))?;
        Ok(c.f64().map_err(|e| self.bad(e))?.iter().collect())
    }

    fn hops(&self) -> Result<Vec<Option<u32>>> {
        self.df
            .column("hop")
            .and_then(|c| Ok(c.u32()?.iter().collect()))
            .map_err(|e| self.bad(e))
    }
}

fn part_runs(part: &Path, target_pps: Option<f64>) -> Result<Vec<HistoryRun>> {
    let df = read_frame(part)?;
    let cols = Columns { df: &df, part };
    let strings = |name: &str| cols.strings(name);
    let (run, date, source, hop_name, relay, metric, label, unit) = (
        strings("run")?,
        strings("date")?,
        strings("source")?,
        strings("hop_name")?,
        strings("relay")?,
        strings("metric")?,
        strings("label")?,
        strings("unit")?,
    );
    // Parts written before run ids: a dated run is `run@date`, as in `append`.
    let run_id = if df.column("run_id").is_ok() {
        strings("run_id")?
    } else {
        (0..df.height())
            .map(|i| {
                let r = run[i].clone()?;
                Some(date[i].as_ref().map_or(r.clone(), |d| format!("{r}@{d}")))
            })
            .collect()
    };
    let hop = cols.hops()?;
    let (target, value) = (cols.floats("target_pps")?, cols.floats("value")?);
    let mut out: Vec<HistoryRun> = Vec::new();
    let mut index: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..df.height() {
        let missing = |column: &str| {
            Error::format(
                part,
                format!("row {i}: column `{column}` is null; a history row always has it"),
            )
        };
        if target_pps.is_some_and(|t| target[i] != Some(t)) {
            continue;
        }
        let id = run_id[i].as_deref().ok_or_else(|| missing("run_id"))?;
        let name = run[i].as_deref().ok_or_else(|| missing("run"))?;
        let metric_name = metric[i].as_deref().ok_or_else(|| missing("metric"))?;
        let hop = hop[i].ok_or_else(|| missing("hop"))?;
        let value = value[i].ok_or_else(|| missing("value"))?;
        if !value.is_finite() {
            return Err(Error::format(
                part,
                format!(
                    "row {i}: `value` of {metric_name} is {value}; a history holds finite numbers"
                ),
            ));
        }
        let r = *index.entry(id.to_string()).or_insert_with(|| {
            out.push(HistoryRun {
                source: source[i].clone().unwrap_or_default(),
                label: match &date[i] {
                    Some(d) => format!("{name} ({d})"),
                    None => name.to_string(),
                },
                hops: Vec::new(),
                values: Vec::new(),
            });
            out.len() - 1
        });
        let run = &mut out[r];
        let key = if hop > 0 {
            let p = hop as usize;
            if run.hops.len() < p {
                run.hops.resize(p, (String::new(), None));
            }
            let relay = relay[i].clone().filter(|r| !r.is_empty());
            run.hops[p - 1] = (hop_name[i].clone().unwrap_or_default(), relay);
            format!("hop{hop}.{metric_name}")
        } else {
            metric_name.to_string()
        };
        let unit = unit_from_name(unit[i].as_deref().unwrap_or_default());
        run.values.push((
            metrics::Metric {
                better: metrics::better_of(&key, unit),
                key,
                label: label[i].clone().unwrap_or_default(),
                unit,
            },
            value,
        ));
    }
    Ok(out)
}

/// What `history show` selects; `None` selects everything.
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// Metric names as in the dataset (`tx_pps`, `receiver.loss_pct`); any of them.
    pub metrics: Vec<String>,
    pub hop: Option<u32>,
    pub relay: Option<String>,
    pub target_pps: Option<f64>,
    /// First and last day, inclusive (`YYYY-MM-DD`).
    pub from: Option<String>,
    pub to: Option<String>,
}

/// One aggregated row: a day's repeats of one metric at one hop of one relay.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub day: String,
    pub runs: u32,
    pub median: f64,
    pub p10: f64,
    pub p90: f64,
    pub min: f64,
    pub max: f64,
}

/// The points of one metric at one hop of one relay (and one target rate), oldest day first.
#[derive(Debug, Clone, PartialEq)]
pub struct Slice {
    pub metric: String,
    pub label: String,
    pub unit: Unit,
    pub hop: u32,
    pub relay: String,
    pub target_pps: Option<f64>,
    pub points: Vec<Point>,
}

/// The linear-interpolation quantile `q` of `sorted` (ascending, not empty): the value at
/// position `q × (n − 1)`, interpolated between its neighbours. The same formula as polars'
/// `QuantileMethod::Linear`, which computed these numbers before the history was read eagerly.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let at = (sorted.len() - 1) as f64 * q;
    let (lo, hi) = (at.floor() as usize, at.ceil() as usize);
    let (lower, upper) = (sorted[lo], sorted[hi]);
    if lo == hi || lower == upper {
        lower
    } else {
        (at - lo as f64) * (upper - lower) + lower
    }
}

/// A target rate as a sort key: ascending, an unrecorded rate after every recorded one.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Rate(Option<f64>);

impl Eq for Rate {}

impl Ord for Rate {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        match (self.0, other.0) {
            (Some(a), Some(b)) => a.total_cmp(&b),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => std::cmp::Ordering::Equal,
        }
    }
}

impl PartialOrd for Rate {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// One slice's identity, in report order: metric, hop, relay, rate.
type SliceKey = (String, u32, String, Rate);

/// A slice's rows as they are read: its label and unit (from its first row) and each day's values.
#[derive(Default)]
struct Gathered {
    label: String,
    unit: String,
    days: BTreeMap<String, Vec<f64>>,
}

impl Query {
    fn keeps(&self, metric: &str, hop: u32, relay: &str, target: Option<f64>, day: &str) -> bool {
        (self.metrics.is_empty() || self.metrics.iter().any(|m| m == metric))
            && self.hop.is_none_or(|h| h == hop)
            && self.relay.as_deref().is_none_or(|r| r == relay)
            && self.target_pps.is_none_or(|t| target == Some(t))
            && self.from.as_deref().is_none_or(|f| day >= f)
            && self.to.as_deref().is_none_or(|t| day <= t)
    }
}

/// Reads one part whole (a night's part is a few kilobytes) and adds the rows `q` selects to
/// `into`. Any error names the part.
fn gather(part: &Path, q: &Query, into: &mut BTreeMap<SliceKey, Gathered>) -> Result<()> {
    let df = read_frame(part)?;
    let cols = Columns { df: &df, part };
    let strings = |name: &str| cols.strings(name);
    let (metric, relay, day, label, unit) = (
        strings("metric")?,
        strings("relay")?,
        strings("day")?,
        strings("label")?,
        strings("unit")?,
    );
    let hop = cols.hops()?;
    let (target, value) = (cols.floats("target_pps")?, cols.floats("value")?);
    for i in 0..df.height() {
        let missing = |column: &str| {
            Error::format(
                part,
                format!("row {i}: column `{column}` is null; a history row always has it"),
            )
        };
        let metric = metric[i].as_deref().ok_or_else(|| missing("metric"))?;
        let relay = relay[i].as_deref().ok_or_else(|| missing("relay"))?;
        let day = day[i].as_deref().ok_or_else(|| missing("day"))?;
        let hop = hop[i].ok_or_else(|| missing("hop"))?;
        let value = value[i].ok_or_else(|| missing("value"))?;
        if !value.is_finite() {
            // Appending refuses these; a part that holds one was not written by it.
            return Err(Error::format(
                part,
                format!("row {i}: `value` of {metric} is {value}; a history holds finite numbers"),
            ));
        }
        if !q.keeps(metric, hop, relay, target[i], day) {
            continue;
        }
        let key = (metric.to_string(), hop, relay.to_string(), Rate(target[i]));
        let g = into.entry(key).or_insert_with(|| Gathered {
            label: label[i].clone().unwrap_or_default(),
            unit: unit[i].clone().unwrap_or_default(),
            days: BTreeMap::new(),
        });
        g.days.entry(day.to_string()).or_default().push(value);
    }
    Ok(())
}

/// Runs a query: the aggregated points, one [`Slice`] per metric, hop, relay and rate, in that
/// order (an unrecorded rate last), each slice's days oldest first.
///
/// Each part is read eagerly and filtered row by row; the per-day statistics are computed here
/// rather than by a polars query plan, because polars' lazy engine brings its cloud I/O stack
/// (object_store, reqwest, rustls, tokio) into the build for a directory of small local files.
pub fn show(dir: &Path, q: &Query) -> Result<Vec<Slice>> {
    let files = parts(dir)?;
    if files.is_empty() {
        return Err(Error::format(
            dir,
            format!("no history parts (*.{PART_EXT}) here; `analyzer history append` makes them"),
        ));
    }
    let mut gathered = BTreeMap::new();
    for part in &files {
        gather(part, q, &mut gathered)?;
    }
    Ok(gathered
        .into_iter()
        .map(|((metric, hop, relay, target), g)| Slice {
            metric,
            label: g.label,
            unit: unit_from_name(&g.unit),
            hop,
            relay,
            target_pps: target.0,
            points: g
                .days
                .into_iter()
                .map(|(day, mut values)| {
                    values.sort_by(f64::total_cmp);
                    Point {
                        day,
                        runs: values.len() as u32,
                        median: quantile(&values, 0.5),
                        p10: quantile(&values, 0.1),
                        p90: quantile(&values, 0.9),
                        min: values[0],
                        max: values[values.len() - 1],
                    }
                })
                .collect(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Generator, Hop, HopCounters};

    fn night(day: u32, rep: u64, tx: u64) -> RunRecord {
        let mut r = RunRecord::new(format!("night {day} rep {rep}"));
        r.date = Some(format!("2026-11-{day:02}T01:00:00Z"));
        r.duration_ns = Some(1_000_000_000);
        r.configuration
            .generator
            .insert("target_pps".into(), serde_json::Value::from(20_000));
        r.generator = Some(Generator {
            sent: Some(20_000),
            elapsed_ns: Some(1_000_000_000),
            ..Default::default()
        });
        r.hops.push(Hop {
            name: "MCR-1".into(),
            relay: Some("mcr".into()),
            counters: HopCounters {
                rx: Some(20_000),
                tx_sent: Some(tx),
                ..Default::default()
            },
            ..Default::default()
        });
        r
    }

    fn write_jsonl(dir: &Path, name: &str, recs: &[RunRecord]) -> PathBuf {
        let p = dir.join(name);
        let text: Vec<String> = recs
            .iter()
            .map(|r| serde_json::to_string(r).unwrap())
            .collect();
        std::fs::write(&p, text.join("\n")).unwrap();
        p
    }

    #[test]
    fn appended_nights_aggregate_over_repeats() {
        let d = tempfile::tempdir().unwrap();
        let hist = d.path().join("history");
        let n1 = write_jsonl(
            d.path(),
            "n1.jsonl",
            &[
                night(1, 1, 19_000),
                night(1, 2, 20_000),
                night(1, 3, 18_000),
            ],
        );
        let n2 = write_jsonl(
            d.path(),
            "n2.jsonl",
            &[night(2, 1, 10_000), night(2, 2, 12_000)],
        );
        let a = append(&hist, &[n1]).unwrap();
        assert!(a.part.unwrap().ends_with("000001.parquet"));
        assert_eq!(a.rows, 3 * 3, "generator, MCR-1 ingress and egress per run");
        let a = append(&hist, &[n2]).unwrap();
        assert!(a.part.unwrap().ends_with("000002.parquet"));

        let q = Query {
            metrics: vec!["tx_pps".into()],
            hop: Some(1),
            ..Default::default()
        };
        let slices = show(&hist, &q).unwrap();
        assert_eq!(slices.len(), 1);
        let s = &slices[0];
        assert_eq!(
            (s.label.as_str(), s.relay.as_str()),
            ("MCR-1 Egress", "mcr")
        );
        assert_eq!(s.target_pps, Some(20_000.0));
        assert_eq!(s.points.len(), 2);
        let (a, b) = (&s.points[0], &s.points[1]);
        assert_eq!(
            (a.day.as_str(), a.runs, a.median),
            ("2026-11-01", 3, 19_000.0)
        );
        assert_eq!((a.min, a.max), (18_000.0, 20_000.0));
        assert!(
            (a.p10 - 18_200.0).abs() < 1e-6,
            "linear quantile: {}",
            a.p10
        );
        assert_eq!(
            (b.day.as_str(), b.runs, b.median),
            ("2026-11-02", 2, 11_000.0)
        );

        let later = Query {
            from: Some("2026-11-02".into()),
            ..q.clone()
        };
        assert_eq!(show(&hist, &later).unwrap()[0].points.len(), 1);
        let other = Query {
            relay: Some("socat".into()),
            ..q
        };
        assert!(show(&hist, &other).unwrap().is_empty());
    }

    #[test]
    fn an_empty_history_is_an_error_naming_the_directory() {
        let d = tempfile::tempdir().unwrap();
        let e = show(d.path(), &Query::default()).unwrap_err().to_string();
        assert!(e.contains("history append"), "{e}");
    }

    /// Issue 19: 8 of 102 single-byte flips of a part changed values or metric names without
    /// an error. Every flip of every byte of a part is now an error, and it names the part.
    #[test]
    fn every_flipped_byte_of_a_part_is_an_error_naming_it() {
        let d = tempfile::tempdir().unwrap();
        let hist = d.path().join("history");
        let n1 = write_jsonl(d.path(), "n1.jsonl", &[night(1, 1, 19_000)]);
        let part = append(&hist, &[n1]).unwrap().part.unwrap();
        let good = std::fs::read(&part).unwrap();
        let q = Query::default();
        let before = show(&hist, &q).unwrap();
        for i in 0..good.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut bad = good.clone();
                bad[i] ^= flip;
                std::fs::write(&part, &bad).unwrap();
                match show(&hist, &q) {
                    Ok(s) => panic!("byte {i} ^ {flip:#04x}: read without error: {s:?}"),
                    Err(e) => {
                        let e = e.to_string();
                        assert!(e.contains("000001.parquet"), "byte {i}: {e}");
                    }
                }
            }
        }
        std::fs::write(&part, &good).unwrap();
        assert_eq!(show(&hist, &q).unwrap(), before);
        // A corrupt checksum file is an error naming the part too.
        let sum = sum_path(&part);
        std::fs::write(&sum, "crc32 zz 1\n").unwrap();
        let e = show(&hist, &q).unwrap_err().to_string();
        assert!(
            e.contains("000001.parquet") && e.contains("checksum"),
            "{e}"
        );
        // A part written before checksums is read, and named as unverified.
        std::fs::remove_file(&sum).unwrap();
        assert_eq!(show(&hist, &q).unwrap(), before);
        assert_eq!(unverified_parts(&hist).unwrap(), [part]);
    }

    /// Issue 19: appending the same night twice counted its runs twice.
    #[test]
    fn appending_a_run_again_skips_it() {
        let d = tempfile::tempdir().unwrap();
        let hist = d.path().join("history");
        let n1 = write_jsonl(
            d.path(),
            "n1.jsonl",
            &[night(1, 1, 19_000), night(1, 2, 20_000)],
        );
        assert_eq!(append(&hist, std::slice::from_ref(&n1)).unwrap().records, 2);
        let again = append(&hist, std::slice::from_ref(&n1)).unwrap();
        assert_eq!((again.part, again.records), (None, 0));
        assert_eq!(
            again.skipped,
            [
                "night 1 rep 1@2026-11-01T01:00:00Z",
                "night 1 rep 2@2026-11-01T01:00:00Z"
            ]
        );
        // One new run beside a known one: only the new one is appended.
        let mut more = night(1, 3, 18_000);
        more.date = Some("2026-11-01T02:00:00Z".into());
        let n2 = write_jsonl(d.path(), "n2.jsonl", &[night(1, 1, 19_000), more]);
        let a = append(&hist, &[n2]).unwrap();
        assert_eq!((a.records, a.skipped.len()), (1, 1));
        let q = Query {
            metrics: vec!["tx_pps".into()],
            hop: Some(1),
            ..Default::default()
        };
        assert_eq!(show(&hist, &q).unwrap()[0].points[0].runs, 3);
        // Undated records are the same run only when they are the same record.
        let mut a = night(2, 1, 1);
        a.date = None;
        let mut b = a.clone();
        b.hops[0].counters.tx_sent = Some(2);
        assert_ne!(run_id(&a), run_id(&b));
        assert_eq!(run_id(&a), run_id(&a.clone()));
    }

    /// Issue 19: a NaN or infinite value is refused at append, naming the record and field.
    #[test]
    fn a_non_finite_metric_is_refused_at_append() {
        let d = tempfile::tempdir().unwrap();
        let hist = d.path().join("history");
        let mut r = night(1, 1, 19_000);
        r.hops[0].reported.buf_exhaust_pct = None;
        r.hops[0].counters.rx = None;
        r.hops[0].reported.rx_pps = Some(f64::INFINITY);
        // Not through a file: JSON has no infinity, and reading a record validates it. A record
        // built in memory (or by a future reader) still cannot bring one into the history.
        let mut rows = Rows::default();
        let e = rows.push("n1.jsonl:1", &r).unwrap_err().to_string();
        assert!(e.contains("n1.jsonl:1") && e.contains("hop1.rx_pps"), "{e}");
        assert!(e.contains("night 1 rep 1"), "{e}");
        assert!(!hist.exists());
    }
}
