//! The sender: options, thread orchestration and the send record.
//!
//! Threads share nothing on the packet path: each has its own socket, schedule (its share of the
//! rate, starting at a common instant), streams and counters. The caller watches progress
//! through one relaxed atomic per thread, padded to its own cache line.

mod socket;
mod worker;

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Barrier, OnceLock};
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::histogram::{distribution, new_histogram};
use crate::pacing::{split_even, Schedule};
use crate::probe::HEADER_LEN;
use crate::record::{
    PerfCounters, SendConfig, SendRecord, SendThreadRecord, RECORD_MINOR_VERSION, RECORD_VERSION,
    SEND_SCHEMA, WIRE_OVERHEAD_BYTES, WIRE_OVERHEAD_BYTES_V6,
};
use crate::sys;
pub use worker::END_MARKER_INTERVAL;
use worker::{ThreadOutcome, ThreadPlan, ERRNO_SLOTS};

/// Most repeats of each stream's end marker (`--end-markers`): 1,000 take 5 s. A receiver needs
/// one to arrive; the repeats only cover loss. Without a bound, `--end-markers 4294967295`
/// sent markers for 250 days.
pub const MAX_END_MARKERS: u32 = 1000;

/// Largest UDP payload over IPv4 (65535 - 20 - 8).
pub const MAX_PAYLOAD: usize = 65_507;
/// Largest total a single `UDP_SEGMENT` send may carry (the kernel's limit is one IP datagram).
const GSO_MAX_BYTES: usize = MAX_PAYLOAD;
/// The kernel's `UDP_MAX_SEGMENTS` (64 up to Linux 6.x; 128 later). We stay within the older limit.
const GSO_MAX_SEGMENTS: usize = 64;

/// How far in the future the common start is set when the threads are released, so that a
/// thread woken a little late from the barrier is still on time for its first packet.
const START_DELAY: Duration = Duration::from_millis(2);

/// How a run ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendLimit {
    Count(u64),
    Duration(Duration),
}

/// How datagrams are grouped into send calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batching {
    /// Messages per `sendmmsg` call.
    pub messages_per_call: usize,
    /// Datagrams per message: more than 1 means a `UDP_SEGMENT` (GSO) message.
    pub segments_per_message: usize,
}

/// Everything `trafficgen send` needs.
#[derive(Debug, Clone)]
pub struct SendOptions {
    /// IPv4 or IPv6: the sockets' family follows it.
    pub dst: SocketAddr,
    pub src: Option<IpAddr>,
    pub iface: Option<String>,
    /// Aggregate packets per second; 0 = as fast as possible.
    pub pps: u64,
    pub limit: SendLimit,
    /// UDP payload bytes per datagram, probe header included.
    pub size: usize,
    pub ttl: u32,
    pub threads: u32,
    pub streams: u32,
    /// Datagrams per GSO message; 1 turns GSO off (plain sendmmsg).
    pub gso_segments: u32,
    /// Messages per sendmmsg call.
    pub batch_messages: u32,
    pub end_marker_repeats: u32,
    /// Longest a due packet may wait for later ones to share its send call (see
    /// [`Schedule::min_batch`]).
    pub coalesce: Duration,
}

impl SendOptions {
    /// Defaults for everything but destination, rate and limit.
    pub fn new(dst: SocketAddr, pps: u64, limit: SendLimit) -> SendOptions {
        SendOptions {
            dst,
            src: None,
            iface: None,
            pps,
            limit,
            size: 1400,
            ttl: 8,
            threads: 1,
            streams: 1,
            gso_segments: 32,
            batch_messages: 8,
            end_marker_repeats: 3,
            coalesce: Duration::from_micros(20),
        }
    }
}

