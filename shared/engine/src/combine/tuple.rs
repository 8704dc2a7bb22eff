//! Several combiners over the same elements at once: `(Count, Sum::of(..))`.

use super::Combiner;

impl<In, A: Combiner<In>, B: Combiner<In>> Combiner<In> for (A, B) {
    type Acc = (A::Acc, B::Acc);
    type Out = (A::Out, B::Out);
    fn create(&self) -> Self::Acc {
        (self.0.create(), self.1.create())
    }
    #[inline]
    fn add(&self, acc: &mut Self::Acc, input: &In) {
        self.0.add(&mut acc.0, input);
        self.1.add(&mut acc.1, input);
    }
    fn merge(&self, acc: &mut Self::Acc, other: Self::Acc) {
        self.0.merge(&mut acc.0, other.0);
        self.1.merge(&mut acc.1, other.1);
    }
    fn extract(&self, acc: &Self::Acc) -> Self::Out {
        (self.0.extract(&acc.0), self.1.extract(&acc.1))
    }
}

impl<In, A: Combiner<In>, B: Combiner<In>, C: Combiner<In>> Combiner<In> for (A, B, C) {
    type Acc = (A::Acc, B::Acc, C::Acc);
    type Out = (A::Out, B::Out, C::Out);
    fn create(&self) -> Self::Acc {
        (self.0.create(), self.1.create(), self.2.create())
    }
    #[inline]
    fn add(&self, acc: &mut Self::Acc, input: &In) {
        self.0.add(&mut acc.0, input);
        self.1.add(&mut acc.1, input);
        self.2.add(&mut acc.2, input);
    }
    fn merge(&self, acc: &mut Self::Acc, other: Self::Acc) {
        self.0.merge(&mut acc.0, other.0);
        self.1.merge(&mut acc.1, other.1);
        self.2.merge(&mut acc.2, other.2);
    }
    fn extract(&self, acc: &Self::Acc) -> Self::Out {
        (self.0.extract(&acc.0), self.1.extract(&acc.1), self.2.extract(&acc.2))
    }
}

#[cfg(test)]
mod tests {
    use crate::combine::tests::{fold, merge_agrees_with_fold};
    use crate::combine::{Combiner, Count, Max, Sum};

    #[test]
    fn tuples_combine_side_by_side() {
        let c = (Count, Sum::of(|x: &i64| *x), Max::of(|x: &i64| *x));
        assert_eq!(c.extract(&fold(&c, &[4, 6, 1])), (3, 11, Some(6)));
        merge_agrees_with_fold(&c, &[4, 6, 1, 9]);
    }
}
