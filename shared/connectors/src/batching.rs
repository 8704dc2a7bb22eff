//! Splitting a batch into service calls limited by entry count and total bytes.

use std::ops::Range;

/// Consecutive ranges of `sizes` with at most `max_count` entries and at most `max_bytes` bytes
/// each. An entry larger than `max_bytes` is returned as its index in `Err` (no call can carry it).
pub(crate) fn chunks(sizes: &[usize], max_count: usize, max_bytes: usize) -> Result<Vec<Range<usize>>, usize> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, &size) in sizes.iter().enumerate() {
        if size > max_bytes {
            return Err(i);
        }
        if i > start && (i - start == max_count || bytes + size > max_bytes) {
            out.push(start..i);
            start = i;
            bytes = 0;
        }
        bytes += size;
    }
    if start < sizes.len() {
        out.push(start..sizes.len());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_respect_count_and_bytes() {
        assert_eq!(chunks(&[1; 25], 10, 100), Ok(vec![0..10, 10..20, 20..25]));
        assert_eq!(chunks(&[40, 40, 40, 10, 90], 10, 100), Ok(vec![0..2, 2..4, 4..5]));
        assert_eq!(chunks(&[], 10, 100), Ok(vec![]));
        assert_eq!(chunks(&[10, 101], 10, 100), Err(1));
    }
}
