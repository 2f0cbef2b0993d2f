//! `analyzer`: run records in, regression reports out.
//!
//! Exit codes: 0 no regression, 1 regression, 2 bad input or usage (the message names the file
//! and field). See `analyzer/README.md`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use analyzer::compare::{self, Settings};
use analyzer::ingest::{self, Input, Role};
use analyzer::record::RunRecord;
use analyzer::render::{markdown, png};
use analyzer::trend;

/// Exit code when a run regressed.
const EXIT_REGRESSION: u8 = 1;
/// Exit code for bad input or usage (clap uses the same for its own usage errors).
const EXIT_BAD_INPUT: u8 = 2;

#[derive(Parser)]
#[command(
    name = "analyzer",
    version,
    about = "Run records in, regression reports out (Markdown and PNG)."
)]
#[command(after_help = "Exit codes: 0 no regression, 1 regression, 2 bad input or usage.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build a run record from trafficgen / mcrctl JSON, `perf stat -x,` CSV and text counter lines.
    Ingest(IngestArgs),
    /// Compare runs with a baseline: summary with verdicts, rates, loss waterfall, candidate causes.
    Compare(CompareArgs),
    /// Find change points in a nightly history and flag a regressed newest run.
    Trend(TrendArgs),
    /// The nightly history as a columnar dataset: append records, show slices of it.
    #[command(subcommand)]
    History(HistoryCommand),
}

#[derive(Subcommand)]
enum HistoryCommand {
    /// Append records (files, directories, JSON Lines) to a history directory as one new part.
    Append {
        /// The history directory (created if missing).
        #[arg(long, value_name = "DIR")]
        to: PathBuf,
        /// The records of the night.
        #[arg(required = true, value_name = "RECORDS")]
        records: Vec<PathBuf>,
    },
    /// Slice a history: one row per day, aggregated over that day's repeats.
    Show(HistoryShowArgs),
}

#[derive(Args)]
struct HistoryShowArgs {
    /// The history directory.
    dir: PathBuf,
    /// Metric, as in the dataset: `rx_pps`, `tx_pps`, `buf_exhaust_pct`, `cpu_ns_per_packet`,
    /// `receiver.loss_pct`, ... (repeat for several; default all).
    #[arg(long = "metric", value_name = "NAME")]
    metrics: Vec<String>,
    /// Hop position, 1-based (0: whole-run metrics).
    #[arg(long)]
    hop: Option<u32>,
    /// Relay implementation (`mcr`, `socat`, `smcroute`, ...).
    #[arg(long)]
    relay: Option<String>,
    /// Generator target rate, packets per second.
    #[arg(long, value_name = "PPS")]
    rate: Option<f64>,
    /// First day, inclusive (YYYY-MM-DD).
    #[arg(long, value_name = "DAY")]
    from: Option<String>,
    /// Last day, inclusive (YYYY-MM-DD).
    #[arg(long, value_name = "DAY")]
    to: Option<String>,
    /// Write the Markdown here (default: standard output).
    #[arg(long, short)]
    out: Option<PathBuf>,
    /// Also write the rows as CSV.
    #[arg(long, value_name = "FILE")]
    csv: Option<PathBuf>,
    /// Also draw the medians as a PNG chart.
    #[arg(long, value_name = "FILE")]
    png: Option<PathBuf>,
}

