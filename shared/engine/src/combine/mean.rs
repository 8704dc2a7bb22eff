//! Arithmetic mean of a field.

use super::Combiner;

/// The mean of `field(element)` over a window (`None` for an empty one).
pub struct Mean<F> {
    field: F,
}

impl<F> Mean<F> {
    /// The mean of what `field` extracts.
    pub fn of(field: F) -> Self {
        Mean { field }
    }
}

impl<In, F> Combiner<In> for Mean<F>
where
    F: Fn(&In) -> f64 + Send + Sync + 'static,
{
    /// Sum and count.
    type Acc = (f64, u64);
    type Out = Option<f64>;
    fn create(&self) -> (f64, u64) {
        (0.0, 0)
    }
    fn add(&self, acc: &mut (f64, u64), input: &In) {
        acc.0 += (self.field)(input);
        acc.1 += 1;
    }
    fn merge(&self, acc: &mut (f64, u64), other: (f64, u64)) {
        acc.0 += other.0;
        acc.1 += other.1;
    }
    fn extract(&self, acc: &(f64, u64)) -> Option<f64> {
        (acc.1 > 0).then(|| acc.0 / acc.1 as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::combine::tests::{fold, merge_agrees_with_fold};

    #[test]
    fn mean_of_a_field() {
        let m = Mean::of(|x: &i32| f64::from(*x));
        assert_eq!(m.extract(&fold(&m, &[1, 2, 3, 6])), Some(3.0));
        assert_eq!(m.extract(&fold(&m, &[])), None);
        merge_agrees_with_fold(&m, &[1, 2, 3, 6]);
    }
}
