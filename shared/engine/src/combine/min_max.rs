//! Minimum and maximum of a field.

use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::Combiner;

/// The smallest `field(element)` of a window (`None` for an empty one).
pub struct Min<F, V> {
    field: F,
    _v: PhantomData<fn() -> V>,
}

/// The largest `field(element)` of a window (`None` for an empty one).
pub struct Max<F, V> {
    field: F,
    _v: PhantomData<fn() -> V>,
}

impl<F, V> Min<F, V> {
    /// The minimum of what `field` extracts.
    pub fn of(field: F) -> Self {
        Min { field, _v: PhantomData }
    }
}

impl<F, V> Max<F, V> {
    /// The maximum of what `field` extracts.
    pub fn of(field: F) -> Self {
        Max { field, _v: PhantomData }
    }
}

fn keep<V: PartialOrd>(acc: &mut Option<V>, v: V, better: impl Fn(&V, &V) -> bool) {
    match acc {
        Some(cur) if !better(&v, cur) => {}
        _ => *acc = Some(v),
    }
}

impl<In, F, V> Combiner<In> for Min<F, V>
where
    F: Fn(&In) -> V + Send + Sync + 'static,
    V: PartialOrd + Clone + Serialize + DeserializeOwned + Send + 'static,
{
    type Acc = Option<V>;
    type Out = Option<V>;
    fn create(&self) -> Option<V> {
        None
    }
    fn add(&self, acc: &mut Option<V>, input: &In) {
        keep(acc, (self.field)(input), |a, b| a < b);
    }
    fn merge(&self, acc: &mut Option<V>, other: Option<V>) {
        if let Some(v) = other {
            keep(acc, v, |a, b| a < b);
        }
    }
    fn extract(&self, acc: &Option<V>) -> Option<V> {
        acc.clone()
    }
}

impl<In, F, V> Combiner<In> for Max<F, V>
where
    F: Fn(&In) -> V + Send + Sync + 'static,
    V: PartialOrd + Clone + Serialize + DeserializeOwned + Send + 'static,
{
    type Acc = Option<V>;
    type Out = Option<V>;
    fn create(&self) -> Option<V> {
        None
    }
    fn add(&self, acc: &mut Option<V>, input: &In) {
        keep(acc, (self.field)(input), |a, b| a > b);
    }
    fn merge(&self, acc: &mut Option<V>, other: Option<V>) {
        if let Some(v) = other {
            keep(acc, v, |a, b| a > b);
        }
    }
    fn extract(&self, acc: &Option<V>) -> Option<V> {
        acc.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::combine::tests::{fold, merge_agrees_with_fold};

    #[test]
    fn min_and_max_of_a_field() {
        let xs = [3, 9, -4, 7];
        let min = Min::of(|x: &i32| *x);
        let max = Max::of(|x: &i32| *x);
        assert_eq!(min.extract(&fold(&min, &xs)), Some(-4));
        assert_eq!(max.extract(&fold(&max, &xs)), Some(9));
        assert_eq!(max.extract(&fold(&max, &[])), None);
        merge_agrees_with_fold(&min, &xs);
        merge_agrees_with_fold(&max, &xs);
    }
}
