//! The probe header at the start of every trafficgen payload.
//!
//! Layout (32 bytes, all integers big-endian / network order):
//!
//! | bytes  | field          | meaning                                                        |
//! |--------|----------------|----------------------------------------------------------------|
//! | 0..4   | magic          | ASCII `MCRP` (0x4D 0x43 0x52 0x50)                             |
//! | 4      | version        | 1                                                              |
//! | 5      | flags          | bit 0: end-of-stream marker; other bits 0, ignored on receive  |
//! | 6..8   | reserved       | 0 on send, ignored on receive                                  |
//! | 8..12  | stream id      | u32                                                            |
//! | 12..16 | payload length | u32, UDP payload bytes including this header                  |
//! | 16..24 | sequence       | u64; data: 0, 1, 2, ... per stream; end marker: packets sent   |
//! | 24..32 | tx timestamp   | u64, CLOCK_REALTIME nanoseconds since the Unix epoch           |
//!
//! The rest of the payload is filler. An end marker carries, in the sequence field, the number
//! of data packets the stream sent (its last sequence number + 1, so an empty stream is
//! expressible), which lets the receiver count loss at the tail.
//!
//! [`Probe::parse`] validates untrusted bytes once; its errors name what was wrong so the
//! receiver can count malformed datagrams by reason instead of failing.

use thiserror::Error;

/// Header size in bytes; also the smallest `--size`.
pub const HEADER_LEN: usize = 32;
/// First four bytes of every probe payload.
pub const MAGIC: [u8; 4] = *b"MCRP";
/// The header version this code writes and reads.
pub const VERSION: u8 = 1;
/// `flags` bit marking an end-of-stream marker.
pub const FLAG_END_MARKER: u8 = 0x01;

/// Byte ranges of the header fields.
mod field {
    use std::ops::Range;
    pub const MAGIC: Range<usize> = 0..4;
    pub const VERSION: usize = 4;
    pub const FLAGS: usize = 5;
    pub const RESERVED: Range<usize> = 6..8;
    pub const STREAM_ID: Range<usize> = 8..12;
    pub const LENGTH: Range<usize> = 12..16;
    pub const SEQUENCE: Range<usize> = 16..24;
    pub const TX_TIMESTAMP: Range<usize> = 24..32;
}

/// Why a datagram is not a valid probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ProbeError {
    /// Does not start with [`MAGIC`]: someone else's traffic.
    #[error("not a probe (magic bytes differ)")]
    Foreign,
    /// Starts with the magic but is shorter than the header.
    #[error("truncated probe: {len} bytes, header needs {HEADER_LEN}")]
    Truncated { len: usize },
    /// A header version this code does not understand.
    #[error("unsupported probe version {version} (this build reads {VERSION})")]
    UnsupportedVersion { version: u8 },
    /// The length field disagrees with the datagram's size.
    #[error("probe length field says {claimed} bytes, datagram has {actual}")]
    LengthMismatch { claimed: u32, actual: usize },
}

impl ProbeError {
    /// Stable snake_case name for counting malformed datagrams by reason in records.
    pub fn reason(&self) -> &'static str {
        match self {
            ProbeError::Foreign => "foreign",
            ProbeError::Truncated { .. } => "truncated",
            ProbeError::UnsupportedVersion { .. } => "unsupported_version",
            ProbeError::LengthMismatch { .. } => "length_mismatch",
        }
    }
}

/// A parsed, valid probe header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    pub stream_id: u32,
    /// Data packet: its sequence number. End marker: the number of data packets sent.
    pub sequence: u64,
    pub tx_timestamp_ns: u64,
    /// UDP payload length, header included.
    pub length: u32,
    pub end_marker: bool,
}

