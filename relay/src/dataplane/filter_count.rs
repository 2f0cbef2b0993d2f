//! The datagrams in the frames the kernel dropped at a packet socket's ring.
//!
//! The kernel counts a full ring's drops in frames (`tp_drops`), and a GRO/GSO super-frame
//! carries many datagrams. Where mcrd may load BPF, the socket's filter is the counting
//! translation of the classic one ([`crate::rules::bpf_counting`]): it adds every frame it
//! takes, and its `gso_segs`, to a per-CPU map. Every frame the filter took was then either
//! read from the ring by the worker (which counts its datagrams the same way), dropped by
//! the kernel (`tp_drops`), or is still on its way. So when nothing is on its way, the
//! dropped frames' datagrams are exactly what the filter took less what was read
//! ([`DropAccount::settle`]).
//!
//! "Nothing on its way" is checked, not assumed: the map is read before and after the drop
//! counter, and the datagrams are settled only if the map did not move and its frames equal
//! the frames read plus the frames dropped. A frame still in the ring or between the filter
//! and the ring breaks the equality; a frame taken meanwhile moves the map. Until then (a
//! sustained overload leaves no quiet moment), each unsettled dropped frame is counted as
//! one datagram, a lower bound that settling only raises, so the counter never goes back.
//! Without BPF (no `CAP_BPF`), every dropped frame stays unsettled and the stats say so.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use super::sys;
use crate::rules::bpf::Insn;
use crate::rules::bpf_counting::{self, EbpfInsn, TakenCounts};

/// Why the counting filter could not be attached.
#[derive(Debug, thiserror::Error)]
pub enum CountingFilterError {
    #[error("translating the packet filter: {0}")]
    Translate(#[from] bpf_counting::TranslateError),
    #[error("loading the counting packet filter ({insns} eBPF instructions): {error}{log}")]
    Load {
        insns: usize,
        error: io::Error,
        /// The verifier's last words, if it said any.
        log: String,
    },
    #[error("SO_ATTACH_BPF: {0}")]
    Attach(io::Error),
}

/// One socket's per-CPU counts of what its filter took (see the module's doc).
#[derive(Debug)]
pub struct CountingFilter {
    map: OwnedFd,
    /// Scratch for one read of every CPU's value.
    values: Vec<TakenCounts>,
}

impl CountingFilter {
    /// Creates the counts' map; fails with `EPERM` where mcrd may not load BPF.
    pub fn new() -> io::Result<Self> {
        let map = sys::percpu_array(c"mcr_taken", size_of::<TakenCounts>() as u32)?;
        Ok(Self {
            map,
            values: vec![TakenCounts::default(); sys::possible_cpus()?],
        })
    }

    /// Replaces `socket`'s filter with the counting translation of `classic` (the kernel
    /// swaps filters atomically, and the counts carry on in the same map). Returns the
    /// program's id (as `bpftool prog` shows it).
    pub fn attach(&self, socket: RawFd, classic: &[Insn]) -> Result<u32, CountingFilterError> {
        let code = bpf_counting::translate(classic, self.map.as_raw_fd())?;
        let prog = load(&code)?;
        crate::sys::setsockopt(
            socket,
            libc::SOL_SOCKET,
            libc::SO_ATTACH_BPF,
            &prog.as_raw_fd(),
        )
        .map_err(CountingFilterError::Attach)?;
        Ok(sys::bpf_program_id(&prog).unwrap_or(0))
    }

    /// The counts summed over the CPUs.
    pub fn taken(&mut self) -> io::Result<TakenCounts> {
        sys::read_taken(&self.map, &mut self.values)?;
        Ok(self
            .values
            .iter()
            .fold(TakenCounts::default(), |a, v| TakenCounts {
                frames: a.frames + v.frames,
                datagrams: a.datagrams + v.datagrams,
            }))
    }
}

/// Loads `code` as a socket filter; the descriptor is needed only until it is attached.
pub fn load(code: &[EbpfInsn]) -> Result<OwnedFd, CountingFilterError> {
    sys::load_socket_filter(code).map_err(|(error, log)| CountingFilterError::Load {
        insns: code.len(),
        error,
        log: if log.is_empty() {
            String::new()
        } else {
            format!(" (verifier: {log})")
        },
    })
}

/// What one settling added to the socket's drop counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DropDelta {
    pub frames: u64,
    /// Datagrams: exact for settled frames, one for each unsettled one.
    pub datagrams: u64,
}

