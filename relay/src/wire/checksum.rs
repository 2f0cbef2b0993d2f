//! The Internet checksum (RFC 1071) used by the IPv4 header and the UDP datagram.
//!
//! The checksum is the ones' complement of the ones' complement sum of 16-bit big-endian words.
//! Ones' complement addition is associative and commutative, which gives two freedoms (RFC 1071
//! §2): we may add wider words and fold the carries back in at the end, and we may add in the
//! machine's byte order and swap the folded result once. So [`sum`] adds native-endian 32-bit
//! words into four independent 64-bit lanes (no carry handling per word, no byte swap per word,
//! which lets the compiler vectorise the loop; measured about twice as fast as big-endian words on
//! 1400 bytes), folds, and returns a big-endian partial sum that can be added to the
//! pseudo-header. A 64-bit lane cannot overflow for any input shorter than 64 GiB.
//!
//! Invariant: every function here is total: any byte slice, any length, no panic.

/// Ones' complement sum of `data` as big-endian 16-bit words, folded to at most 16 bits.
///
/// An odd trailing byte is the high byte of a final word padded with zero (RFC 1071 §4.1). The
/// result can be added to other partial sums (e.g. a pseudo-header) before [`fold`].
#[inline]
pub fn sum(data: &[u8]) -> u64 {
    const LANES: usize = 4;
    const WORD: usize = 4;
    let mut lanes = [0u64; LANES];
    let mut blocks = data.chunks_exact(LANES * WORD);
    for block in &mut blocks {
        for (lane, word) in lanes.iter_mut().zip(block.chunks_exact(WORD)) {
            *lane += u64::from(ne_u32(word));
        }
    }
    let mut total: u64 = lanes.iter().sum();
    let mut words = blocks.remainder().chunks_exact(WORD);
    for word in &mut words {
        total += u64::from(ne_u32(word));
    }
    let mut halves = words.remainder().chunks_exact(2);
    for half in &mut halves {
        total += u64::from(ne_u16(half));
    }
    if let [last] = halves.remainder() {
        // Every chunk so far had an even length, so this byte starts a 16-bit word: its high
        // byte in network order, the first byte in memory order.
        total += u64::from(u16::from_ne_bytes([*last, 0]));
    }
    // The native-endian sum is the big-endian sum with its bytes swapped (RFC 1071 §2 B).
    u64::from(u16::from_be(fold(total)))
}

/// [`sum`] for an IPv4 header without options, the one every forwarded packet has: five words,
/// no loop, inlined into the caller.
#[inline(always)]
pub(crate) fn sum_ipv4_header(header: &[u8; 20]) -> u64 {
    let word = |at: usize| {
        u64::from(u32::from_ne_bytes([
            header[at],
            header[at + 1],
            header[at + 2],
            header[at + 3],
        ]))
    };
    let total = word(0) + word(4) + word(8) + word(12) + word(16);
    u64::from(u16::from_be(fold(total)))
}

/// Folds a wide ones' complement sum down to 16 bits (end-around carry).
#[inline]
pub(crate) fn fold(mut total: u64) -> u16 {
    // Four rounds always suffice for 64 bits; stopping as soon as the sum fits is cheaper.
    while total > 0xffff {
        total = (total & 0xffff) + (total >> 16);
    }
    total as u16
}

/// The ones' complement sum of the IPv4 pseudo-header that the UDP checksum covers
/// (RFC 768): source and destination address, zero, protocol, UDP length.
#[inline]
pub(crate) fn ipv4_pseudo_header(src: [u8; 4], dst: [u8; 4], protocol: u8, udp_length: u16) -> u64 {
    u64::from(u32::from_be_bytes(src))
        + u64::from(u32::from_be_bytes(dst))
        + u64::from(protocol)
        + u64::from(udp_length)
}

/// The checksum to store in a header: the complement of the folded sum.
#[inline]
pub fn finish(total: u64) -> u16 {
    !fold(total)
}