/// Why a send run could not start or failed.
#[derive(Debug, Error)]
pub enum SendError {
    #[error("--size {size} is out of range: it must be between {HEADER_LEN} (the probe header) and {MAX_PAYLOAD} bytes")]
    SizeOutOfRange { size: usize },
    #[error("--size {size} does not fit the path MTU {mtu} (with {headers} bytes of IP and UDP headers): use --size {max} or less")]
    ExceedsMtu {
        size: usize,
        mtu: usize,
        headers: usize,
        max: usize,
    },
    #[error("--threads must be at least 1")]
    NoThreads,
    #[error("--streams {streams} is less than --threads {threads}: every thread needs a stream")]
    TooFewStreams { streams: u32, threads: u32 },
    #[error("--pps {pps} is less than --threads {threads}: every thread needs at least 1 pps")]
    RateBelowThreads { pps: u64, threads: u32 },
    #[error(
        "--gso-segments must be between 1 and {GSO_MAX_SEGMENTS}, and --batch between 1 and 1024"
    )]
    BadBatching,
    #[error("--dst {0} is not a usable destination (unspecified or broadcast)")]
    BadDestination(SocketAddr),
    #[error("--dst {0}: port 0 is not a destination port (UDP ports are 1 to 65535)")]
    ZeroPort(SocketAddr),
    #[error("--src {src} and --dst {dst} are of different address families: give both as IPv4 or both as IPv6")]
    MixedFamilies { src: IpAddr, dst: SocketAddr },
    #[error("--duration must be longer than zero")]
    ZeroDuration,
    #[error("--end-markers {given} is too many: at most {MAX_END_MARKERS} (each repeat waits {ms} ms, so {MAX_END_MARKERS} take {secs} s); a few are enough to cover a lost datagram", ms = END_MARKER_INTERVAL.as_millis(), secs = (END_MARKER_INTERVAL * MAX_END_MARKERS).as_secs())]
    TooManyEndMarkers { given: u32 },
    #[error("--iface {0}: no such interface ({1})")]
    NoSuchInterface(String, io::Error),
    #[error("--src {0}: cannot bind ({1}); is the address configured on this host?")]
    BindSource(IpAddr, io::Error),
    #[error("--dst {0} is unreachable: {1} (for multicast, add a route such as `ip route add 224.0.0.0/4 dev IF` (IPv6: `ip -6 route add ff00::/8 dev IF`) or pass --iface)")]
    Unreachable(SocketAddr, io::Error),
    #[error("cannot {0}: {1}")]
    Socket(&'static str, io::Error),
    #[error("cannot start sender thread: {0}")]
    Thread(io::Error),
    #[error("a sender thread panicked")]
    ThreadPanicked,
}

impl SendError {
    /// Whether the error is in the flags (exit code 2) rather than in the run (exit code 1).
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            SendError::SizeOutOfRange { .. }
                | SendError::ExceedsMtu { .. }
                | SendError::NoThreads
                | SendError::TooFewStreams { .. }
                | SendError::RateBelowThreads { .. }
                | SendError::BadBatching
                | SendError::BadDestination(_)
                | SendError::ZeroPort(_)
                | SendError::MixedFamilies { .. }
                | SendError::ZeroDuration
                | SendError::TooManyEndMarkers { .. }
                | SendError::NoSuchInterface(..)
        )
    }
}

/// One relaxed counter per thread on its own cache line, so threads never share a line.
#[repr(align(64))]
#[derive(Default)]
pub struct PaddedCounter(pub AtomicU64);

/// Packets sent so far, per thread, for a progress display.
pub type Progress = Arc<[PaddedCounter]>;

/// The batching `options` ask for, capped to what the kernel allows for this datagram size.
pub fn batching_for(options: &SendOptions) -> Batching {
    let by_size = (GSO_MAX_BYTES / options.size.max(1)).max(1);
    Batching {
        messages_per_call: options.batch_messages as usize,
        segments_per_message: (options.gso_segments as usize)
            .min(by_size)
            .min(GSO_MAX_SEGMENTS),
    }
}

/// `--dst`: an address a datagram can go to, and a port other than 0.
pub(crate) fn validate_dst(dst: SocketAddr) -> Result<(), SendError> {
    if socket::is_bad_destination(dst.ip()) {
        return Err(SendError::BadDestination(dst));
    }
    if dst.port() == 0 {
        return Err(SendError::ZeroPort(dst));
    }
    Ok(())
}