#[derive(Args)]
struct IngestArgs {
    /// Run name, used as the column heading in reports.
    #[arg(long)]
    name: String,
    /// Date of the run (ISO 8601), shown next to the name.
    #[arg(long)]
    date: Option<String>,
    /// One line on what the run is.
    #[arg(long)]
    description: Option<String>,
    /// Generator output: `trafficgen send|sweep --json` or text (`Total packets sent: N`, `Elapsed time: Ns`).
    #[arg(long, value_name = "FILE")]
    generator: Vec<PathBuf>,
    /// A relay hop, in pipeline order: `mcrctl stats --json`, `perf stat -x,` CSV or text counter
    /// lines (`recv=N egr_sent=N buf_exhaust=N`). Repeat a NAME to merge several files into one hop.
    #[arg(long, value_name = "NAME=FILE")]
    hop: Vec<String>,
    /// Receiver output: `trafficgen recv --json` or text (`received=N lost=N p99=1.2ms`).
    #[arg(long, value_name = "FILE")]
    receiver: Vec<PathBuf>,
    /// Host CPU time over the run: text (`user=12.5s system=3s softirq=4s`), `perf stat -a -x,` CSV,
    /// or the pipeline harness's `mcr.pipeline.host_cpu` JSON.
    #[arg(long, value_name = "FILE")]
    host: Vec<PathBuf>,
    /// Kernel counter deltas outside the relays (veth links, UDP per namespace, softnet drops):
    /// `mcr.pipeline.kernel` JSON.
    #[arg(long, value_name = "FILE")]
    kernel: Vec<PathBuf>,
    /// The pipeline harness's packet-conservation check: `mcr.pipeline.conservation` JSON.
    #[arg(long, value_name = "FILE")]
    conservation: Vec<PathBuf>,
    /// A setting: env.kernel, env.cpu_model, env.cores, env.git_revision, env.sysctl.NAME, env.NAME,
    /// config.generator.NAME, config.relay.NAME, config.harness.NAME, hop.HOP.relay,
    /// hop.HOP.tunable.NAME, duration (e.g. 14.43s), generator.tool, receiver.tool.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    settings: Vec<String>,
    /// Record this machine's kernel, CPU, relevant sysctls and git revision.
    #[arg(long)]
    env_from_host: bool,
    /// Where to write the record (default: standard output).
    #[arg(long, short)]
    out: Option<PathBuf>,
}

#[derive(Args)]
struct CompareArgs {
    /// The baseline: a record, a directory of records or a JSON Lines file (repeats of one
    /// configuration), or comma-separated records.
    baseline: String,
    /// Runs to compare with the baseline, each in the same forms.
    #[arg(required = true)]
    runs: Vec<String>,
    /// Write the Markdown report here (default: standard output).
    #[arg(long, short)]
    out: Option<PathBuf>,
    /// Write PNG charts into this directory (created if missing).
    #[arg(long)]
    png_dir: Option<PathBuf>,
    /// Smallest relative change of a rate, CPU cost or latency that counts, percent.
    #[arg(long, default_value_t = 5.0, value_name = "PCT")]
    threshold: f64,
    /// Smallest change of a metric that is a percentage (loss, buffer exhaustion), in points.
    #[arg(long, default_value_t = 1.0, value_name = "PP")]
    threshold_pp: f64,
    /// Significance level of the Mann-Whitney U test used when both sides have repeats.
    #[arg(long, default_value_t = 0.05)]
    alpha: f64,
    /// How far a run's offered load (the generator's rate) may be from the baseline's, percent,
    /// and still count as equal; beyond it rates, CPU per packet and latency are not judged.
    #[arg(long, default_value_t = analyzer::conditions::LOAD_TOLERANCE_PCT, value_name = "PCT")]
    load_tolerance: f64,
    /// Also judge each run against the one before it (a second summary table).
    #[arg(long)]
    chain: bool,
}

