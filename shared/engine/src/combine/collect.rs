//! Collecting elements, whole or by join side (what a window join keeps).

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::Combiner;

/// Keeps every element of the window, in arrival order.
#[derive(Debug, Clone, Copy, Default)]
pub struct Collect;

impl<In> Combiner<In> for Collect
where
    In: Clone + Serialize + DeserializeOwned + Send + 'static,
{
    type Acc = Vec<In>;
    type Out = Vec<In>;
    fn create(&self) -> Vec<In> {
        Vec::new()
    }
    fn add(&self, acc: &mut Vec<In>, input: &In) {
        acc.push(input.clone());
    }
    fn merge(&self, acc: &mut Vec<In>, other: Vec<In>) {
        acc.extend(other);
    }
    fn extract(&self, acc: &Vec<In>) -> Vec<In> {
        acc.clone()
    }
}

/// Keeps the elements of each of `sides` inputs apart (`side(element)` says which); the
/// accumulator of an N-way window join.
pub struct CollectBySide<S> {
    sides: usize,
    side: S,
}

impl<S> CollectBySide<S> {
    /// `sides` inputs; `side` maps an element to its input index, which must be `< sides`.
    ///
    /// # Panics
    /// `add` panics when `side` returns an index out of range: that is a bug in the pipeline, and
    /// dropping the element would lose it silently. (A Lambda stage retries the record, then
    /// dead-letters it as poison with this message.)
    pub fn new(sides: usize, side: S) -> Self {
        CollectBySide { sides, side }
    }
}

impl<In, S> Combiner<In> for CollectBySide<S>
where
    In: Clone + Serialize + DeserializeOwned + Send + 'static,
    S: Fn(&In) -> usize + Send + Sync + 'static,
{
    /// One list per side.
    type Acc = Vec<Vec<In>>;
    type Out = Vec<Vec<In>>;
    fn create(&self) -> Vec<Vec<In>> {
        vec![Vec::new(); self.sides]
    }
    fn add(&self, acc: &mut Vec<Vec<In>>, input: &In) {
        let side = (self.side)(input);
        let sides = acc.len();
        match acc.get_mut(side) {
            Some(list) => list.push(input.clone()),
            None => panic!("join side function returned input {side} for a join of {sides} inputs"),
        }
    }
    fn merge(&self, acc: &mut Vec<Vec<In>>, other: Vec<Vec<In>>) {
        for (mine, theirs) in acc.iter_mut().zip(other) {
            mine.extend(theirs);
        }
    }
    fn extract(&self, acc: &Vec<Vec<In>>) -> Vec<Vec<In>> {
        acc.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::combine::tests::{fold, merge_agrees_with_fold};

    #[test]
    fn collects_by_side_and_merges() {
        let c = CollectBySide::new(2, |x: &i32| (*x % 2) as usize);
        assert_eq!(c.extract(&fold(&c, &[1, 2, 3, 4])), vec![vec![2, 4], vec![1, 3]]);
        merge_agrees_with_fold(&c, &[1, 2, 3, 4, 5]);
    }

    #[test]
    #[should_panic(expected = "join side function returned input 5 for a join of 2 inputs")]
    fn a_side_out_of_range_is_a_loud_error_not_a_silent_drop() {
        let c = CollectBySide::new(2, |_: &i32| 5);
        let _ = fold(&c, &[1]);
    }
}
