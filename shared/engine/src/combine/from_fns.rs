//! A user-defined combiner from four closures.

use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::Combiner;

/// A combiner made of closures; see [`from_fns`].
pub struct FnCombiner<C, A, M, E, Acc> {
    create: C,
    add: A,
    merge: M,
    extract: E,
    _acc: PhantomData<fn() -> Acc>,
}

/// A user-defined combiner: `create` an accumulator, `add` an element, `merge` two accumulators,
/// `extract` the result (Beam's `CombineFn`). `merge` must be consistent with `add` (see
/// [`Combiner`]) or session windows give wrong results.
pub fn from_fns<In, Acc, Out, C, A, M, E>(create: C, add: A, merge: M, extract: E) -> FnCombiner<C, A, M, E, Acc>
where
    C: Fn() -> Acc + Send + Sync + 'static,
    A: Fn(&mut Acc, &In) + Send + Sync + 'static,
    M: Fn(&mut Acc, Acc) + Send + Sync + 'static,
    E: Fn(&Acc) -> Out + Send + Sync + 'static,
{
    FnCombiner {
        create,
        add,
        merge,
        extract,
        _acc: PhantomData,
    }
}

impl<In, Acc, Out, C, A, M, E> Combiner<In> for FnCombiner<C, A, M, E, Acc>
where
    Acc: Clone + Serialize + DeserializeOwned + Send + 'static,
    C: Fn() -> Acc + Send + Sync + 'static,
    A: Fn(&mut Acc, &In) + Send + Sync + 'static,
    M: Fn(&mut Acc, Acc) + Send + Sync + 'static,
    E: Fn(&Acc) -> Out + Send + Sync + 'static,
{
    type Acc = Acc;
    type Out = Out;
    fn create(&self) -> Acc {
        (self.create)()
    }
    fn add(&self, acc: &mut Acc, input: &In) {
        (self.add)(acc, input)
    }
    fn merge(&self, acc: &mut Acc, other: Acc) {
        (self.merge)(acc, other)
    }
    fn extract(&self, acc: &Acc) -> Out {
        (self.extract)(acc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::combine::tests::{fold, merge_agrees_with_fold};

    #[test]
    fn distinct_count_as_user_combiner() {
        let c = from_fns(
            std::collections::BTreeSet::<u32>::new,
            |acc, x: &u32| {
                acc.insert(*x);
            },
            |acc, other| acc.extend(other),
            |acc| acc.len(),
        );
        assert_eq!(c.extract(&fold(&c, &[1, 2, 2, 3, 1])), 3);
        merge_agrees_with_fold(&c, &[1, 2, 2, 3, 1]);
    }
}
