//! `trafficgen sweep`: the highest rate with no loss, and the highest with loss at most a given
//! ratio, found by bisection with repeated trials (RFC 2544, section 26.1, style).
//!
//! Each trial starts a fresh receiver (a child process, optionally inside another network
//! namespace through `ip netns exec`), waits until it has joined, sends at the trial rate for
//! the trial duration, and reads the receiver's record. Loss is counted from the sender's truth:
//! packets the kernel accepted minus distinct packets received. A rate passes a criterion only
//! if every trial at that rate passes it and the sender kept up with the rate. Trials are cached
//! per rate, so the second search reuses the first one's work.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::{self, BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::record::{
    RecvRecord, SweepConfig, SweepRecord, SweepTrial, RECORD_MINOR_VERSION, RECORD_VERSION,
    SWEEP_SCHEMA,
};
use crate::send::{self, SendError, SendLimit, SendOptions};
use crate::sys;

/// How long the receiver may take to join before a trial is abandoned.
const RECEIVER_READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long after the send phase the receiver may take to drain and exit.
const RECEIVER_EXIT_TIMEOUT: Duration = Duration::from_secs(15);
/// The receiver's own time limit beyond the send phase: shorter than [`RECEIVER_EXIT_TIMEOUT`],
/// so a receiver that got nothing at all (its idle timeout never starts) still exits by itself
/// and the trial counts everything as lost instead of failing.
const RECEIVER_LIMIT_AFTER_SEND: Duration = Duration::from_secs(8);
/// A trial whose sender achieved less than this share of the target rate did not test it.
const KEPT_UP_RATIO: f64 = 0.99;

/// Everything `trafficgen sweep` needs.
#[derive(Debug, Clone)]
pub struct SweepOptions {
    /// Sender template: destination, size, threads, interface. Rate and limit are per trial.
    pub send: SendOptions,
    /// Program and leading arguments that run `trafficgen` (e.g. the current executable).
    pub receiver_program: Vec<OsString>,
    pub recv_netns: Option<String>,
    pub recv_iface: Option<String>,
    pub trial_duration: Duration,
    pub trials_per_rate: u32,
    pub min_pps: u64,
    pub max_pps: u64,
    pub resolution_pps: u64,
    pub max_loss_ratio: f64,
}

