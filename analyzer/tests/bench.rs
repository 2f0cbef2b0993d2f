//! `analyzer bench`: what the small benchmark scripts print, made from the real trafficgen
//! records and mcrd stats of `tests/fixtures/pipeline-raw/`. Where jq is here, each test also
//! runs the awk and jq the sub-command replaced (copied below from the scripts as they were) on
//! the same files: on an odd count of samples the text is byte for byte theirs; on an even
//! count their medians differed (the lower middle, or awk's six significant digits) and ours is
//! the mean of the middle two.

use std::path::{Path, PathBuf};
use std::process::Command as Process;

use assert_cmd::Command;
use serde_json::Value;

fn analyzer() -> Command {
    Command::cargo_bin("analyzer").expect("binary built by cargo test")
}

fn fixture(run: &str, file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/pipeline-raw")
        .join(run)
        .join(file)
}

fn read_json(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn write_json(p: &Path, v: &Value) {
    std::fs::write(p, serde_json::to_string_pretty(v).unwrap()).unwrap();
}

/// Runs `analyzer ARGS`, which must succeed, and returns its standard output.
fn bench(args: &[&str], paths: &[&Path]) -> String {
    let out = analyzer()
        .arg("bench")
        .args(args)
        .args(paths)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Whether jq (and so the old programs) can run here; says so loudly when not.
fn have_jq() -> bool {
    let ok = Process::new("jq")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!(
            "SKIPPED: jq is not installed; the comparison with the old awk and jq is left out"
        );
    }
    ok
}

/// Runs a bash program with `args` as $1...; returns its standard output.
fn old(program: &str, args: &[&Path]) -> String {
    let out = Process::new("bash")
        .arg("-c")
        .arg(program)
        .arg("old")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// scripts/bench-send.sh's analysis before `analyzer bench send` (one case dir per argument).
const OLD_BENCH_SEND: &str = r#"set -euo pipefail
median() { sort -g | awk '{v[NR]=$1} END {print (NR%2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2)}'; }
printf '%-22s %12s %14s %12s   %s\n' case median_pps cpu_ns_per_pkt rate_error trials_pps
for dir in "$@"; do
    name=$(basename "$dir")
    rates=() cpus=() errors=()
    for json in "$dir"/rep*.json; do
        rates+=("$(jq -r '.achieved_pps | floor' "$json")")
        cpus+=("$(jq -r 'if (.perf.task_clock_ns|type) == "number" then
                    (.perf.task_clock_ns / .packets_sent | floor) else "n/a" end' "$json")")
        errors+=("$(jq -r 'if .rate_error_ratio == null then "nan" else
                    .rate_error_ratio * 100 end' "$json")")
    done
    med=$(printf '%s\n' "${rates[@]}" | median)
    cpu=$(printf '%s\n' "${cpus[@]}" | median)
    err=$(printf '%s\n' "${errors[@]}" | median)
    [ "$err" = nan ] && err=- || err=$(printf '%+.3f%%' "$err")
    printf '%-22s %12s %14s %12s   %s\n' "$name" "$med" "$cpu" "$err" "${rates[*]}"
done
"#;

/// A case directory `dir/name` of the fixtures' send records, each edited by `edit`.
fn send_case(dir: &Path, name: &str, runs: &[&str], edit: impl Fn(usize, &mut Value)) -> PathBuf {
    let case = dir.join(name);
    std::fs::create_dir(&case).unwrap();
    for (i, run) in runs.iter().enumerate() {
        let mut doc = read_json(&fixture(run, "send.json"));
        edit(i, &mut doc);
        write_json(&case.join(format!("rep{}.json", i + 1)), &doc);
    }
    case
}

#[test]
fn send_table_is_the_old_one_on_an_odd_count_of_trials() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = ["mcrd", "route", "socat"];
    let paced = send_case(tmp.path(), "paced-5k", &runs, |_, _| {});
    let unpaced = send_case(tmp.path(), "unpaced-no-perf", &runs, |_, d| {
        d["rate_error_ratio"] = Value::Null;
        d["perf"]["task_clock_ns"] = "unavailable".into();
    });
    let new = bench(&["send"], &[&paced, &unpaced]);
    // 4999, 5000, 5000 pps; 18066, 20652, 18106 ns per packet; rate errors -0.009%, +0.004%,
    // +0.001%.
    assert!(
        new.contains(
            "paced-5k                       5000          18106      +0.001%   4999 5000 5000\n"
        ),
        "{new}"
    );
    assert!(
        new.contains("unpaced-no-perf                5000            n/a            -   "),
        "{new}"
    );
    if have_jq() {
        assert_eq!(new, old(OLD_BENCH_SEND, &[&paced, &unpaced]));
    }
}

#[test]
fn send_median_of_an_even_count_is_a_whole_rate() {
    let tmp = tempfile::tempdir().unwrap();
    let pps = [1_277_640.9, 1_287_639.2];
    let case = send_case(tmp.path(), "gso32-max", &["mcrd", "route"], |i, d| {
        d["achieved_pps"] = pps[i].into();
    });
    let new = bench(&["send"], &[&case]);
    let row = new.lines().nth(1).unwrap();
    let median: Vec<&str> = row.split_whitespace().collect();
    // (1277640 + 1287639) / 2 = 1282639.5, written whole.
    assert!(median[1] == "1282640" || median[1] == "1282639", "{row}");
    if have_jq() {
        // awk printed a computed number with its OFMT, six significant digits.
        let before = old(OLD_BENCH_SEND, &[&case]);
        assert!(before.contains(" 1.28264e+06 "), "{before}");
    }
}

#[test]
fn a_send_record_of_another_version_is_refused_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let case = send_case(tmp.path(), "c", &["mcrd", "route"], |i, d| {
        if i == 1 {
            d["version"] = 2.into();
        }
    });
    let out = analyzer()
        .args(["bench", "send"])
        .arg(&case)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("c/rep2.json") && err.contains("version"),
        "{err}"
    );
}

/// scripts/scrape-cost.sh's analysis before `analyzer bench scrape-cost`: the idle line (its
/// quantiles_ms), and the per-run jq and the medians of the runs ($1: OUT, $2: the count sent).
const OLD_SCRAPE_COST: &str = r#"set -euo pipefail
OUT=$1 count=$2
quantiles_ms() {
  sort -g | awk '{ v[NR] = $1 * 1000 } END {
    if (NR == 0) { print "no samples"; exit }
    p = int(0.99 * NR + 0.999999); if (p > NR) p = NR
    printf "median %.3f ms, p99 %.3f ms, max %.3f ms (%d scrapes)\n", v[int((NR + 1) / 2)], v[p], v[NR], NR }'
}
body=$(awk 'NR == 1 { print $2 }' "$OUT/idle-scrapes.txt")
echo "time per scrape, mcrd idle, body $body bytes: $(cut -d' ' -f1 "$OUT/idle-scrapes.txt" | quantiles_ms)"
relay_drops() { jq '.totals.kernel_drops + .totals.rx_overflow_frames' "$1"; }
: >"$OUT/runs.jsonl"
for recv in "$OUT"/*.recv.json; do
  name=$(basename "$recv" .recv.json) cond=${name%-*} rep=${name##*-}
  reads_done=0
  [ ! -e "$OUT/$name.reads.txt" ] || reads_done=$(wc -l <"$OUT/$name.reads.txt")
  relay_drops=$(($(relay_drops "$OUT/$name.stats-after.json") - $(relay_drops "$OUT/$name.stats-before.json")))
  jq -c --arg cond "$cond" --argjson rep "$rep" --argjson sent "$count" --argjson reads "$reads_done" \
    --argjson relay_drops "$relay_drops" '
    { condition: $cond, repeat: $rep, sent: $sent, received: .totals.received,
      lost: ($sent - .totals.received), relay_drops: $relay_drops, socket_drops, reads: $reads,
      latency_us: (.streams[0].latency_ns | { p50: (.p50 / 1000), p99: (.p99 / 1000),
                                          p999: (.p999 / 1000), max: (.max / 1000) }) }' \
    "$recv" >>"$OUT/runs.jsonl"
done
for cond in scrape; do
  echo "reader $cond during traffic: $(cat "$OUT"/"$cond"-*.reads.txt | quantiles_ms)"
done
jq -rs 'def median: sort | .[(length - 1) / 2 | floor];
  group_by(.condition)[] | "  \(.[0].condition): lost \(map(.lost) | median) (relay drops \(map(.relay_drops) | median)), latency p50 \(map(.latency_us.p50) | median), p99 \(map(.latency_us.p99) | median), p99.9 \(map(.latency_us.p999) | median), max \(map(.latency_us.max) | median), reads per run \(map(.reads) | median)"' \
  "$OUT/runs.jsonl"
rm "$OUT/runs.jsonl"
"#;

/// A scrape-cost OUT of three repeats of `none` and `scrape`, from the fixtures' three runs
/// (each 20,000 datagrams sent), with `drops` frames dropped at mcrd's ring in each run.
fn scrape_cost_dir(idle: &[f64], reads: &[&[f64]], drops: [u64; 3]) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path();
    let lines: String = idle.iter().map(|t| format!("{t} 8301\n")).collect();
    std::fs::write(out.join("idle-scrapes.txt"), lines).unwrap();
    let stats = read_json(&fixture("mcrd", "chain.json"))["ns"][1]["stats"].clone();
    for (i, run) in ["mcrd", "route", "socat"].iter().enumerate() {
        for (cond, rep) in [("none", i + 1), ("scrape", 3 - i)] {
            let name = format!("{cond}-{rep}");
            for f in ["send", "recv"] {
                std::fs::copy(
                    fixture(run, &format!("{f}.json")),
                    out.join(format!("{name}.{f}.json")),
                )
                .unwrap();
            }
            let mut after = stats.clone();
            after["totals"]["kernel_drops"] = (drops[i] + 7).into();
            after["totals"]["rx_overflow_frames"] = 0.into();
            let mut before = stats.clone();
            before["totals"]["kernel_drops"] = 7.into();
            before["totals"]["rx_overflow_frames"] = 0.into();
            write_json(&out.join(format!("{name}.stats-before.json")), &before);
            write_json(&out.join(format!("{name}.stats-after.json")), &after);
            if cond == "scrape" {
                let lines: String = reads[i].iter().map(|t| format!("{t}\n")).collect();
                std::fs::write(out.join(format!("{name}.reads.txt")), lines).unwrap();
            }
        }
    }
    tmp
}

#[test]
fn scrape_cost_report_is_the_old_one_on_odd_counts() {
    let idle = [0.000071, 0.000119, 0.0029, 0.000080, 0.0079];
    let reads: [&[f64]; 3] = [&[0.00033, 0.018], &[0.0004], &[0.0002, 0.0005]];
    let tmp = scrape_cost_dir(&idle, &reads, [0, 25, 3]);
    let new = bench(&["scrape-cost"], &[tmp.path()]);
    let want_idle =
        "time per scrape, mcrd idle, body 8301 bytes: median 0.119 ms, p99 7.900 ms, max 7.900 ms (5 scrapes)\n";
    assert!(new.starts_with(want_idle), "{new}");
    // The socat run lost 35 of 20,000; drops per run 0, 25, 3.
    assert!(
        new.contains("  none-3: sent 20000, received 19965, lost 35 (relay drops 3, socket drops 0), latency p50 366.591, p99 5996.543, p99.9 11886.591, max 24969.215, reads 0\n"),
        "{new}"
    );
    assert!(
        new.contains("reader scrape during traffic: median 0.400 ms, p99 18.000 ms, max 18.000 ms (5 scrapes)\n"),
        "{new}"
    );
    assert!(
        new.contains("medians over 3 repeats (latency in us):\n"),
        "{new}"
    );
    if have_jq() {
        let before = old(OLD_SCRAPE_COST, &[tmp.path(), Path::new("20000")]);
        let mut lines = before.lines();
        assert_eq!(format!("{}\n", lines.next().unwrap()), want_idle);
        for line in lines {
            assert!(
                new.contains(&format!("{line}\n")),
                "old line {line:?} not in\n{new}"
            );
        }
    }
}

#[test]
fn scrape_cost_medians_of_an_even_count_are_the_mean_of_the_middle_two() {
    let idle = [0.0001, 0.0002, 0.0003, 0.0010];
    let tmp = scrape_cost_dir(&idle, &[&[0.001], &[0.002], &[0.003]], [0, 0, 0]);
    let new = bench(&["scrape-cost"], &[tmp.path()]);
    // quantiles_ms took the lower middle: 0.200 ms.
    assert!(new.contains("median 0.250 ms, p99 1.000 ms"), "{new}");
}

#[test]
fn a_stats_document_of_another_version_is_refused_naming_it() {
    let tmp = scrape_cost_dir(&[0.001], &[&[0.001], &[0.002], &[0.003]], [0, 0, 0]);
    let p = tmp.path().join("scrape-2.stats-after.json");
    let mut doc = read_json(&p);
    doc["version"] = 2.into();
    write_json(&p, &doc);
    let out = analyzer()
        .args(["bench", "scrape-cost"])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("scrape-2.stats-after.json") && err.contains("version"),
        "{err}"
    );
}

/// scripts/bench-rules.sh's `pct` before `analyzer bench pings` ($1: the pings file).
const OLD_PINGS: &str = r#"set -euo pipefail
pct() { # P: percentile of the numbers on stdin
  sort -n | awk -v p="$1" '{ a[NR] = $1 } END { i = int((NR * p + 99) / 100); if (i < 1) i = 1; print a[i] }'
}
echo "$(pct 50 <"$1") / $(pct 99 <"$1") / $(pct 100 <"$1")"
"#;

#[test]
fn ping_cell_is_the_old_one_on_an_odd_count() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("pings");
    // 201 pings: 3 ms, a few slow ones, one that failed (999999).
    let mut v: Vec<u32> = vec![3; 150];
    v.extend([4; 40]);
    v.extend([9, 12, 20, 25, 26, 29, 30, 31, 40, 57, 999999]);
    let text: String = v.iter().map(|x| format!("{x}\n")).collect();
    std::fs::write(&p, text).unwrap();
    let new = bench(&["pings"], &[&p]);
    assert_eq!(new, "3 / 40 / 999999\n");
    if have_jq() {
        assert_eq!(new, old(OLD_PINGS, &[&p]));
    }
    let s = tmp.path().join("socket");
    let text: String = (1..=150)
        .map(|x| format!("{}\n", f64::from(x) / 10.0))
        .collect();
    std::fs::write(&s, text).unwrap();
    // The socket's p99 of 150 is the 149th (python took the 148th), its median the mean of
    // the 75th and 76th (python took the 76th).
    assert_eq!(
        bench(&["pings", "--socket"], &[&s, &p]),
        "3 / 40 / 999999 (socket 7.5 / 14.9)\n"
    );
}
