//! `scripts/perf-bisect.sh` on a real small repository: a throw-away git history of a tiny Rust
//! program, one commit of which plants a busy loop in its per-item work. The real script builds
//! each candidate in its own worktree, runs a stand-in pipeline (the program times its own work;
//! `analyzer ingest` turns that into a run record) and must name the planted commit.
//!
//! A second history whose slowdown is drowned in a noisy stand-in must end in "could not
//! decide", never a commit. Needs git, cargo and jq; about 9 s of CPU in all. Skipped, loudly,
//! when one is missing.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Commits after the known-good one; the slowdown lands in commit `PLANTED` (1-based).
const COMMITS: usize = 11;
const PLANTED: usize = 7;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The trimmed standard output of `cmd`, which must succeed (`what` names it if not).
fn stdout_of(cmd: &mut Command, what: &str) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn git(repo: &Path, args: &[&str]) -> String {
    stdout_of(
        Command::new("git")
            .arg("-C")
            .arg(repo)
            .args([
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@t",
                "-c",
                "commit.gpgsign=false",
            ])
            .args(args),
        &format!("git {args:?}"),
    )
}

/// The program: "forwards" `ITEMS` items, each hashed `ROUNDS` times, and prints
/// `recv=N egr_sent=N`. The stand-in times it in CPU seconds, not wall time: on two shared cores
/// a wall-clock window swung by 40% under a parallel `cargo test`, CPU time far less.
fn program(rounds: u32, note: usize) -> String {
    format!(
        r#"// revision {note}
const ITEMS: u64 = 3_000_000;
const ROUNDS: u32 = {rounds};

fn main() {{
    let mut acc = 0u64;
    for i in 0..ITEMS {{
        let mut x = i;
        for _ in 0..ROUNDS {{
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).rotate_left(17) ^ i);
        }}
        acc ^= x;
    }}
    std::hint::black_box(acc);
    println!("recv={{ITEMS}} egr_sent={{ITEMS}}");
}}
"#
    )
}

/// The stand-in pipeline: `--bin DIR --out DIR` as pipeline_veth.sh takes them; one run record.
const STAND_IN: &str = r#"#!/usr/bin/env bash
set -euo pipefail
while [ $# -gt 0 ]; do
  case $1 in
    --bin) BIN=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    *) echo "stand-in: unknown flag $1" >&2; exit 2 ;;
  esac
done
mkdir -p "$OUT"
# The hop's CPU time, as a relay's record has it: user and system seconds of the process.
TIMEFORMAT='%3U %3S'
{ time "$BIN/tiny" >"$OUT/counts.txt"; } 2>"$OUT/cpu.txt"
read -r user sys <"$OUT/cpu.txt"
# NOISE=PCT: a machine whose CPU cost swings by up to PCT percent from run to run.
if [ "${NOISE:-0}" -gt 0 ]; then
  user=$(awk -v u="$user" -v f=$((100 - NOISE + RANDOM % (2 * NOISE + 1))) 'BEGIN { printf "%.4f", u * f / 100 }')
fi
echo "$(cat "$OUT/counts.txt") user=${user}s system=${sys}s" >"$OUT/hop.txt"
"$ANALYZER" ingest --name tiny --hop "MCR-1=$OUT/hop.txt" --set duration=1s --out "$OUT/run.json"
"#;

/// A throw-away repository of COMMITS + 1 commits of the tiny program, where commit `PLANTED`
/// multiplies its per-item work by `slowdown`; returns the temporary directory, the repository and
/// the commits, oldest first.
fn history(slowdown: u32) -> (tempfile::TempDir, PathBuf, Vec<String>) {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("tiny");
    std::fs::create_dir_all(repo.join("src")).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    std::fs::write(
        repo.join("Cargo.toml"),
        "[package]\nname = \"tiny\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[workspace]\n",
    )
    .unwrap();
    std::fs::write(repo.join(".gitignore"), "/target\nCargo.lock\n").unwrap();
    let mut shas = Vec::new();
    for i in 0..=COMMITS {
        // The planted commit makes the per-item work longer; the others only change a comment.
        let rounds = if i >= PLANTED { 20 * slowdown / 10 } else { 20 };
        std::fs::write(repo.join("src/main.rs"), program(rounds, i)).unwrap();
        git(&repo, &["add", "-A"]);
        git(&repo, &["commit", "-q", "-m", &format!("revision {i}")]);
        shas.push(git(&repo, &["rev-parse", "HEAD"]));
    }
    write_executable(&tmp.path().join("stand-in.sh"), STAND_IN);
    (tmp, repo, shas)
}