impl Probe {
    /// Parses and validates the header at the start of `datagram` (the whole UDP payload).
    pub fn parse(datagram: &[u8]) -> Result<Probe, ProbeError> {
        if datagram.len() < field::MAGIC.end || datagram[field::MAGIC] != MAGIC {
            return Err(ProbeError::Foreign);
        }
        if datagram.len() < HEADER_LEN {
            return Err(ProbeError::Truncated {
                len: datagram.len(),
            });
        }
        let version = datagram[field::VERSION];
        if version != VERSION {
            return Err(ProbeError::UnsupportedVersion { version });
        }
        let length = read_u32(datagram, field::LENGTH);
        if length as usize != datagram.len() {
            return Err(ProbeError::LengthMismatch {
                claimed: length,
                actual: datagram.len(),
            });
        }
        Ok(Probe {
            stream_id: read_u32(datagram, field::STREAM_ID),
            sequence: read_u64(datagram, field::SEQUENCE),
            tx_timestamp_ns: read_u64(datagram, field::TX_TIMESTAMP),
            length,
            end_marker: datagram[field::FLAGS] & FLAG_END_MARKER != 0,
        })
    }

    /// Writes this header into the first [`HEADER_LEN`] bytes of `buf`.
    ///
    /// # Panics
    /// If `buf` is shorter than [`HEADER_LEN`] (a programming error: payload sizes are
    /// validated against [`HEADER_LEN`] when flags are parsed).
    pub fn write(&self, buf: &mut [u8]) {
        let header = &mut buf[..HEADER_LEN];
        header[field::MAGIC].copy_from_slice(&MAGIC);
        header[field::VERSION] = VERSION;
        header[field::FLAGS] = if self.end_marker { FLAG_END_MARKER } else { 0 };
        header[field::RESERVED].fill(0);
        header[field::STREAM_ID].copy_from_slice(&self.stream_id.to_be_bytes());
        header[field::LENGTH].copy_from_slice(&self.length.to_be_bytes());
        write_sequence_and_timestamp(header, self.sequence, self.tx_timestamp_ns);
    }
}

/// Rewrites only the sequence and timestamp fields of a header written earlier by
/// [`Probe::write`], leaving the rest of the buffer as it was.
#[inline]
pub fn write_sequence_and_timestamp(buf: &mut [u8], sequence: u64, tx_timestamp_ns: u64) {
    buf[field::SEQUENCE].copy_from_slice(&sequence.to_be_bytes());
    buf[field::TX_TIMESTAMP].copy_from_slice(&tx_timestamp_ns.to_be_bytes());
}

fn read_u32(buf: &[u8], range: std::ops::Range<usize>) -> u32 {
    let mut bytes = [0u8; 4];
    bytes.copy_from_slice(&buf[range]);
    u32::from_be_bytes(bytes)
}