fn validate(options: &SendOptions) -> Result<(), SendError> {
    if let Some(src) = options.src.filter(|s| s.is_ipv4() != options.dst.is_ipv4()) {
        return Err(SendError::MixedFamilies {
            src,
            dst: options.dst,
        });
    }
    if !(HEADER_LEN..=MAX_PAYLOAD).contains(&options.size) {
        return Err(SendError::SizeOutOfRange { size: options.size });
    }
    if options.threads == 0 {
        return Err(SendError::NoThreads);
    }
    if options.streams < options.threads {
        return Err(SendError::TooFewStreams {
            streams: options.streams,
            threads: options.threads,
        });
    }
    if options.pps != 0 && options.pps < u64::from(options.threads) {
        return Err(SendError::RateBelowThreads {
            pps: options.pps,
            threads: options.threads,
        });
    }
    if !(1..=GSO_MAX_SEGMENTS as u32).contains(&options.gso_segments)
        || !(1..=1024).contains(&options.batch_messages)
    {
        return Err(SendError::BadBatching);
    }
    validate_dst(options.dst)?;
    if options.end_marker_repeats > MAX_END_MARKERS {
        return Err(SendError::TooManyEndMarkers {
            given: options.end_marker_repeats,
        });
    }
    if options.limit == SendLimit::Duration(Duration::ZERO) {
        return Err(SendError::ZeroDuration);
    }
    Ok(())
}

/// A handle to watch a run in progress: per-thread sent counters and the total to send.
pub struct RunWatch {
    pub progress: Progress,
    /// Packets the run will send in total, if known in advance.
    pub total: Option<u64>,
}

/// Runs the sender to completion and returns its record. `watch` is called every
/// `watch_interval` on the calling thread while the senders run (for a progress bar).
pub fn run(
    options: &SendOptions,
    watch_interval: Duration,
    mut watch: impl FnMut(&RunWatch),
) -> Result<SendRecord, SendError> {
    validate(options)?;
    let sockets = (0..options.threads)
        .map(|_| socket::open(options))
        .collect::<Result<Vec<_>, _>>()?;
    let batching = batching_for(options);
    let plans = plans(options, batching);
    let total = plans.iter().map(|p| p.count).sum::<Option<u64>>();
    let progress: Progress = (0..options.threads)
        .map(|_| PaddedCounter::default())
        .collect();
    let sndbuf_bytes = sockets[0].sndbuf_bytes;

    // Threads start together: each waits at the barrier, then reads the common start instant.
    // Scoped threads borrow these; none outlives the run.
    let barrier = &Barrier::new(options.threads as usize + 1);
    let start_slot = &OnceLock::<Instant>::new();
    let mut started_unix_ns = 0;
    let outcomes = std::thread::scope(|scope| -> Result<Vec<ThreadOutcome>, SendError> {
        let mut handles = Vec::new();
        for (plan, sock) in plans.into_iter().zip(&sockets) {
            let progress = &progress;
            let handle = std::thread::Builder::new()
                .name(format!("tg-send-{}", plan.index))
                .spawn_scoped(scope, move || {
                    let index = plan.index as usize;
                    let wait_for_start = || {
                        barrier.wait();
                        *start_slot
                            .get()
                            .expect("start is set before the barrier opens")
                    };
                    worker::run(plan, &sock.socket, wait_for_start, &progress[index].0)
                })
                .map_err(SendError::Thread)?;
            handles.push(handle);
        }
        started_unix_ns = sys::realtime_ns() + START_DELAY.as_nanos() as u64;
        start_slot
            .set(Instant::now() + START_DELAY)
            .expect("start is set exactly once");
        barrier.wait();
        let run_watch = RunWatch {
            progress: Arc::clone(&progress),
            total,
        };
        while !handles.iter().all(|h| h.is_finished()) {
            watch(&run_watch);
            std::thread::sleep(watch_interval);
        }
        watch(&run_watch);
        handles
            .into_iter()
            .map(|h| h.join().map_err(|_| SendError::ThreadPanicked))
            .collect()
    })?;
    Ok(build_record(
        options,
        batching,
        sndbuf_bytes,
        started_unix_ns,
        outcomes,
    ))
}

/// Splits the run over threads: rates and counts evenly, streams round-robin.
fn plans(options: &SendOptions, batching: Batching) -> Vec<ThreadPlan> {
    (0..options.threads)
        .map(|index| {
            let pps = split_even(options.pps, options.threads, index);
            let (count, deadline) = match options.limit {
                SendLimit::Count(n) => (Some(split_even(n, options.threads, index)), None),
                SendLimit::Duration(d) if pps > 0 => (Some(Schedule::new(pps).count_for(d)), None),
                SendLimit::Duration(d) => (None, Some(d)),
            };
            ThreadPlan {
                index,
                streams: thread_streams(options, index),
                pps,
                count,
                deadline,
                size: options.size,
                batching,
                end_marker_repeats: options.end_marker_repeats,
                coalesce: options.coalesce,
            }
        })
        .collect()
}