/// One socket's ledger of frames taken, read and dropped (see the module's doc). Pure: the
/// caller reads the kernel's counters and hands them in.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DropAccount {
    read_frames: u64,
    read_datagrams: u64,
    dropped_frames: u64,
    settled_frames: u64,
    settled_datagrams: u64,
    /// What was last reported in datagrams (a lower bound until settled).
    reported_datagrams: u64,
}

impl DropAccount {
    /// Counts one frame read from the ring, with its datagrams counted as the filter counts
    /// them (`gso_segs`, at least one).
    #[inline]
    pub fn read(&mut self, datagrams: u64) {
        self.read_frames += 1;
        self.read_datagrams += datagrams;
    }

    /// Dropped frames whose datagrams are not known yet (each counted as one).
    pub fn unsettled_frames(&self) -> u64 {
        self.dropped_frames - self.settled_frames
    }

    /// Adds `drops` (frames, from `tp_drops`, which reading resets) and, when the filter's
    /// counts read just `before` and `after` it show nothing on its way, settles the
    /// datagrams of every dropped frame. Returns what the reported counters grow by.
    pub fn settle(
        &mut self,
        before: Option<TakenCounts>,
        drops: u64,
        after: Option<TakenCounts>,
    ) -> DropDelta {
        self.dropped_frames += drops;
        if let (Some(b), Some(a)) = (before, after) {
            let quiet = b == a && a.frames == self.read_frames + self.dropped_frames;
            if quiet && self.unsettled_frames() > 0 {
                // Each dropped frame carried at least one datagram; a shortfall would mean
                // the worker and the filter counted a frame differently, and the counter
                // must not go back.
                let exact = a.datagrams.saturating_sub(self.read_datagrams);
                self.settled_datagrams =
                    exact.max(self.settled_datagrams + self.unsettled_frames());
                self.settled_frames = self.dropped_frames;
            }
        }
        let now = self.settled_datagrams + self.unsettled_frames();
        let delta = DropDelta {
            frames: drops,
            datagrams: now - self.reported_datagrams,
        };
        self.reported_datagrams = now;
        delta
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taken(frames: u64, datagrams: u64) -> Option<TakenCounts> {
        Some(TakenCounts { frames, datagrams })
    }

    #[test]
    fn quiet_counts_settle_the_dropped_frames_datagrams_exactly() {
        let mut a = DropAccount::default();
        // Three frames read (1, 46 and 1 datagrams), two dropped (46 and 7).
        for d in [1, 46, 1] {
            a.read(d);
        }
        let d = a.settle(taken(5, 101), 2, taken(5, 101));
        assert_eq!(
            d,
            DropDelta {
                frames: 2,
                datagrams: 53
            }
        );
        assert_eq!(a.unsettled_frames(), 0);
        // Nothing new: nothing added.
        assert_eq!(
            a.settle(taken(5, 101), 0, taken(5, 101)),
            DropDelta::default()
        );
    }

    #[test]
    fn frames_on_their_way_leave_a_lower_bound_that_settling_raises() {
        let mut a = DropAccount::default();
        a.read(46);
        // Two dropped, one more frame still in the ring: 4 taken, 1 read + 2 dropped.
        let d = a.settle(taken(4, 46 * 4), 2, taken(4, 46 * 4));
        assert_eq!(
            d,
            DropDelta {
                frames: 2,
                datagrams: 2
            },
            "one per unsettled frame"
        );
        assert_eq!(a.unsettled_frames(), 2);
        // The map moved between the reads: not settled either.
        a.read(46);
        let d = a.settle(taken(4, 184), 0, taken(5, 230));
        assert_eq!(d.datagrams, 0);
        // Quiet at last: 5 taken = 3 read + 2 dropped; 230 - 138 = 92 dropped datagrams.
        a.read(46);
        let d = a.settle(taken(5, 230), 0, taken(5, 230));
        assert_eq!(
            d,
            DropDelta {
                frames: 0,
                datagrams: 90
            }
        );
        assert_eq!(a.unsettled_frames(), 0);
    }

    #[test]
    fn without_the_filters_counts_every_drop_stays_one_datagram() {
        let mut a = DropAccount::default();
        a.read(46);
        assert_eq!(
            a.settle(None, 3, None),
            DropDelta {
                frames: 3,
                datagrams: 3
            }
        );
        assert_eq!(a.unsettled_frames(), 3);
    }

    #[test]
    fn a_count_that_disagrees_never_takes_the_counter_back() {
        let mut a = DropAccount::default();
        a.read(46);
        a.settle(None, 2, None);
        // The filter says fewer datagrams than read (a frame counted differently).
        let d = a.settle(taken(3, 40), 0, taken(3, 40));
        assert_eq!(d.datagrams, 0);
        assert_eq!(a.unsettled_frames(), 0);
    }

    /// The kernel half: the translation loads, gives the classic program's verdict on every
    /// frame, and counts what it accepts. Needs root (`BPF_PROG_TEST_RUN`), as CI runs.
    mod kernel {
        use super::*;
        use crate::rules::bpf::{self, interp};
        use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

        /// One run of `prog` on `frame` with `gso_segs`: the verdict.
        fn run(prog: &OwnedFd, frame: &[u8], gso_segs: u32) -> u32 {
            // A socket filter's test run takes the frame's Ethernet header off (its data
            // starts at the network header), where a packet socket's filter sees the whole
            // frame: a header in front of ours is what it takes off. Its ethertype is none
            // the test run parses (with IPv4's, it refuses frames shorter than a header).
            let mut data = vec![0u8; 14];
            data[12..14].copy_from_slice(&[0x88, 0xb5]);
            data.extend_from_slice(frame);
            sys::test_run_socket_filter(prog, &data, gso_segs).expect("BPF_PROG_TEST_RUN")
        }

        fn ipv4_udp(vlan: bool, dst: Ipv4Addr, port: u16, ihl: u8, frag: u16) -> Vec<u8> {
            let mut f = vec![0u8; 12];
            if vlan {
                f.extend_from_slice(&[0x81, 0x00, 0x00, 0x64]);
            }
            f.extend_from_slice(&[0x08, 0x00]);
            let ip = f.len();
            f.resize(ip + usize::from(ihl) * 4 + 8 + 16, 0);
            f[ip] = 0x40 | ihl;
            f[ip + 6..ip + 8].copy_from_slice(&frag.to_be_bytes());
            f[ip + 9] = 17;
            f[ip + 16..ip + 20].copy_from_slice(&dst.octets());
            let udp = ip + usize::from(ihl) * 4;
            f[udp + 2..udp + 4].copy_from_slice(&port.to_be_bytes());
            f
        }

        fn ipv6_udp(vlan: bool, dst: Ipv6Addr, next: u8, port: u16) -> Vec<u8> {
            let mut f = vec![0u8; 12];
            if vlan {
                f.extend_from_slice(&[0x88, 0xa8, 0x00, 0x64]);
            }
            f.extend_from_slice(&[0x86, 0xdd]);
            let ip = f.len();
            f.resize(ip + 40 + 8 + 16, 0);
            f[ip] = 0x60;
            f[ip + 6] = next;
            f[ip + 24..ip + 40].copy_from_slice(&dst.octets());
            f[ip + 42..ip + 44].copy_from_slice(&port.to_be_bytes());
            f
        }

        /// Frames to each of `groups` and one group more, on `ports`, tagged or not, with
        /// options, fragments and extension headers, each also cut at every length.
        fn frames(groups: &[IpAddr], ports: &[u16]) -> Vec<Vec<u8>> {
            let extra: [IpAddr; 2] = ["239.9.9.9".parse().unwrap(), "ff3e::9".parse().unwrap()];
            let mut out = Vec::new();
            for g in groups.iter().chain(&extra) {
                for &port in ports {
                    for vlan in [false, true] {
                        match g {
                            IpAddr::V4(g) => {
                                out.push(ipv4_udp(vlan, *g, port, 5, 0));
                                out.push(ipv4_udp(vlan, *g, port, 6, 0));
                                out.push(ipv4_udp(vlan, *g, port, 5, 0x2000));
                            }
                            IpAddr::V6(g) => {
                                out.push(ipv6_udp(vlan, *g, 17, port));
                                out.push(ipv6_udp(vlan, *g, 0, port));
                            }
                        }
                    }
                }
            }
            let whole = out.clone();
            for f in whole.iter().take(8) {
                // The test run refuses an empty frame (it must hold more than the header
                // it takes off); the kernel never shows a socket one.
                out.extend((1..f.len()).map(|cut| f[..cut].to_vec()));
            }
            out.push(vec![0u8; 60]);
            out
        }

        fn case(groups: &[IpAddr], kernel: &[(IpAddr, u16)], ports: &[u16]) {
            let classic = bpf::build(groups, kernel);
            let mut counter = CountingFilter::new().expect("a per-CPU array (root)");
            let code = bpf_counting::translate(&classic, counter.map.as_raw_fd()).unwrap();
            let prog =
                load(&code).unwrap_or_else(|e| panic!("{} classic insns: {e}", classic.len()));
            let (mut frames_taken, mut datagrams_taken) = (0, 0);
            for (i, f) in frames(groups, ports).iter().enumerate() {
                let segs = (i % 3) as u32 * 23;
                let want = interp::run(&classic, f, false);
                assert_eq!(
                    run(&prog, f, segs),
                    want,
                    "frame {i} ({} bytes): {f:02x?}",
                    f.len()
                );
                if want != 0 {
                    frames_taken += 1;
                    datagrams_taken += u64::from(segs.max(1));
                }
            }
            assert!(frames_taken > 0);
            assert_eq!(
                counter.taken().unwrap(),
                TakenCounts {
                    frames: frames_taken,
                    datagrams: datagrams_taken
                }
            );
        }

        #[test]
        fn the_translation_gives_the_classic_verdict_and_counts_what_it_takes() {
            let g: Vec<IpAddr> = ["239.1.1.1", "239.1.1.2", "ff3e::1234", "ff02::77"]
                .iter()
                .map(|s| s.parse().unwrap())
                .collect();
            case(&g, &[], &[9, 5000]);
            case(&g, &[(g[0], 5000), (g[2], 5000)], &[9, 5000]);
            case(&g[..2], &[(g[1], 7000)], &[7000, 7001]);
        }

        /// The longest programs `build` makes (the most kernel flows, the most groups in the
        /// table) pass the verifier and stay exact.
        #[test]
        fn the_largest_filters_load_and_stay_exact() {
            let kernel: Vec<(IpAddr, u16)> = (0..bpf::MAX_KERNEL_FLOWS_PER_INPUT)
                .map(|i| {
                    (
                        IpAddr::V4(Ipv4Addr::new(239, 2, (i / 200) as u8, (i % 200) as u8)),
                        5000,
                    )
                })
                .collect();
            let groups: Vec<IpAddr> = (0..bpf::MAX_FILTERED_GROUPS)
                .map(|i| IpAddr::V4(Ipv4Addr::new(239, 3, 0, i as u8)))
                .collect();
            let classic = bpf::build(&groups, &kernel);
            assert!(classic.len() > 4000, "{}", classic.len());
            case(&groups, &kernel, &[5000, 5001]);
            let mixed: Vec<(IpAddr, u16)> = (0..bpf::MAX_KERNEL_FLOWS_PER_INPUT)
                .map(|i| {
                    let g = if i % 2 == 0 {
                        IpAddr::V4(Ipv4Addr::new(239, 4, 0, (i / 2) as u8))
                    } else {
                        IpAddr::V6(Ipv6Addr::new(0xff3e, 0, 0, 0, 0, 0, 4, i as u16))
                    };
                    (g, 6000)
                })
                .collect();
            let groups6: Vec<IpAddr> = mixed.iter().map(|k| k.0).collect();
            case(&groups6, &mixed, &[6000, 6001]);
        }
    }
}
