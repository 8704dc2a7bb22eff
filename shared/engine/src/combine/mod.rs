//! Aggregations as combiners: create / add / merge / extract, like Beam's `CombineFn`.
//!
//! A combiner folds the elements of a window into an accumulator. `merge` joins two accumulators
//! (session windows merge, and sliding windows could share partial aggregates); the accumulator is
//! part of keyed state and is therefore serialized in checkpoints.

mod collect;
mod count;
mod from_fns;
mod mean;
mod migrate;
mod min_max;
mod sum;
mod top_n;
mod tuple;

use serde::de::DeserializeOwned;
use serde::Serialize;

pub use collect::{Collect, CollectBySide};
pub use count::Count;
pub use from_fns::{from_fns, FnCombiner};
pub use mean::Mean;
pub use migrate::{migrate_from, Migrate};
pub use min_max::{Max, Min};
pub use sum::Sum;
pub use top_n::TopN;

/// A stateful aggregation over the elements of a window.
///
/// Contract: `extract(add*(create()))` is the aggregate of the added elements, and
/// `merge(a, b)` equals the accumulator of the elements of both, in any order of adding.
pub trait Combiner<In>: Send + Sync + 'static {
    /// The accumulator (kept in keyed state, serialized in checkpoints).
    type Acc: Clone + Serialize + DeserializeOwned + Send + 'static;
    /// The aggregate's result.
    type Out;
    /// An empty accumulator.
    fn create(&self) -> Self::Acc;
    /// Adds one element.
    fn add(&self, acc: &mut Self::Acc, input: &In);
    /// Adds everything `other` holds.
    fn merge(&self, acc: &mut Self::Acc, other: Self::Acc);
    /// The result for what the accumulator holds.
    fn extract(&self, acc: &Self::Acc) -> Self::Out;

    /// The schema version of the accumulator (see [`crate::schema`]): 1 unless the combiner
    /// migrates older accumulators ([`migrate_from`]).
    fn state_version(&self) -> u32 {
        1
    }

    /// The older schema versions whose accumulators [`Combiner::upgrade`] reads.
    fn migrates_from(&self) -> Vec<u32> {
        Vec::new()
    }

    /// Decodes a key group stored in layout `L` with accumulators of schema version `from` into
    /// the current accumulator type; `None` if the combiner has no migration from `from`.
    fn upgrade<L: crate::schema::StateLayout>(
        &self,
        from: u32,
        bytes: &[u8],
    ) -> Option<Result<L::With<Self::Acc>, postcard::Error>> {
        let _ = (from, bytes);
        None
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Adds `xs` one by one into a fresh accumulator.
    pub(crate) fn fold<In, C: Combiner<In>>(c: &C, xs: &[In]) -> C::Acc {
        let mut acc = c.create();
        for x in xs {
            c.add(&mut acc, x);
        }
        acc
    }

    /// Checks the combiner contract: merging the folds of two halves equals folding all.
    pub(crate) fn merge_agrees_with_fold<In, C>(c: &C, xs: &[In])
    where
        C: Combiner<In>,
        C::Out: PartialEq + std::fmt::Debug,
    {
        for cut in 0..=xs.len() {
            let mut left = fold(c, &xs[..cut]);
            c.merge(&mut left, fold(c, &xs[cut..]));
            assert_eq!(c.extract(&left), c.extract(&fold(c, xs)), "cut at {cut}");
        }
    }
}
