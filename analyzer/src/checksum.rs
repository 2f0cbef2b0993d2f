//! CRC-32 (IEEE 802.3, the one of zip and PNG) of a history part's bytes, so that a flipped
//! byte in a stored part is an error instead of a changed number.
//!
//! A CRC of degree 32 detects every error burst of up to 32 bits, so every single flipped byte
//! is caught, whatever its value; it is not a defence against deliberate tampering, which a
//! nightly history on a build machine does not need. Bitwise, no table: a part is a few
//! kilobytes.

/// The reversed IEEE polynomial.
const POLY: u32 = 0xEDB8_8320;

/// CRC-32 of `bytes`.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ POLY
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    #[test]
    fn check_value_of_the_standard() {
        // The catalogue's check value: CRC-32 of "123456789".
        assert_eq!(super::crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(super::crc32(b""), 0);
    }
}