/// Stream ids of thread `index`: streams are dealt round-robin over the threads.
fn thread_streams(options: &SendOptions, index: u32) -> Vec<u32> {
    (index..options.streams)
        .step_by(options.threads as usize)
        .collect()
}

fn rate(count: u64, elapsed_ns: u64) -> f64 {
    if elapsed_ns == 0 {
        0.0
    } else {
        count as f64 * 1e9 / elapsed_ns as f64
    }
}

fn build_record(
    options: &SendOptions,
    batching: Batching,
    sndbuf_bytes: u64,
    started_unix_ns: u64,
    outcomes: Vec<ThreadOutcome>,
) -> SendRecord {
    let size = options.size as u64;
    let overhead = if options.dst.is_ipv6() {
        WIRE_OVERHEAD_BYTES_V6
    } else {
        WIRE_OVERHEAD_BYTES
    };
    let mut errors_by_errno = [0u64; ERRNO_SLOTS];
    let mut gap = new_histogram();
    let mut batch_packets = new_histogram();
    let mut lag = new_histogram();
    let mut perf: Option<PerfCounters> = None;
    let mut threads = Vec::new();
    let mut gso_fallback_reason = None;
    for (index, o) in outcomes.iter().enumerate() {
        for (slot, n) in errors_by_errno.iter_mut().zip(o.errors_by_errno.iter()) {
            *slot += n;
        }
        // Histograms share bounds, so adding cannot fail; ignore the impossible error.
        let _ = gap.add(&o.batch_gap_ns);
        let _ = batch_packets.add(&o.batch_packets);
        let _ = lag.add(&o.schedule_lag_ns);
        perf = Some(perf.map_or(o.perf, |p| p.sum(&o.perf)));
        if gso_fallback_reason.is_none() {
            gso_fallback_reason.clone_from(&o.gso_fallback_reason);
        }
        let index = index as u32;
        let pps = split_even(options.pps, options.threads, index);
        threads.push(SendThreadRecord {
            thread_index: index,
            stream_ids: thread_streams(options, index),
            target_pps: pps,
            packets_sent: o.packets_sent,
            payload_bytes: o.packets_sent * size,
            wire_bytes: o.packets_sent * (size + overhead),
            send_errors: o.send_errors,
            send_calls: o.send_calls,
            elapsed_ns: o.elapsed_ns,
            achieved_pps: rate(o.packets_sent, o.elapsed_ns),
            perf: o.perf,
        });
    }
    let packets_sent: u64 = outcomes.iter().map(|o| o.packets_sent).sum();
    let send_errors: u64 = outcomes.iter().map(|o| o.send_errors).sum();
    let elapsed_ns = outcomes.iter().map(|o| o.elapsed_ns).max().unwrap_or(0);
    let achieved_pps = rate(packets_sent, elapsed_ns);
    let payload_bytes = packets_sent * size;
    let wire_bytes = packets_sent * (size + overhead);
    let gso_used = batching.segments_per_message > 1 && gso_fallback_reason.is_none();
    let segments_used = if gso_used {
        batching.segments_per_message
    } else {
        1
    };
    SendRecord {
        schema: SEND_SCHEMA.to_string(),
        version: RECORD_VERSION,
        minor_version: RECORD_MINOR_VERSION,
        trafficgen_version: env!("CARGO_PKG_VERSION").to_string(),
        started_unix_ns,
        config: SendConfig {
            dst: options.dst.to_string(),
            src: options.src.map(|a| a.to_string()),
            iface: options.iface.clone(),
            target_pps: options.pps,
            count: match options.limit {
                SendLimit::Count(n) => Some(n),
                SendLimit::Duration(_) => None,
            },
            duration_ns: match options.limit {
                SendLimit::Duration(d) => Some(d.as_nanos() as u64),
                SendLimit::Count(_) => None,
            },
            payload_size_bytes: options.size as u32,
            ttl: options.ttl,
            threads: options.threads,
            streams: options.streams,
            batch_mode: if gso_used { "gso" } else { "sendmmsg" }.to_string(),
            gso_segments: segments_used as u32,
            max_batch_packets: (batching.messages_per_call * segments_used) as u32,
            gso_fallback_reason,
            end_marker_repeats: options.end_marker_repeats,
            socket_sndbuf_bytes: sndbuf_bytes,
            coalesce_ns: options.coalesce.as_nanos() as u64,
        },
        packets_sent,
        payload_bytes,
        wire_bytes,
        send_errors,
        send_errors_by_errno: errors_by_errno
            .iter()
            .enumerate()
            .filter(|(_, &n)| n > 0)
            .map(|(errno, &n)| (sys::errno_name(errno as i32), n))
            .collect::<BTreeMap<_, _>>(),
        end_markers_sent: outcomes.iter().map(|o| o.end_markers_sent).sum(),
        elapsed_ns,
        achieved_pps,
        rate_error_ratio: (options.pps > 0)
            .then(|| (achieved_pps - options.pps as f64) / options.pps as f64),
        payload_bps: rate(payload_bytes * 8, elapsed_ns),
        wire_bps: rate(wire_bytes * 8, elapsed_ns),
        batch_gap_ns: distribution(&gap),
        batch_packets: distribution(&batch_packets),
        schedule_lag_ns: distribution(&lag),
        threads,
        perf: perf.unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> SendOptions {
        SendOptions::new(
            "239.1.1.1:5000".parse().unwrap(),
            1000,
            SendLimit::Count(10),
        )
    }

    #[test]
    fn bad_options_name_their_flag() {
        let cases: Vec<(SendOptions, &str)> = vec![
            (SendOptions { size: 8, ..opts() }, "--size"),
            (
                SendOptions {
                    size: 70_000,
                    ..opts()
                },
                "--size",
            ),
            (
                SendOptions {
                    threads: 0,
                    ..opts()
                },
                "--threads",
            ),
            (
                SendOptions {
                    threads: 2,
                    streams: 1,
                    ..opts()
                },
                "--streams",
            ),
            (
                SendOptions {
                    pps: 1,
                    threads: 2,
                    streams: 2,
                    ..opts()
                },
                "--pps",
            ),
            (
                SendOptions {
                    gso_segments: 0,
                    ..opts()
                },
                "--gso-segments",
            ),
            (
                SendOptions {
                    dst: "0.0.0.0:5000".parse().unwrap(),
                    ..opts()
                },
                "--dst",
            ),
            (
                SendOptions {
                    dst: "239.1.1.1:0".parse().unwrap(),
                    ..opts()
                },
                "--dst 239.1.1.1:0: port 0 is not a destination port",
            ),
            (
                SendOptions {
                    end_marker_repeats: MAX_END_MARKERS + 1,
                    ..opts()
                },
                "--end-markers 1001 is too many: at most 1000",
            ),
            (
                SendOptions {
                    limit: SendLimit::Duration(Duration::ZERO),
                    ..opts()
                },
                "--duration",
            ),
        ];
        for (o, flag) in cases {
            let err = validate(&o).unwrap_err().to_string();
            assert!(err.contains(flag), "{err:?} should name {flag}");
            // Port 0 is not "unspecified or broadcast" (the address was fine).
            if o.dst.port() == 0 {
                assert!(!err.contains("broadcast"), "{err}");
            }
        }
        assert!(validate(&opts()).is_ok());
        assert!(validate(&SendOptions {
            end_marker_repeats: MAX_END_MARKERS,
            ..opts()
        })
        .is_ok());
    }

    #[test]
    fn gso_segments_respect_the_64k_limit() {
        let b = batching_for(&SendOptions {
            size: 9000,
            ..opts()
        });
        assert_eq!(b.segments_per_message, 7);
        let b = batching_for(&SendOptions {
            size: 40_000,
            ..opts()
        });
        assert_eq!(b.segments_per_message, 1);
        assert_eq!(batching_for(&opts()).segments_per_message, 32);
    }

    #[test]
    fn plans_split_rate_count_and_streams() {
        let o = SendOptions {
            threads: 2,
            streams: 5,
            pps: 1001,
            limit: SendLimit::Count(11),
            ..opts()
        };
        let p = plans(&o, batching_for(&o));
        assert_eq!(p[0].streams, vec![0, 2, 4]);
        assert_eq!(p[1].streams, vec![1, 3]);
        assert_eq!((p[0].pps, p[1].pps), (501, 500));
        assert_eq!((p[0].count, p[1].count), (Some(6), Some(5)));
        let o = SendOptions {
            limit: SendLimit::Duration(Duration::from_secs(2)),
            ..o
        };
        let p = plans(&o, batching_for(&o));
        assert_eq!((p[0].count, p[1].count), (Some(1002), Some(1000)));
    }
}