#[derive(Args)]
struct TrendArgs {
    /// Records, oldest first: files, directories of `*.json` records (file-name order) or
    /// JSON Lines histories (`*.jsonl`, one record per line).
    #[arg(required = true, value_name = "RECORDS")]
    records: Vec<PathBuf>,
    /// Write the Markdown report here (default: standard output).
    #[arg(long, short)]
    out: Option<PathBuf>,
    /// Write one PNG per metric into this directory.
    #[arg(long)]
    png_dir: Option<PathBuf>,
    /// Smallest relative difference of segment means that counts, percent.
    #[arg(long, default_value_t = 5.0, value_name = "PCT")]
    min_effect: f64,
    /// Smallest difference of segment means of a percentage metric, in points.
    #[arg(long, default_value_t = 1.0, value_name = "PP")]
    min_effect_pp: f64,
    /// Significance level of the permutation test.
    #[arg(long, default_value_t = 0.05)]
    alpha: f64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("analyzer: error: {e:#}");
            ExitCode::from(EXIT_BAD_INPUT)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Ingest(a) => run_ingest(a),
        Command::Compare(a) => run_compare(a),
        Command::Trend(a) => run_trend(a),
        Command::History(HistoryCommand::Append { to, records }) => {
            let (part, rows) = analyzer::history::append(&to, &records)?;
            eprintln!("analyzer: appended {rows} rows to {}", part.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::History(HistoryCommand::Show(a)) => run_history(a),
    }
}

fn day(flag: &str, v: &Option<String>) -> anyhow::Result<()> {
    if let Some(d) = v {
        let b = d.as_bytes();
        let ok = b.len() == 10
            && b.iter().enumerate().all(|(i, c)| {
                if i == 4 || i == 7 {
                    *c == b'-'
                } else {
                    c.is_ascii_digit()
                }
            });
        anyhow::ensure!(ok, "{flag} {d}: expected a day as YYYY-MM-DD");
    }
    Ok(())
}

fn run_history(a: HistoryShowArgs) -> anyhow::Result<ExitCode> {
    day("--from", &a.from)?;
    day("--to", &a.to)?;
    let q = analyzer::history::Query {
        metrics: a.metrics,
        hop: a.hop,
        relay: a.relay,
        target_pps: a.rate,
        from: a.from,
        to: a.to,
    };
    let slices = analyzer::history::show(&a.dir, &q)?;
    let mut png_link = None;
    if let Some(p) = &a.png {
        if png::history(&slices, p)? {
            png_link = Some(link(a.out.as_deref(), p));
        }
    }
    if let Some(c) = &a.csv {
        std::fs::write(c, analyzer::render::history::csv(&slices))
            .with_context(|| format!("writing {}", c.display()))?;
    }
    emit(
        a.out.as_deref(),
        &analyzer::render::history::markdown(&slices, &q, png_link.as_deref()),
    )?;
    Ok(ExitCode::SUCCESS)
}

/// Writes `text` to `out` or standard output; a closed pipe (`| head`) is not an error.
fn emit(out: Option<&Path>, text: &str) -> anyhow::Result<()> {
    match out {
        Some(p) => std::fs::write(p, text).with_context(|| format!("writing {}", p.display())),
        None => match std::io::stdout().lock().write_all(text.as_bytes()) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
            other => other.context("writing to standard output"),
        },
    }
}

/// The files given for one role, as inputs.
fn with_role(role: Role, paths: Vec<PathBuf>) -> impl Iterator<Item = Input> {
    paths.into_iter().map(move |path| Input {
        role: role.clone(),
        path,
    })
}

fn run_ingest(a: IngestArgs) -> anyhow::Result<ExitCode> {
    let mut inputs: Vec<Input> = with_role(Role::Generator, a.generator).collect();
    for h in &a.hop {
        let (name, file) = h
            .split_once('=')
            .filter(|(n, f)| !n.is_empty() && !f.is_empty())
            .ok_or_else(|| {
                anyhow::anyhow!("--hop {h}: expected NAME=FILE (e.g. --hop MCR-1=mcr1.json)")
            })?;
        inputs.push(Input {
            role: Role::Hop(name.into()),
            path: file.into(),
        });
    }
    inputs.extend(with_role(Role::Receiver, a.receiver));
    inputs.extend(with_role(Role::Host, a.host));
    inputs.extend(with_role(Role::Kernel, a.kernel));
    inputs.extend(with_role(Role::Conservation, a.conservation));
    let rec = ingest::ingest(&ingest::Options {
        name: a.name,
        date: a.date,
        description: a.description,
        inputs,
        settings: a.settings,
        env_from_host: a.env_from_host,
    })?;
    match &a.out {
        Some(p) => rec.save(p)?,
        None => emit(None, &rec.to_json())?,
    }
    Ok(ExitCode::SUCCESS)
}

/// Expands one positional argument of `compare` into the records of a sample set: a record, a
/// directory of records, a JSON Lines file, or several of these separated by commas.
fn load_set(arg: &str) -> anyhow::Result<Vec<RunRecord>> {
    let mut out = Vec::new();
    for part in arg.split(',').filter(|s| !s.is_empty()) {
        out.extend(
            RunRecord::load_many(Path::new(part))?
                .into_iter()
                .map(|(_, r)| r),
        );
    }
    anyhow::ensure!(!out.is_empty(), "\"{arg}\": no record given");
    Ok(out)
}

/// The path of `target` as a Markdown link from a report written to `report`.
fn link(report: Option<&Path>, target: &Path) -> String {
    let base = report
        .and_then(Path::parent)
        .filter(|p| !p.as_os_str().is_empty());
    match base.and_then(|b| target.strip_prefix(b).ok()) {
        Some(rel) => rel.display().to_string(),
        None => target.display().to_string(),
    }
}