/// Writes `text` to `path`, mode 0755.
fn write_executable(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    let mut perm = std::fs::metadata(path).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
    std::fs::set_permissions(path, perm).unwrap();
}

/// Runs the real script over the whole history with the stand-in pipeline.
fn perf_bisect(
    tmp: &Path,
    repo: &Path,
    shas: &[String],
    noise_pct: u32,
    extra: &[&str],
) -> (Option<i32>, String, String) {
    let analyzer = assert_cmd::cargo::cargo_bin("analyzer");
    let t = std::time::Instant::now();
    let out = Command::new(workspace().join("scripts/perf-bisect.sh"))
        .args([&shas[0], &shas[COMMITS]])
        .arg("--repo")
        .arg(repo)
        .arg("--pipeline")
        .arg(tmp.join("stand-in.sh"))
        .args(["--cargo-flags", "--release --bins", "--bins", "tiny"])
        .arg("--analyzer")
        .arg(&analyzer)
        .arg("--out")
        .arg(tmp.join("out"))
        .args(extra)
        // Its own target directory: the one of this test run is cargo's, and may be locked.
        .env("CARGO_TARGET_DIR", tmp.join("target"))
        .env("ANALYZER", &analyzer)
        .env("NOISE", noise_pct.to_string())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    eprintln!(
        "perf-bisect.sh took {:.1} s\n{stdout}\n{stderr}",
        t.elapsed().as_secs_f64()
    );
    // Every worktree is gone, and git knows it, whatever the answer.
    let worktrees = git(repo, &["worktree", "list"]);
    assert_eq!(worktrees.lines().count(), 1, "left behind:\n{worktrees}");
    (out.status.code(), stdout, stderr)
}

fn tools_present() -> bool {
    for tool in ["git", "cargo", "jq"] {
        if !have(tool) {
            eprintln!("SKIPPED: {tool} is not installed; perf-bisect.sh needs it");
            return false;
        }
    }
    true
}

#[test]
fn perf_bisect_names_the_planted_commit_of_a_real_repository() {
    if !tools_present() {
        return;
    }
    // Three times the work per item from commit PLANTED on: CPU per packet regresses.
    let (tmp, repo, shas) = history(30);
    let (code, stdout, stderr) = perf_bisect(
        tmp.path(),
        &repo,
        &shas,
        0,
        &["--max-runs", "200", "--time-limit", "300"],
    );
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    let named = format!("First bad commit: {} \"revision {PLANTED}\"", shas[PLANTED]);
    assert!(stdout.contains(&named), "expected `{named}` in:\n{stdout}");
    // Every step judged runs of its own: the endpoints were run again beside each candidate.
    let steps: Vec<_> = std::fs::read_dir(tmp.path().join("out/runs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("step-")
        })
        .collect();
    assert!(steps.len() >= 3, "step sets: {steps:?}");
    for set in &steps {
        for end in [&shas[0], &shas[COMMITS]] {
            let runs = std::fs::read_dir(set.join(end)).map_or(0, |d| d.count());
            assert!(runs >= 5, "{} has {runs} runs of {end}", set.display());
        }
    }
    assert!(
        stdout.contains("Metric: hop1.cpu_ns_per_packet."),
        "{stdout}"
    );
    assert!(stdout.contains("Wall time:"), "{stdout}");
    assert!(tmp.path().join("out/bisect.md").is_file());
}

#[test]
fn perf_bisect_says_could_not_decide_when_noise_wins() {
    if !tools_present() {
        return;
    }
    // A 10% slowdown on a machine whose throughput swings by ±70%: the repeats cannot tell.
    // (The noise is $RANDOM, unseeded: the power of 8 + 8 runs here is a few percent per step,
    // and naming even the right commit would need every step to pass, which fails this test
    // far more rarely than that.)
    let (tmp, repo, shas) = history(11);
    let (code, stdout, stderr) = perf_bisect(
        tmp.path(),
        &repo,
        &shas,
        70,
        &[
            "--metric",
            "hop1.cpu_ns_per_packet",
            "--max-repeats",
            "8",
            "--max-runs",
            "60",
        ],
    );
    assert_eq!(code, Some(3), "{stdout}\n{stderr}");
    assert!(stdout.starts_with("Could not decide between "), "{stdout}");
    assert!(!stdout.contains("First bad commit"), "{stdout}");
}

