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
    /// `sides` inputs; `side` maps an element to its input index (`< sides`); an element whose
    /// index is out of range is ignored.
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
        if let Some(list) = acc.get_mut((self.side)(input)) {
            list.push(input.clone());
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
