//! `analyzer`: run records in, regression reports out.
//!
//! Exit codes: 0 no regression, 1 regression, 2 bad input or usage (the message names the file
//! and field); `bisect-step`: 0 good, 1 bad, 3 undecided. See `analyzer/README.md`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

use analyzer::cli::{
    BenchCommand, BisectStepArgs, Cli, Command, CompareArgs, HistoryCommand, HistoryShowArgs,
    IngestArgs, JudgeArgs, MediansArgs, MediansLayout, PipelineCommand, TrendArgs,
};
use analyzer::compare::{self, Settings};
use analyzer::ingest::{self, Input, Role};
use analyzer::record::RunRecord;
use analyzer::render::{markdown, png};
use analyzer::{trend, verdicts};

/// Exit code when a run regressed.
const EXIT_REGRESSION: u8 = 1;
/// Exit code of `bisect-step` when the repeats cannot say good or bad.
const EXIT_UNDECIDED: u8 = 3;
/// Exit code for bad input or usage (clap uses the same for its own usage errors).
const EXIT_BAD_INPUT: u8 = 2;

fn main() -> ExitCode {
    if let Some(code) = mcr_docs::generate_if_asked(analyzer::cli::command, "1") {
        return ExitCode::from(code as u8);
    }
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
        Command::BisectStep(a) => run_bisect_step(a),
        Command::History(HistoryCommand::Append { to, records }) => {
            let a = analyzer::history::append(&to, &records)?;
            for id in &a.skipped {
                eprintln!("analyzer: skipped run {id}: already in the history");
            }
            match &a.part {
                Some(part) => eprintln!(
                    "analyzer: appended {} rows of {} records to {}",
                    a.rows,
                    a.records,
                    part.display()
                ),
                None => eprintln!("analyzer: nothing appended: every run is in the history"),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::History(HistoryCommand::Show(a)) => run_history(a),
        Command::Medians(a) => run_medians(a),
        Command::Pipeline(c) => run_pipeline(c),
        Command::Bench(c) => run_bench(c),
    }
}

fn run_bench(c: BenchCommand) -> anyhow::Result<ExitCode> {
    use analyzer::bench;
    use analyzer::render::bench as text;
    let out = match c {
        BenchCommand::Send { cases } => text::send(&bench::send::cases(&cases)?),
        BenchCommand::ScrapeCost { dir } => {
            text::scrape_cost(&bench::scrape_cost::scrape_cost(&dir)?)
        }
        BenchCommand::Pings { process, socket } => {
            text::pings(&bench::pings::pings(&process, socket.as_deref())?)
        }
    };
    emit(None, &out)?;
    Ok(ExitCode::SUCCESS)
}

/// A pipeline run's generator and receiver records (checked against their contracts) and
/// its chain document.
fn run_inputs(
    generator: &std::path::Path,
    receiver: &std::path::Path,
    chain: &std::path::Path,
) -> anyhow::Result<(
    trafficgen::record::SendRecord,
    trafficgen::record::RecvRecord,
    analyzer::pipeline::chain::Chain,
)> {
    use analyzer::pipeline::{self, chain::Chain};
    use trafficgen::record::{RECORD_MINOR_VERSION, RECORD_VERSION, RECV_SCHEMA, SEND_SCHEMA};
    let send =
        pipeline::read_contract(generator, SEND_SCHEMA, RECORD_VERSION, RECORD_MINOR_VERSION)?;
    let recv =
        pipeline::read_contract(receiver, RECV_SCHEMA, RECORD_VERSION, RECORD_MINOR_VERSION)?;
    Ok((send, recv, Chain::load(chain)?))
}

fn run_pipeline(c: PipelineCommand) -> anyhow::Result<ExitCode> {
    use analyzer::pipeline::{self, chain::Chain, conservation, hop, host_cpu, kernel};
    match c {
        PipelineCommand::Conservation {
            generator,
            receiver,
            chain,
            out,
        } => {
            let (send, recv, chain) = run_inputs(&generator, &receiver, &chain)?;
            let doc = conservation::conservation(&send, &recv, &chain)?;
            emit(out.as_deref(), &pipeline::to_json(&doc))?;
        }
        PipelineCommand::Kernel {
            chain,
            host_cpu,
            out,
        } => {
            let chain = Chain::load(&chain)?;
            let softnet = pipeline::softnet_dropped(&host_cpu)?;
            emit(
                out.as_deref(),
                &pipeline::to_json(&kernel::kernel(&chain, softnet)),
            )?;
        }
        PipelineCommand::Hop { chain, hop: n, out } => {
            let chain = Chain::load(&chain)?;
            emit(out.as_deref(), &hop::hop_counters(&chain, n)?.to_text())?;
        }
        PipelineCommand::Summary {
            generator,
            receiver,
            chain,
            host_cpu,
        } => {
            let (send, recv, chain) = run_inputs(&generator, &receiver, &chain)?;
            let c = conservation::conservation(&send, &recv, &chain)?;
            let h = host_cpu::HostCpuFigures::load(&host_cpu)?;
            let hops = chain.ns.len() - 2;
            emit(
                None,
                &analyzer::render::pipeline::summary(&send, &recv, &c, &h, hops),
            )?;
        }
        PipelineCommand::Row {
            label,
            conservation,
            host_cpu,
        } => {
            let c = conservation::ConservationFigures::load(&conservation)?;
            let h = host_cpu::HostCpuFigures::load_with_unversioned(&host_cpu)?;
            emit(
                None,
                &analyzer::render::pipeline::nightly_row(&label, &c, &h),
            )?;
        }
        PipelineCommand::HostCpu {
            before,
            after,
            root,
            clk_tck,
            out,
        } => {
            let b = host_cpu::Snapshot::load(&before)?;
            let a = host_cpu::Snapshot::load(&after)?;
            emit(
                out.as_deref(),
                &host_cpu::to_line(&host_cpu::host_cpu(&b, &a, root, clk_tck)),
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn run_medians(a: MediansArgs) -> anyhow::Result<ExitCode> {
    use analyzer::medians;
    if a.layout == MediansLayout::PipelineFull {
        let sets = a
            .sets
            .as_deref()
            .context("medians pipeline-full needs --sets DIR (the campaign's sets/)")?;
        let rows = medians::pipeline_full::pipeline_full(sets, &a.records)?;
        emit(a.out.as_deref(), &markdown::medians::pipeline_full(&rows))?;
        return Ok(ExitCode::SUCCESS);
    }
    anyhow::ensure!(
        a.sets.is_none(),
        "--sets is for medians pipeline-full; {:?} reads its records alone",
        a.layout
    );
    let inputs = medians::load(&a.records)?;
    let (text, skipped) = match a.layout {
        MediansLayout::RelaySpeed => {
            let m = medians::relay_speed::relay_speed(&inputs)?;
            (markdown::medians::relay_speed(&m), m.skipped_sets)
        }
        MediansLayout::FastPath => {
            let m = medians::fast_path::fast_path(&inputs)?;
            (markdown::medians::fast_path(&m), m.skipped_sets)
        }
        MediansLayout::PipelineFull => unreachable!("handled above"),
    };
    for s in skipped {
        eprintln!("analyzer: medians: set {s}: not named as the layout's sets are, left out");
    }
    emit(a.out.as_deref(), &text)?;
    Ok(ExitCode::SUCCESS)
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
    for part in analyzer::history::unverified_parts(&a.dir)? {
        eprintln!(
            "analyzer: {}: no checksum beside it (written before parts had one): read unverified",
            part.display()
        );
    }
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

/// The judgement settings of `compare` and `bisect-step`, each flag checked.
fn judge_settings(j: &JudgeArgs, chain: bool) -> anyhow::Result<Settings> {
    non_negative("--threshold", j.threshold)?;
    non_negative("--threshold-pp", j.threshold_pp)?;
    significance_level(j.alpha)?;
    non_negative("--load-tolerance", j.load_tolerance)?;
    Ok(Settings {
        threshold_pct: j.threshold,
        threshold_pp: j.threshold_pp,
        alpha: j.alpha,
        load_tolerance_pct: j.load_tolerance,
        chain,
    })
}

fn run_compare(a: CompareArgs) -> anyhow::Result<ExitCode> {
    let settings = judge_settings(&a.judge, a.chain)?;
    let sets = std::iter::once(&a.baseline)
        .chain(&a.runs)
        .map(|s| load_set(s))
        .collect::<anyhow::Result<Vec<_>>>()?;
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
    if let Some(j) = &a.json {
        verdicts::save(j, &verdicts::ComparisonRecord::new(&cmp))?;
    }
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
    let mut read_a_history = false;
    for p in &a.records {
        if analyzer::history::is_history(p) {
            read_a_history = true;
            analyzer::history::runs(p, a.rate, |run| {
                history.push_values(run.source, run.label, &run.hops, run.values)
            })?;
        } else {
            RunRecord::for_each_in(p, |name, rec| {
                history.push(name, &rec);
                Ok(())
            })?;
        }
    }
    anyhow::ensure!(
        a.rate.is_none() || read_a_history,
        "--rate selects runs of a Parquet history directory, and none was given"
    );
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
    if let Some(j) = &a.json {
        verdicts::save(j, &verdicts::TrendRecord::new(&t))?;
    }
    Ok(exit_code(t.regressed()))
}

fn run_bisect_step(a: BisectStepArgs) -> anyhow::Result<ExitCode> {
    use analyzer::bisect::{self, record::StepRecord, Answer};
    let settings = judge_settings(&a.judge, false)?;
    let good = load_set(&a.good).context("--good")?;
    let bad = load_set(&a.bad).context("--bad")?;
    let candidate = load_set(&a.candidate).context("--candidate")?;
    let s = bisect::step(&good, &bad, &candidate, a.metric.as_deref(), &settings)?;
    emit(None, &analyzer::render::bisect::step(&s))?;
    if let Some(j) = &a.json {
        verdicts::save(
            j,
            &StepRecord::new(&s, analyzer::render::bisect::reason(&s), &settings),
        )?;
    }
    Ok(match s.answer {
        Answer::Good => ExitCode::SUCCESS,
        Answer::Bad => ExitCode::from(EXIT_REGRESSION),
        Answer::Undecided => ExitCode::from(EXIT_UNDECIDED),
    })
}
