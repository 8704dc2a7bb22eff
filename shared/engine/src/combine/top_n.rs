//! The N largest values of a field.

use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::Combiner;

/// The `n` largest values of `field(element)`, largest first. Ties are kept in value order, so
/// the result does not depend on arrival order. Extract e.g. `(price, item_id)` for "top items
/// by price".
pub struct TopN<F, V> {
    n: usize,
    field: F,
    _v: PhantomData<fn() -> V>,
}

impl<F, V> TopN<F, V> {
    /// The `n` largest of what `field` extracts.
    pub fn of(n: usize, field: F) -> Self {
        TopN {
            n,
            field,
            _v: PhantomData,
        }
    }
}

impl<F, V: Ord> TopN<F, V> {
    fn insert(&self, acc: &mut Vec<V>, v: V) {
        if acc.len() == self.n && acc.last().is_some_and(|min| &v <= min) {
            return;
        }
        let at = acc.partition_point(|x| x > &v);
        acc.insert(at, v);
        acc.truncate(self.n);
    }
}

impl<In, F, V> Combiner<In> for TopN<F, V>
where
    F: Fn(&In) -> V + Send + Sync + 'static,
    V: Ord + Clone + Serialize + DeserializeOwned + Send + 'static,
{
    /// Sorted descending, at most `n` long.
    type Acc = Vec<V>;
    type Out = Vec<V>;
    fn create(&self) -> Vec<V> {
        Vec::with_capacity(self.n.min(16))
    }
    fn add(&self, acc: &mut Vec<V>, input: &In) {
        self.insert(acc, (self.field)(input));
    }
    fn merge(&self, acc: &mut Vec<V>, other: Vec<V>) {
        for v in other {
            self.insert(acc, v);
        }
    }
    fn extract(&self, acc: &Vec<V>) -> Vec<V> {
        acc.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::combine::tests::{fold, merge_agrees_with_fold};

    #[test]
    fn keeps_the_n_largest_in_order() {
        let t = TopN::of(3, |x: &i32| *x);
        assert_eq!(t.extract(&fold(&t, &[5, 1, 9, 3, 9, 7])), vec![9, 9, 7]);
        assert_eq!(t.extract(&fold(&t, &[2])), vec![2]);
        merge_agrees_with_fold(&t, &[5, 1, 9, 3, 9, 7, 8]);
    }
}
