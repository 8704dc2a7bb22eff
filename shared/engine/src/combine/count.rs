//! Counting elements.

use super::Combiner;

/// Counts the elements of a window.
#[derive(Debug, Clone, Copy, Default)]
pub struct Count;

impl<In> Combiner<In> for Count {
    type Acc = u64;
    type Out = u64;
    fn create(&self) -> u64 {
        0
    }
    #[inline]
    fn add(&self, acc: &mut u64, _: &In) {
        *acc += 1;
    }
    fn merge(&self, acc: &mut u64, other: u64) {
        *acc += other;
    }
    fn extract(&self, acc: &u64) -> u64 {
        *acc
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::combine::tests::merge_agrees_with_fold;

    #[test]
    fn counts_and_merges() {
        merge_agrees_with_fold(&Count, &[1, 2, 3, 4]);
        assert_eq!(
            Combiner::<i32>::extract(&Count, &crate::combine::tests::fold(&Count, &[7, 7, 7])),
            3
        );
    }
}
