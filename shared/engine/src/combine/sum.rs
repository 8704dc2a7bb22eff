//! Summing a numeric field.

use std::marker::PhantomData;
use std::ops::AddAssign;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::Combiner;

/// Sums `field(element)` over a window.
pub struct Sum<F, V> {
    field: F,
    _v: PhantomData<fn() -> V>,
}

impl<F, V> Sum<F, V> {
    /// Sums the value `field` extracts from each element.
    pub fn of(field: F) -> Self {
        Sum { field, _v: PhantomData }
    }
}

impl<In, F, V> Combiner<In> for Sum<F, V>
where
    F: Fn(&In) -> V + Send + Sync + 'static,
    V: Copy + Default + AddAssign + Serialize + DeserializeOwned + Send + 'static,
{
    type Acc = V;
    type Out = V;
    fn create(&self) -> V {
        V::default()
    }
    #[inline]
    fn add(&self, acc: &mut V, input: &In) {
        *acc += (self.field)(input);
    }
    fn merge(&self, acc: &mut V, other: V) {
        *acc += other;
    }
    fn extract(&self, acc: &V) -> V {
        *acc
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::combine::tests::{fold, merge_agrees_with_fold};

    #[test]
    fn sums_a_field() {
        let s = Sum::of(|x: &(i64, i64)| x.1);
        assert_eq!(s.extract(&fold(&s, &[(0, 5), (0, -2), (0, 10)])), 13);
        merge_agrees_with_fold(&s, &[(0, 5), (0, -2), (0, 10)]);
    }
}