fn non_negative(flag: &str, v: f64) -> anyhow::Result<()> {
    anyhow::ensure!(
        v.is_finite() && v >= 0.0,
        "{flag} {v}: must be a finite number >= 0"
    );
    Ok(())
}

/// `--alpha` of `compare` and `trend`.
fn significance_level(alpha: f64) -> anyhow::Result<()> {
    anyhow::ensure!(
        alpha > 0.0 && alpha < 1.0,
        "--alpha {alpha}: must be between 0 and 1"
    );
    Ok(())
}

/// The exit code of a report: [`EXIT_REGRESSION`] when it found one.
fn exit_code(regressed: bool) -> ExitCode {
    if regressed {
        ExitCode::from(EXIT_REGRESSION)
    } else {
        ExitCode::SUCCESS
    }
}

fn run_compare(a: CompareArgs) -> anyhow::Result<ExitCode> {
    non_negative("--threshold", a.threshold)?;
    non_negative("--threshold-pp", a.threshold_pp)?;
    significance_level(a.alpha)?;
    non_negative("--load-tolerance", a.load_tolerance)?;
    let sets = std::iter::once(&a.baseline)
        .chain(&a.runs)
        .map(|s| load_set(s))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let settings = Settings {
        threshold_pct: a.threshold,
        threshold_pp: a.threshold_pp,
        alpha: a.alpha,
        load_tolerance_pct: a.load_tolerance,
        chain: a.chain,
    };
    let cmp = compare::compare(&sets, &settings)?;
    let mut charts = Vec::new();
    if let Some(dir) = &a.png_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let p = png::chart_path(dir, "rates");
        if png::rates(&cmp, &p)? {
            charts.push(markdown::Chart {
                title: "Rates per hop".into(),
                path: link(a.out.as_deref(), &p),
            });
        }
        let mut used = std::collections::BTreeSet::new();
        for (i, w) in cmp.waterfalls.iter().enumerate() {
            // Two runs may share a name and date; never let one chart overwrite another.
            let mut name = format!("waterfall-{}", png::slug(&cmp.labels[i]));
            if !used.insert(name.clone()) {
                name = format!("{name}-{}", i + 1);
                used.insert(name.clone());
            }
            let p = png::chart_path(dir, &name);
            if png::waterfall(w, &cmp.labels[i], &p)? {
                charts.push(markdown::Chart {
                    title: format!("Loss waterfall: {}", cmp.labels[i]),
                    path: link(a.out.as_deref(), &p),
                });
            }
        }
        let p = png::chart_path(dir, "latency");
        if png::latency(&cmp, &p)? {
            charts.push(markdown::Chart {
                title: "Latency percentiles".into(),
                path: link(a.out.as_deref(), &p),
            });
        }
    }
    emit(a.out.as_deref(), &markdown::comparison(&cmp, &charts))?;
    Ok(exit_code(cmp.regressed()))
}

fn run_trend(a: TrendArgs) -> anyhow::Result<ExitCode> {
    non_negative("--min-effect", a.min_effect)?;
    non_negative("--min-effect-pp", a.min_effect_pp)?;
    significance_level(a.alpha)?;
    let settings = trend::Settings {
        alpha: a.alpha,
        min_effect_pct: a.min_effect,
        min_effect_pp: a.min_effect_pp,
        ..Default::default()
    };
    let mut history = trend::Collector::default();
    for p in &a.records {
        RunRecord::for_each_in(p, |name, rec| {
            history.push(name, &rec);
            Ok(())
        })?;
    }
    let t = history.finish(&settings)?;
    let mut charts = Vec::new();
    if let Some(dir) = &a.png_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        for s in &t.series {
            let p = png::chart_path(dir, &format!("trend-{}", png::slug(&s.metric.key)));
            png::trend_series(s, &t.runs, &p)?;
            charts.push(markdown::Chart {
                title: s.metric.label.clone(),
                path: link(a.out.as_deref(), &p),
            });
        }
    }
    emit(a.out.as_deref(), &markdown::trend(&t, &charts))?;
    Ok(exit_code(t.regressed()))
}