/// `nightly.sh --bisect`'s glue: from trend's regressed change point to the two commits, passed
/// to perf-bisect.sh with the night's rate and pipeline flags. perf-bisect.sh itself is replaced
/// by a recorder of its arguments (the tests above run the real one).
#[test]
fn nightly_bisect_takes_the_commits_either_side_of_the_change_point() {
    if !tools_present() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let analyzer = assert_cmd::cargo::cargo_bin("analyzer");
    let mut records = Vec::new();
    for i in 1..=8u64 {
        let (tx, commit) = if i <= 4 {
            (900_000, "aaa")
        } else {
            (700_000, "bbb")
        };
        let hop = d.join(format!("h{i}.txt"));
        std::fs::write(&hop, format!("recv=1000000 egr_sent={}\n", tx + i * 100)).unwrap();
        let rec = d.join(format!("r{i}.json"));
        let ok = Command::new(&analyzer)
            .args([
                "ingest",
                "--name",
                &format!("night {i}"),
                "--set",
                "duration=1s",
            ])
            .arg("--hop")
            .arg(format!("MCR-1={}", hop.display()))
            .args(["--set", &format!("env.commit={commit}"), "--out"])
            .arg(&rec)
            .status()
            .unwrap();
        assert!(ok.success());
        records.push(rec);
    }
    let trend = d.join("trend.json");
    let st = Command::new(&analyzer)
        .arg("trend")
        .args(&records)
        .arg("--json")
        .arg(&trend)
        .output()
        .unwrap();
    assert_eq!(st.status.code(), Some(1), "trend must see the regression");
    std::fs::write(
        d.join("perf-bisect.sh"),
        "#!/bin/sh\necho \"args: $*\"\necho 'First bad commit: recorded'\n",
    )
    .unwrap();
    let script = format!(
        ". '{}'; OUT='{d}'; HERE='{d}'; ANALYZER=an; RELAY=mcrd HOPS=3 PACKETS=9 EXTRA=(--workers 2); \
         chmod +x '{d}/perf-bisect.sh'; bs_nightly_bisect 20000 '{}'",
        workspace().join("scripts/nightly.sh").display(),
        trend.display(),
        d = d.display()
    );
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("First bad commit: recorded"), "{err}");
    let log = std::fs::read_to_string(d.join("bisect-20000.log")).unwrap();
    assert!(
        log.starts_with(&format!(
            "args: aaa bbb --pps 20000 --analyzer an --out {}/bisect-20000 -- --relay mcrd \
             --hops 3 --packets 9 --workers 2",
            d.display()
        )),
        "{log}"
    );
}

/// What `pl_bin_commit BIN ROOT` (scripts/lib/pl_common.sh) prints, the commit a pipeline run
/// record carries.
fn bin_commit(bin: &Path, root: &Path) -> String {
    stdout_of(
        Command::new("bash")
            .arg("-c")
            .arg(r#". "$1/scripts/lib/pl_common.sh"; pl_bin_commit "$2" "$3""#)
            .arg("bash")
            .arg(workspace())
            .arg(bin)
            .arg(root),
        "pl_bin_commit",
    )
}

/// A bisection runs one checkout's scripts on binaries built from other commits, so a run
/// record must carry the commit the binaries name, not the checkout's: records of every
/// candidate once carried the bad end's commit.
#[test]
fn a_run_record_carries_the_commit_its_binaries_were_built_from() {
    if !have("git") {
        eprintln!("SKIPPED: git is not installed");
        return;
    }
    let (tmp, repo, shas) = history(10);
    let bin = tmp.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let fake = |name: &str, revision: &str| {
        write_executable(
            &bin.join(name),
            &format!("#!/bin/sh\necho '{name} 0.1.0 (revision {revision}; features: x)'\n"),
        );
    };
    // No binary names a commit: the checkout's own (HEAD is the last commit).
    assert_eq!(bin_commit(&bin, &repo), shas[COMMITS]);
    // trafficgen's revision when there is no mcrd, expanded to the full hash.
    fake("trafficgen", &shas[3][..12]);
    assert_eq!(bin_commit(&bin, &repo), shas[3]);
    // mcrd's first, and a dirty build stays marked.
    fake("mcrd", &format!("{}-dirty", &shas[2][..12]));
    assert_eq!(bin_commit(&bin, &repo), format!("{}-dirty", shas[2]));
    // A commit the repository does not hold is kept as the binary says it.
    fake("mcrd", "0123456789ab");
    assert_eq!(bin_commit(&bin, &repo), "0123456789ab");
}