/// Whether data that includes its own checksum field verifies: its folded sum is all ones.
#[inline]
pub(crate) fn verifies(total: u64) -> bool {
    fold(total) == 0xffff
}

/// Reads a native-endian u32 from a 4-byte slice; callers pass exactly 4 bytes.
#[inline(always)]
fn ne_u32(bytes: &[u8]) -> u32 {
    // `chunks_exact` guarantees the length, so the conversion cannot fail and the compiler drops
    // the fallback; the fallback keeps the function total without a panic path.
    <[u8; 4]>::try_from(bytes).map_or(0, u32::from_ne_bytes)
}

/// Reads a native-endian u16 from a 2-byte slice; callers pass exactly 2 bytes.
#[inline(always)]
fn ne_u16(bytes: &[u8]) -> u16 {
    <[u8; 2]>::try_from(bytes).map_or(0, u16::from_ne_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Straightforward 16-bit-at-a-time reference implementation.
    fn reference(data: &[u8]) -> u16 {
        let mut total: u32 = 0;
        let mut i = 0;
        while i + 1 < data.len() {
            total += u32::from(u16::from_be_bytes([data[i], data[i + 1]]));
            total = (total & 0xffff) + (total >> 16);
            i += 2;
        }
        if i < data.len() {
            total += u32::from(data[i]) << 8;
            total = (total & 0xffff) + (total >> 16);
        }
        total as u16
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3: the words 0001 f203 f4f5 f6f7 sum to ddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum(&data)), 0xddf2);
        assert_eq!(finish(sum(&data)), 0x220d);
    }

    #[test]
    fn known_ipv4_header() {
        // A commonly cited header (Wikipedia "IPv4 header checksum"): checksum b861.
        let mut header = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(finish(sum(&header)), 0xb861);
        header[10] = 0xb8;
        header[11] = 0x61;
        assert!(verifies(sum(&header)));
        header[15] ^= 1;
        assert!(!verifies(sum(&header)));
    }

    #[test]
    fn fixed_ipv4_header_sum_matches_general_sum() {
        let mut header = [0u8; 20];
        for seed in 0..200u32 {
            for (index, byte) in header.iter_mut().enumerate() {
                *byte = (seed.wrapping_mul(2_654_435_761) >> (index % 24)) as u8 ^ index as u8;
            }
            assert_eq!(fold(sum_ipv4_header(&header)), fold(sum(&header)));
            assert_eq!(fold(sum(&header)), reference(&header));
        }
    }

    #[test]
    fn empty_and_odd_lengths() {
        assert_eq!(fold(sum(&[])), 0);
        assert_eq!(fold(sum(&[0xab])), 0xab00);
        assert_eq!(fold(sum(&[0x12, 0x34, 0x56])), 0x1234 + 0x5600);
    }

    #[test]
    fn all_ones_folds_with_carries() {
        // Many 0xffff words exercise the end-around carry: the sum stays 0xffff.
        let data = [0xffu8; 4099];
        assert_eq!(fold(sum(&data)), reference(&data));
        assert_eq!(fold(sum(&data[..4098])), 0xffff);
    }

    #[test]
    fn matches_reference_on_every_length_and_alignment() {
        let data: Vec<u8> = (0..600u32)
            .map(|i| (i.wrapping_mul(167) >> 2) as u8)
            .collect();
        for start in 0..8 {
            for end in start..data.len() {
                let slice = &data[start..end];
                assert_eq!(fold(sum(slice)), reference(slice), "bytes {start}..{end}");
            }
        }
    }

    #[test]
    fn pseudo_header_sum() {
        // 10.0.0.1 -> 239.1.1.1, UDP, length 8: words 0a00 0001 ef01 0101 0011 0008.
        let expected = 0x0a00 + 0x0001 + 0xef01 + 0x0101 + 0x0011 + 0x0008;
        assert_eq!(
            fold(ipv4_pseudo_header([10, 0, 0, 1], [239, 1, 1, 1], 17, 8)),
            expected
        );
    }
}
