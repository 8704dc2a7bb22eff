//! Byte tests eight bytes at a time in a `u64` ("SIMD within a register"), for scanning short
//! strings without per-byte branches and without `unsafe` or target-specific code.
//!
//! Each test sets the high bit of every byte of the word that passes it. Borrows can also flag
//! bytes *above* (later than, in little-endian order) a byte that truly passes, never below: the
//! lowest flagged byte is exact, and a word without flags has no byte that passes.

/// `0x01` in every byte.
const ONES: u64 = 0x0101_0101_0101_0101;
/// `0x80` in every byte.
const HIGH_BITS: u64 = 0x8080_8080_8080_8080;

/// The eight bytes of `bytes` (exactly eight) as a little-endian word.
#[inline(always)]
pub(crate) fn word(bytes: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(bytes);
    u64::from_le_bytes(w)
}

/// Flags the bytes of `x` equal to `b`.
#[inline(always)]
pub(crate) fn eq(x: u64, b: u8) -> u64 {
    let y = x ^ (ONES * u64::from(b));
    y.wrapping_sub(ONES) & !y & HIGH_BITS
}

/// Flags the bytes of `x` below `n` (`n` at most 0x80).
#[inline(always)]
pub(crate) fn less_than(x: u64, n: u8) -> u64 {
    x.wrapping_sub(ONES * u64::from(n)) & !x & HIGH_BITS
}

/// Flags the bytes of `x` above 0x7f (exact: no borrows).
#[inline(always)]
pub(crate) fn non_ascii(x: u64) -> u64 {
    x & HIGH_BITS
}

/// The index (0-7) of the lowest flagged byte of a non-zero flag word.
#[inline(always)]
pub(crate) fn first(flags: u64) -> usize {
    (flags.trailing_zeros() / 8) as usize
}

/// `x` with its bytes at index `n` and above cleared (`n` in 0..8).
#[inline(always)]
pub(crate) fn below(x: u64, n: usize) -> u64 {
    if n == 0 {
        0
    } else {
        x << (64 - 8 * n) >> (64 - 8 * n)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn flagged(flags: u64) -> Vec<bool> {
        (0..8).map(|i| flags >> (8 * i + 7) & 1 == 1).collect()
    }

    proptest! {
        #[test]
        fn the_lowest_flag_is_exact_and_no_flag_means_no_match(
            bytes in prop::collection::vec(prop_oneof![any::<u8>(), Just(b'"'), Just(0u8), Just(0x1f)], 8),
            b in any::<u8>(),
            n in 0u8..=0x80,
        ) {
            let x = word(&bytes);
            for (flags, truth) in [
                (eq(x, b), bytes.iter().map(|&c| c == b).collect::<Vec<_>>()),
                (less_than(x, n), bytes.iter().map(|&c| c < n).collect()),
                (non_ascii(x), bytes.iter().map(|&c| c > 0x7f).collect()),
            ] {
                match truth.iter().position(|&t| t) {
                    None => prop_assert_eq!(flags, 0),
                    Some(i) => {
                        prop_assert_eq!(first(flags), i);
                        prop_assert!(flagged(flags)[i]);
                    }
                }
            }
            for k in 0..8 {
                let kept = x.to_le_bytes();
                let cut = below(x, k).to_le_bytes();
                prop_assert_eq!(&cut[..k], &kept[..k]);
                prop_assert!(cut[k..].iter().all(|&c| c == 0));
            }
        }
    }
}
