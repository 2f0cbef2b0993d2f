//! `analyzer`'s command line, as clap definitions. In the library so that the man pages and
//! shell completions are generated from the definitions the binary parses with.

use std::path::PathBuf;

use clap::{Args, CommandFactory, Parser, Subcommand};

/// `--version`: the analyzer's version and the commit (it has no optional features).
fn long_version() -> &'static str {
    static LINE: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| relay::version::long(env!("CARGO_PKG_VERSION"), &[]));
    LINE.as_str()
}

#[derive(Debug, Parser)]
#[command(
    name = "analyzer",
    version,
    long_version = long_version(),
    about = "Run records in, regression reports out (Markdown and PNG)."
)]
#[command(
    after_help = "Exit codes: 0 no regression, 1 regression, 2 bad input or usage; bisect-step: 0 good, 1 bad, 3 undecided."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build a run record from trafficgen / mcrctl JSON, `perf stat -x,` CSV and text counter lines.
    Ingest(IngestArgs),
    /// Compare runs with a baseline: summary with verdicts, rates, loss waterfall, candidate causes.
    Compare(CompareArgs),
    /// Find change points in a nightly history and flag a regressed newest run.
    Trend(TrendArgs),
    /// Judge a candidate commit's runs between a known-good and a known-bad commit's:
    /// good / bad / undecided, with the effect sizes and p-values (exit 0 / 1 / 3).
    BisectStep(BisectStepArgs),
    /// The nightly history as a columnar dataset: append records, show slices of it.
    #[command(subcommand)]
    History(HistoryCommand),
    /// Medians tables of a benchmark campaign's records (`records/SET/repN.json`).
    Medians(MediansArgs),
    /// The veth pipeline harness's documents, from the counters it collected around a run.
    #[command(subcommand)]
    Pipeline(PipelineCommand),
    /// What the small benchmark scripts print, from the records and samples they leave.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// `scripts/bench-send.sh`'s table: per case the median achieved rate, CPU time per packet
    /// and rate error of its trials.
    Send {
        /// One directory per case, in the table's order, holding its trials as `repN.json`
        /// (`trafficgen send --json` records); the directory's name is the case's.
        #[arg(required = true, value_name = "CASE_DIR")]
        cases: Vec<PathBuf>,
    },
    /// `scripts/scrape-cost.sh`'s report: time per scrape of an idle mcrd, each run's loss and
    /// latency, the readers' times, the medians per condition.
    ScrapeCost {
        /// The script's output directory (`idle-scrapes.txt`, `COND-REP.{send,recv}.json`,
        /// `COND-REP.stats-{before,after}.json`, `COND-REP.reads.txt`).
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
    /// `scripts/bench-rules.sh`'s ping cell: p50 / p99 / max of `mcrctl ping` round trips
    /// (ms, one a line), and p50 / p99 of the round trips on the socket itself.
    Pings {
        /// `mcrctl ping` wall times, ms.
        #[arg(value_name = "FILE")]
        process: PathBuf,
        /// Round trips on the control socket without a process per ping, ms.
        #[arg(long, value_name = "FILE")]
        socket: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum PipelineCommand {
    /// Packet conservation over the chain (`mcr.pipeline.conservation`): per stage in, counted
    /// drops, out and the unexplained rest; `ok` when every packet is accounted for.
    Conservation {
        /// The generator's record (`trafficgen send --json`).
        #[arg(long, value_name = "FILE")]
        generator: PathBuf,
        /// The receiver's record (`trafficgen recv --json`).
        #[arg(long, value_name = "FILE")]
        receiver: PathBuf,
        /// The chain's counter snapshots and mcrd stats (`mcr.pipeline.chain`, raw/chain.json).
        #[arg(long, value_name = "FILE")]
        chain: PathBuf,
        /// Write the document here (default: standard output).
        #[arg(long, short)]
        out: Option<PathBuf>,
    },
    /// Kernel counter deltas outside the relays (`mcr.pipeline.kernel`, for `ingest --kernel`).
    Kernel {
        /// The chain's counter snapshots (`mcr.pipeline.chain`).
        #[arg(long, value_name = "FILE")]
        chain: PathBuf,
        /// The host CPU document (`mcr.pipeline.host_cpu`): its softnet drops.
        #[arg(long, value_name = "FILE")]
        host_cpu: PathBuf,
        /// Write the document here (default: standard output).
        #[arg(long, short)]
        out: Option<PathBuf>,
    },
    /// A hop's counters taken from the kernel's, for relays that count nothing themselves
    /// (socat, kernel, route, redirect): text lines for `ingest --hop`.
    Hop {
        /// The chain's counter snapshots (`mcr.pipeline.chain`).
        #[arg(long, value_name = "FILE")]
        chain: PathBuf,
        /// The hop, 1-based.
        #[arg(long, value_name = "N")]
        hop: usize,
        /// Write the lines here (default: standard output).
        #[arg(long, short)]
        out: Option<PathBuf>,
    },
    /// The run's summary as the harness prints it: what was sent and received, each
    /// conservation stage, the frame balance, the host CPU the run caused.
    Summary {
        /// The generator's record (`trafficgen send --json`).
        #[arg(long, value_name = "FILE")]
        generator: PathBuf,
        /// The receiver's record (`trafficgen recv --json`).
        #[arg(long, value_name = "FILE")]
        receiver: PathBuf,
        /// The chain's counter snapshots and mcrd stats (`mcr.pipeline.chain`).
        #[arg(long, value_name = "FILE")]
        chain: PathBuf,
        /// The host CPU document (`mcr.pipeline.host_cpu`).
        #[arg(long, value_name = "FILE")]
        host_cpu: PathBuf,
    },
    /// One run's line of the nightly report's table (Markdown): sent, received, lost, counted
    /// drops, unexplained, host CPU per delivered packet, other processes' share of a CPU.
    Row {
        /// The run's label in the first cell (`rep1`).
        #[arg(long)]
        label: String,
        /// The run's conservation check (`mcr.pipeline.conservation`).
        #[arg(long, value_name = "FILE")]
        conservation: PathBuf,
        /// The run's host CPU document (`mcr.pipeline.host_cpu`).
        #[arg(long, value_name = "FILE")]
        host_cpu: PathBuf,
    },
    /// The host CPU the run caused (`mcr.pipeline.host_cpu`, for `ingest --host`), from two host
    /// snapshots: host busy time less other processes'.
    HostCpu {
        /// The snapshot taken before the traffic.
        #[arg(long, value_name = "FILE")]
        before: PathBuf,
        /// The snapshot taken after it.
        #[arg(long, value_name = "FILE")]
        after: PathBuf,
        /// The harness's pid: its process tree is the run.
        #[arg(long, value_name = "PID")]
        root: u32,
        /// Ticks per second of /proc's counters (`getconf CLK_TCK`).
        #[arg(long, value_name = "HZ", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
        clk_tck: u32,
        /// Write the document here (default: standard output).
        #[arg(long, short)]
        out: Option<PathBuf>,
    },
}

/// The campaign layouts `medians` knows: how set names are read and which tables are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MediansLayout {
    /// `scripts/relay-speed.sh`: sets `CONFIG-NHh-PPSpps` (reports/relay-speed.md).
    RelaySpeed,
    /// `scripts/fast-path-speed.sh`: sets `CONFIG-NHh-RATE[-MODE]` (reports/relay-speed-fastpath.md).
    FastPath,
    /// `scripts/pipeline-full-run.sh`: the records with the harness's outputs of each repeat
    /// (`--sets`), reports/pipeline/full/medians.md.
    PipelineFull,
}

#[derive(Debug, Args)]
pub struct MediansArgs {
    /// Which campaign the records are from.
    #[arg(value_enum)]
    pub layout: MediansLayout,
    /// The campaign's records directory: one directory per set, `repN.json` records in it.
    pub records: PathBuf,
    /// pipeline-full: the harness's outputs, `SETS/CONFIG/repN/{conservation,host-cpu}.json`.
    #[arg(long, value_name = "SETS")]
    pub sets: Option<PathBuf>,
    /// Write the Markdown here (default: standard output).
    #[arg(long, short)]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum HistoryCommand {
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

#[derive(Debug, Args)]
pub struct HistoryShowArgs {
    /// The history directory.
    pub dir: PathBuf,
    /// Metric, as in the dataset: `rx_pps`, `tx_pps`, `buf_exhaust_pct`, `cpu_ns_per_packet`,
    /// `receiver.loss_pct`, ... (repeat for several; default all).
    #[arg(long = "metric", value_name = "NAME")]
    pub metrics: Vec<String>,
    /// Hop position, 1-based (0: whole-run metrics).
    #[arg(long)]
    pub hop: Option<u32>,
    /// Relay implementation (`mcr`, `socat`, `smcroute`, ...).
    #[arg(long)]
    pub relay: Option<String>,
    /// Generator target rate, packets per second.
    #[arg(long, value_name = "PPS")]
    pub rate: Option<f64>,
    /// First day, inclusive (YYYY-MM-DD).
    #[arg(long, value_name = "DAY")]
    pub from: Option<String>,
    /// Last day, inclusive (YYYY-MM-DD).
    #[arg(long, value_name = "DAY")]
    pub to: Option<String>,
    /// Write the Markdown here (default: standard output).
    #[arg(long, short)]
    pub out: Option<PathBuf>,
    /// Also write the rows as CSV.
    #[arg(long, value_name = "FILE")]
    pub csv: Option<PathBuf>,
    /// Also draw the medians as a PNG chart.
    #[arg(long, value_name = "FILE")]
    pub png: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct IngestArgs {
    /// Run name, used as the column heading in reports.
    #[arg(long)]
    pub name: String,
    /// Date of the run (ISO 8601), shown next to the name.
    #[arg(long)]
    pub date: Option<String>,
    /// One line on what the run is.
    #[arg(long)]
    pub description: Option<String>,
    /// Generator output: `trafficgen send|sweep --json` or text (`Total packets sent: N`, `Elapsed time: Ns`).
    #[arg(long, value_name = "FILE")]
    pub generator: Vec<PathBuf>,
    /// A relay hop, in pipeline order: `mcrctl stats --json`, `perf stat -x,` CSV or text counter
    /// lines (`recv=N egr_sent=N buf_exhaust=N`). Repeat a NAME to merge several files into one hop.
    #[arg(long, value_name = "NAME=FILE")]
    pub hop: Vec<String>,
    /// Receiver output: `trafficgen recv --json` or text (`received=N lost=N p99=1.2ms`).
    #[arg(long, value_name = "FILE")]
    pub receiver: Vec<PathBuf>,
    /// Host CPU time over the run: text (`user=12.5s system=3s softirq=4s`), `perf stat -a -x,` CSV,
    /// or the pipeline harness's `mcr.pipeline.host_cpu` JSON.
    #[arg(long, value_name = "FILE")]
    pub host: Vec<PathBuf>,
    /// Kernel counter deltas outside the relays (veth links, UDP per namespace, softnet drops):
    /// `mcr.pipeline.kernel` JSON.
    #[arg(long, value_name = "FILE")]
    pub kernel: Vec<PathBuf>,
    /// The pipeline harness's packet-conservation check: `mcr.pipeline.conservation` JSON.
    #[arg(long, value_name = "FILE")]
    pub conservation: Vec<PathBuf>,
    /// A setting: env.kernel, env.cpu_model, env.cores, env.git_revision, env.sysctl.NAME, env.NAME,
    /// config.generator.NAME, config.relay.NAME, config.harness.NAME, hop.HOP.relay,
    /// hop.HOP.tunable.NAME, duration (e.g. 14.43s), generator.tool, receiver.tool.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub settings: Vec<String>,
    /// Record this machine's kernel, CPU, relevant sysctls and git revision.
    #[arg(long)]
    pub env_from_host: bool,
    /// Where to write the record (default: standard output).
    #[arg(long, short)]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// The baseline: a record, a directory of records or a JSON Lines file (repeats of one
    /// configuration), or comma-separated records.
    pub baseline: String,
    /// Runs to compare with the baseline, each in the same forms.
    #[arg(required = true)]
    pub runs: Vec<String>,
    /// Write the Markdown report here (default: standard output).
    #[arg(long, short)]
    pub out: Option<PathBuf>,
    /// Write PNG charts into this directory (created if missing).
    #[arg(long)]
    pub png_dir: Option<PathBuf>,
    #[command(flatten)]
    pub judge: JudgeArgs,
    /// Also judge each run against the one before it (a second summary table).
    #[arg(long)]
    pub chain: bool,
    /// Also write the verdicts as a `mcr.analyzer.comparison` JSON record.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

/// How a change is judged: `compare`'s and `bisect-step`'s flags, one definition for both.
#[derive(Debug, Args)]
pub struct JudgeArgs {
    /// Smallest relative change of a rate, CPU cost or latency that counts, percent.
    #[arg(long, default_value_t = 5.0, value_name = "PCT")]
    pub threshold: f64,
    /// Smallest change of a metric that is a percentage (loss, buffer exhaustion), in points.
    #[arg(long, default_value_t = 1.0, value_name = "PP")]
    pub threshold_pp: f64,
    /// Significance level of the Mann-Whitney U test used when both sides have repeats.
    #[arg(long, default_value_t = 0.05)]
    pub alpha: f64,
    /// How far a run's offered load (the generator's rate) may be from the baseline's, percent,
    /// and still count as equal; beyond it rates, CPU per packet and latency are not judged.
    #[arg(long, default_value_t = crate::conditions::LOAD_TOLERANCE_PCT, value_name = "PCT")]
    pub load_tolerance: f64,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Exit codes: 0 good, 1 bad, 3 undecided (more repeats or stop), 2 bad input."
)]
pub struct BisectStepArgs {
    /// The known-good commit's runs: a record, a directory of records, a JSON Lines file, or
    /// comma-separated records (as `compare` takes a set).
    #[arg(long, value_name = "RECORDS")]
    pub good: String,
    /// The known-bad commit's runs, in the same forms.
    #[arg(long, value_name = "RECORDS")]
    pub bad: String,
    /// The candidate commit's runs, in the same forms.
    #[arg(long, value_name = "RECORDS")]
    pub candidate: String,
    /// The metric to judge, a key as in `compare --json` (`receiver.pps`,
    /// `hop1.host_ns_per_packet`); default: CPU per packet where it regressed from good to bad,
    /// else the largest judged regression.
    #[arg(long, value_name = "KEY")]
    pub metric: Option<String>,
    /// The same judgement as `compare`'s.
    #[command(flatten)]
    pub judge: JudgeArgs,
    /// Also write the step as a `mcr.analyzer.bisect-step` JSON record.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct TrendArgs {
    /// Runs, oldest first: a Parquet history directory (`history append`'s parts, read in
    /// order), files, directories of `*.json` records (file-name order) or JSON Lines
    /// histories (`*.jsonl`, one record per line).
    #[arg(required = true, value_name = "RECORDS")]
    pub records: Vec<PathBuf>,
    /// Of a Parquet history, only the runs whose generator targeted this rate (packets per
    /// second), as `history show --rate`.
    #[arg(long, value_name = "PPS")]
    pub rate: Option<f64>,
    /// Write the Markdown report here (default: standard output).
    #[arg(long, short)]
    pub out: Option<PathBuf>,
    /// Write one PNG per metric into this directory.
    #[arg(long)]
    pub png_dir: Option<PathBuf>,
    /// Smallest relative difference of segment means that counts, percent.
    #[arg(long, default_value_t = 5.0, value_name = "PCT")]
    pub min_effect: f64,
    /// Smallest difference of segment means of a percentage metric, in points.
    #[arg(long, default_value_t = 1.0, value_name = "PP")]
    pub min_effect_pp: f64,
    /// Significance level of the permutation test.
    #[arg(long, default_value_t = 0.05)]
    pub alpha: f64,
    /// Also write the change points and verdicts as a `mcr.analyzer.trend` JSON record.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

/// The clap command `analyzer` parses with (for man pages and completions).
pub fn command() -> clap::Command {
    Cli::command()
}

#[cfg(test)]
mod tests {
    #[test]
    fn command_line_definition_is_consistent() {
        super::command().debug_assert();
    }
}