#[derive(Debug, Error)]
pub enum SweepError {
    #[error("--min-pps {min} must be at least 1 and below --max-pps {max}")]
    BadBounds { min: u64, max: u64 },
    #[error("--resolution-pps must be at least 1")]
    BadResolution,
    #[error("--trials must be at least 1")]
    NoTrials,
    #[error("--max-loss-ratio {0} must be between 0 and 1")]
    BadLossRatio(f64),
    #[error("--trial-duration must be longer than zero")]
    ZeroDuration,
    #[error("cannot start the receiver {program:?}: {error}")]
    ReceiverSpawn { program: OsString, error: io::Error },
    #[error("the receiver did not become ready: {0}")]
    ReceiverNotReady(String),
    #[error("the receiver did not exit within {0:?} after the trial")]
    ReceiverStuck(Duration),
    #[error("the receiver failed ({0})")]
    ReceiverFailed(String),
    #[error("cannot read the receiver's record {path}: {error}")]
    ReceiverRecord { path: String, error: String },
    // The cause is the source, printed by the caller's chain: not repeated here.
    #[error("sender")]
    Send(#[from] SendError),
    #[error("interrupted")]
    Interrupted,
    #[error("cannot create a temporary file: {0}")]
    Temp(io::Error),
}

impl SweepError {
    /// Whether the error is in the flags (exit code 2).
    pub fn is_usage(&self) -> bool {
        match self {
            SweepError::BadBounds { .. }
            | SweepError::BadResolution
            | SweepError::NoTrials
            | SweepError::BadLossRatio(_)
            | SweepError::ZeroDuration => true,
            SweepError::Send(e) => e.is_usage(),
            _ => false,
        }
    }
}

fn validate(o: &SweepOptions) -> Result<(), SweepError> {
    // Before a receiver is started for it (its own refusal of port 0 read as "not ready").
    crate::send::validate_dst(o.send.dst).map_err(SweepError::Send)?;
    if o.min_pps == 0 || o.min_pps >= o.max_pps {
        return Err(SweepError::BadBounds {
            min: o.min_pps,
            max: o.max_pps,
        });
    }
    if o.resolution_pps == 0 {
        return Err(SweepError::BadResolution);
    }
    if o.trials_per_rate == 0 {
        return Err(SweepError::NoTrials);
    }
    if !(0.0..=1.0).contains(&o.max_loss_ratio) {
        return Err(SweepError::BadLossRatio(o.max_loss_ratio));
    }
    if o.trial_duration.is_zero() {
        return Err(SweepError::ZeroDuration);
    }
    Ok(())
}

/// Highest rate in `[min, max]` for which `passes` holds, assuming it holds below some
/// threshold and fails above it, to within `resolution`; `None` if `min` fails.
pub fn bisect<E>(
    min: u64,
    max: u64,
    resolution: u64,
    mut passes: impl FnMut(u64) -> Result<bool, E>,
) -> Result<Option<u64>, E> {
    if passes(max)? {
        return Ok(Some(max));
    }
    if !passes(min)? {
        return Ok(None);
    }
    let (mut good, mut bad) = (min, max);
    while bad - good > resolution.max(1) {
        let mid = good + (bad - good) / 2;
        if passes(mid)? {
            good = mid;
        } else {
            bad = mid;
        }
    }
    Ok(Some(good))
}

/// Kills the receiver (by pid) if a trial is abandoned.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

struct Sweeper<'a> {
    options: &'a SweepOptions,
    trials: Vec<SweepTrial>,
    by_rate: BTreeMap<u64, Vec<SweepTrial>>,
    report: &'a mut dyn FnMut(&SweepTrial),
}

impl Sweeper<'_> {
    fn trials_at(&mut self, pps: u64) -> Result<Vec<SweepTrial>, SweepError> {
        if let Some(t) = self.by_rate.get(&pps) {
            return Ok(t.clone());
        }
        let mut results = Vec::new();
        for index in 0..self.options.trials_per_rate {
            if sys::stop_requested() {
                return Err(SweepError::Interrupted);
            }
            let trial = run_trial(self.options, pps, index)?;
            (self.report)(&trial);
            self.trials.push(trial.clone());
            results.push(trial);
        }
        self.by_rate.insert(pps, results.clone());
        Ok(results)
    }

    fn passes(&mut self, pps: u64, max_loss_ratio: f64) -> Result<bool, SweepError> {
        let trials = self.trials_at(pps)?;
        Ok(trials.iter().all(|t| {
            t.sender_kept_up
                && if max_loss_ratio == 0.0 {
                    t.packets_lost == 0
                } else {
                    t.loss_ratio <= max_loss_ratio
                }
        }))
    }
}

/// Runs the sweep; `report` is called after every trial (for progress output).
pub fn run(
    options: &SweepOptions,
    mut report: impl FnMut(&SweepTrial),
) -> Result<SweepRecord, SweepError> {
    validate(options)?;
    let started_unix_ns = sys::realtime_ns();
    let mut sweeper = Sweeper {
        options,
        trials: Vec::new(),
        by_rate: BTreeMap::new(),
        report: &mut report,
    };
    let (min, max, res) = (options.min_pps, options.max_pps, options.resolution_pps);
    let zero_loss_pps = bisect(min, max, res, |pps| sweeper.passes(pps, 0.0))?;
    let max_loss_ratio_pps = bisect(min, max, res, |pps| {
        sweeper.passes(pps, options.max_loss_ratio)
    })?;
    Ok(SweepRecord {
        schema: SWEEP_SCHEMA.to_string(),
        version: RECORD_VERSION,
        minor_version: RECORD_MINOR_VERSION,
        trafficgen_version: env!("CARGO_PKG_VERSION").to_string(),
        started_unix_ns,
        config: SweepConfig {
            dst: options.send.dst.to_string(),
            iface: options.send.iface.clone(),
            recv_netns: options.recv_netns.clone(),
            recv_iface: options.recv_iface.clone(),
            payload_size_bytes: options.send.size as u32,
            threads: options.send.threads,
            trial_duration_ns: options.trial_duration.as_nanos() as u64,
            trials_per_rate: options.trials_per_rate,
            min_pps: min,
            max_pps: max,
            resolution_pps: res,
            max_loss_ratio: options.max_loss_ratio,
        },
        zero_loss_pps,
        max_loss_ratio_pps,
        trials: sweeper.trials,
    })
}