fn read_u64(buf: &[u8], range: std::ops::Range<usize>) -> u64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&buf[range]);
    u64::from_be_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 40-byte data probe written out by hand, byte by byte, as the README documents it.
    const LITERAL: [u8; 40] = [
        b'M', b'C', b'R', b'P', // magic
        1,    // version
        0,    // flags
        0, 0, // reserved
        0, 0, 0, 7, // stream id 7
        0, 0, 0, 40, // length 40
        0, 0, 0, 0, 0, 0, 1, 2, // sequence 258
        0, 0, 0, 0, 0x3b, 0x9a, 0xca, 0x00, // timestamp 1_000_000_000
        0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, // filler
    ];

    fn literal_probe() -> Probe {
        Probe {
            stream_id: 7,
            sequence: 258,
            tx_timestamp_ns: 1_000_000_000,
            length: 40,
            end_marker: false,
        }
    }

    #[test]
    fn parses_literal_bytes() {
        assert_eq!(Probe::parse(&LITERAL), Ok(literal_probe()));
    }

    #[test]
    fn writes_literal_bytes() {
        let mut buf = [0xaau8; 40];
        literal_probe().write(&mut buf);
        assert_eq!(buf, LITERAL);
    }

    #[test]
    fn end_marker_flag_round_trips() {
        let mut buf = [0u8; 32];
        let marker = Probe {
            end_marker: true,
            length: 32,
            ..literal_probe()
        };
        marker.write(&mut buf);
        assert_eq!(buf[5], FLAG_END_MARKER);
        assert_eq!(Probe::parse(&buf), Ok(marker));
    }

    #[test]
    fn sequence_rewrite_touches_only_its_fields() {
        let mut buf = LITERAL;
        write_sequence_and_timestamp(&mut buf, u64::MAX, 5);
        let parsed = Probe::parse(&buf).unwrap();
        assert_eq!(parsed.sequence, u64::MAX);
        assert_eq!(parsed.tx_timestamp_ns, 5);
        assert_eq!(parsed.stream_id, 7);
        assert_eq!(buf[32..], LITERAL[32..]);
    }

    #[test]
    fn rejects_foreign_truncated_bad_version_and_bad_length() {
        assert_eq!(Probe::parse(b""), Err(ProbeError::Foreign));
        assert_eq!(Probe::parse(b"MCR"), Err(ProbeError::Foreign));
        assert_eq!(Probe::parse(&[0u8; 64]), Err(ProbeError::Foreign));
        assert_eq!(
            Probe::parse(&LITERAL[..20]),
            Err(ProbeError::Truncated { len: 20 })
        );
        let mut bad_version = LITERAL;
        bad_version[4] = 9;
        assert_eq!(
            Probe::parse(&bad_version),
            Err(ProbeError::UnsupportedVersion { version: 9 })
        );
        assert_eq!(
            Probe::parse(&LITERAL[..36]),
            Err(ProbeError::LengthMismatch {
                claimed: 40,
                actual: 36
            })
        );
    }

    /// The verdict a reader of the layout table above would give `bytes`, worked out from the
    /// table rather than from `parse`'s code.
    fn expected_verdict(bytes: &[u8]) -> Result<(), &'static str> {
        if bytes.len() < 4 || bytes[..4] != MAGIC {
            return Err("foreign");
        }
        if bytes.len() < 32 {
            return Err("truncated");
        }
        if bytes[4] != 1 {
            return Err("unsupported_version");
        }
        if u32::from_be_bytes(bytes[12..16].try_into().unwrap()) as usize != bytes.len() {
            return Err("length_mismatch");
        }
        Ok(())
    }

    #[test]
    fn every_prefix_of_random_bytes_gets_the_layout_s_verdict_and_valid_ones_round_trip() {
        // Pseudo-random buffers, half of them with the magic and version, some with a length
        // field that matches a prefix; every prefix is parsed.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut buf = [0u8; 96];
        let mut parsed = 0;
        for round in 0..2000u32 {
            for b in buf.iter_mut() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                *b = state as u8;
            }
            if round % 2 == 0 {
                buf[..4].copy_from_slice(&MAGIC);
                buf[4] = VERSION;
            }
            if round % 4 == 0 {
                let len = 32 + round % 64;
                buf[12..16].copy_from_slice(&len.to_be_bytes());
            }
            for len in 0..buf.len() {
                let bytes = &buf[..len];
                let got = Probe::parse(bytes);
                assert_eq!(
                    got.map(drop).map_err(|e| e.reason()),
                    expected_verdict(bytes),
                    "round {round}, {len} bytes"
                );
                if let Ok(probe) = got {
                    // What parses is what was there: writing it back gives the same header
                    // (reserved bytes and flags other than the end marker are not kept).
                    let mut written = [0u8; HEADER_LEN];
                    probe.write(&mut written);
                    let mut original = [0u8; HEADER_LEN];
                    original.copy_from_slice(&bytes[..HEADER_LEN]);
                    original[5] &= FLAG_END_MARKER;
                    original[6..8].fill(0);
                    assert_eq!(written, original);
                    parsed += 1;
                }
            }
        }
        assert!(
            parsed > 100,
            "the generator made valid probes too ({parsed})"
        );
    }
}