fn receiver_command(options: &SweepOptions, json: &std::path::Path) -> Command {
    let mut words: Vec<OsString> = Vec::new();
    if let Some(ns) = &options.recv_netns {
        words.extend(["ip", "netns", "exec"].map(OsString::from));
        words.push(ns.into());
    }
    words.extend(options.receiver_program.iter().cloned());
    words.extend(["recv", "--exit-on-end", "--ready-line", "--group"].map(OsString::from));
    words.push(options.send.dst.to_string().into());
    words.push("--idle-timeout".into());
    words.push("3s".into());
    words.push("--duration".into());
    words.push(
        format!(
            "{}ms",
            (options.trial_duration + RECEIVER_LIMIT_AFTER_SEND).as_millis()
        )
        .into(),
    );
    words.push("--json".into());
    words.push(json.into());
    if let Some(iface) = &options.recv_iface {
        words.push("--iface".into());
        words.push(iface.into());
    }
    let mut command = Command::new(&words[0]);
    command.args(&words[1..]);
    command
}

/// One trial: fresh receiver, one send phase, both records.
fn run_trial(options: &SweepOptions, pps: u64, index: u32) -> Result<SweepTrial, SweepError> {
    let json = tempfile::Builder::new()
        .prefix("trafficgen-sweep-recv")
        .suffix(".json")
        .tempfile()
        .map_err(SweepError::Temp)?;
    let mut command = receiver_command(options, json.path());
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = command.spawn().map_err(|error| SweepError::ReceiverSpawn {
        program: command.get_program().to_os_string(),
        error,
    })?;
    let mut receiver = ChildGuard(child);
    wait_ready(&mut receiver.0)?;

    let send_options = SendOptions {
        pps,
        limit: SendLimit::Duration(options.trial_duration),
        ..options.send.clone()
    };
    let sent = send::run(&send_options, Duration::from_millis(200), |_| {})?;

    let deadline = Instant::now() + RECEIVER_EXIT_TIMEOUT;
    let status = loop {
        if let Some(status) = receiver
            .0
            .try_wait()
            .map_err(|e| SweepError::ReceiverFailed(e.to_string()))?
        {
            break status;
        }
        if Instant::now() > deadline {
            return Err(SweepError::ReceiverStuck(RECEIVER_EXIT_TIMEOUT));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    if !status.success() {
        let mut stderr = String::new();
        if let Some(mut e) = receiver.0.stderr.take() {
            let _ = io::Read::read_to_string(&mut e, &mut stderr);
        }
        return Err(SweepError::ReceiverFailed(format!(
            "{status}: {}",
            stderr.trim()
        )));
    }
    let record_error = |error: String| SweepError::ReceiverRecord {
        path: json.path().display().to_string(),
        error,
    };
    let text = std::fs::read_to_string(json.path()).map_err(|e| record_error(e.to_string()))?;
    let got: RecvRecord = serde_json::from_str(&text).map_err(|e| record_error(e.to_string()))?;

    let received = got.totals.received.min(sent.packets_sent);
    let lost = sent.packets_sent - received;
    Ok(SweepTrial {
        target_pps: pps,
        achieved_pps: sent.achieved_pps,
        trial_index: index,
        packets_sent: sent.packets_sent,
        send_errors: sent.send_errors,
        packets_received: received,
        packets_lost: lost,
        socket_drops: got.socket_drops,
        loss_ratio: if sent.packets_sent == 0 {
            0.0
        } else {
            lost as f64 / sent.packets_sent as f64
        },
        sender_kept_up: sent.send_errors == 0 && sent.achieved_pps >= pps as f64 * KEPT_UP_RATIO,
    })
}

/// Reads the receiver's stdout until its `ready` line (it has joined the group).
fn wait_ready(child: &mut Child) -> Result<(), SweepError> {
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| SweepError::ReceiverNotReady("no stdout".into()))?;
    // The read blocks, so it runs on a helper thread and the wait is bounded.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        let result = reader.read_line(&mut line).map(|_| line);
        // Keep draining so the receiver never blocks on a full pipe when printing its summary.
        let _ = tx.send(result);
        let _ = io::copy(&mut reader, &mut io::sink());
    });
    match rx.recv_timeout(RECEIVER_READY_TIMEOUT) {
        Ok(Ok(line)) if line.trim() == "ready" => Ok(()),
        Ok(Ok(line)) => {
            let mut stderr = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = io::Read::read_to_string(&mut e, &mut stderr);
            }
            Err(SweepError::ReceiverNotReady(format!(
                "{:?} {}",
                line.trim(),
                stderr.trim()
            )))
        }
        Ok(Err(e)) => Err(SweepError::ReceiverNotReady(e.to_string())),
        Err(_) => Err(SweepError::ReceiverNotReady(format!(
            "no ready line within {RECEIVER_READY_TIMEOUT:?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn search(threshold: u64, min: u64, max: u64, res: u64) -> (Option<u64>, Vec<u64>) {
        let mut asked = Vec::new();
        let found = bisect::<()>(min, max, res, |pps| {
            asked.push(pps);
            Ok(pps <= threshold)
        })
        .unwrap();
        (found, asked)
    }

    #[test]
    fn bisection_finds_the_threshold_within_resolution() {
        let (found, asked) = search(123_456, 1_000, 1_000_000, 1_000);
        let found = found.unwrap();
        assert!(found <= 123_456 && 123_456 - found <= 1_000, "{found}");
        assert!(asked.len() <= 2 + 10, "{asked:?}"); // log2(999) ~ 10 steps
    }

    #[test]
    fn bisection_edges() {
        assert_eq!(search(5_000_000, 1_000, 1_000_000, 1).0, Some(1_000_000));
        assert_eq!(search(10, 1_000, 1_000_000, 1).0, None);
        assert_eq!(search(1_000, 1_000, 1_000_000, 1).0, Some(1_000));
    }

    #[test]
    fn bad_options_name_their_flag() {
        let base = SweepOptions {
            send: SendOptions::new("239.1.1.1:5000".parse().unwrap(), 0, SendLimit::Count(1)),
            receiver_program: vec!["trafficgen".into()],
            recv_netns: None,
            recv_iface: None,
            trial_duration: Duration::from_secs(1),
            trials_per_rate: 1,
            min_pps: 1000,
            max_pps: 2000,
            resolution_pps: 10,
            max_loss_ratio: 0.01,
        };
        assert!(validate(&base).is_ok());
        let cases = [
            (
                SweepOptions {
                    min_pps: 3000,
                    ..base.clone()
                },
                "--min-pps",
            ),
            (
                SweepOptions {
                    min_pps: 0,
                    ..base.clone()
                },
                "--min-pps",
            ),
            (
                SweepOptions {
                    resolution_pps: 0,
                    ..base.clone()
                },
                "--resolution-pps",
            ),
            (
                SweepOptions {
                    trials_per_rate: 0,
                    ..base.clone()
                },
                "--trials",
            ),
            (
                SweepOptions {
                    max_loss_ratio: 1.5,
                    ..base.clone()
                },
                "--max-loss-ratio",
            ),
            (
                SweepOptions {
                    trial_duration: Duration::ZERO,
                    ..base.clone()
                },
                "--trial-duration",
            ),
        ];
        for (o, flag) in cases {
            let e = validate(&o).unwrap_err();
            assert!(e.is_usage());
            assert!(e.to_string().contains(flag), "{e} should name {flag}");
        }
    }
}
