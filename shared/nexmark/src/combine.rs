//! A combiner the Nexmark queries share: keep every element whose score is the window's maximum.

use serde::de::DeserializeOwned;
use serde::Serialize;
use shardflow_engine::combine::Combiner;

/// Keeps all elements with the largest `score` seen (ties kept, in arrival order): the
/// "every row equal to the window's MAX" half of q5 and q7, as one pass instead of an aggregate
/// joined back with its input.
pub struct KeepMax<F> {
    score: F,
}

impl<F> KeepMax<F> {
    /// Scores elements with `score`.
    pub fn by(score: F) -> Self {
        KeepMax { score }
    }
}

impl<T, S, F> Combiner<T> for KeepMax<F>
where
    T: Clone + Serialize + DeserializeOwned + Send + 'static,
    S: Ord + Copy + Serialize + DeserializeOwned + Send + 'static,
    F: Fn(&T) -> S + Send + Sync + 'static,
{
    /// The best score so far and the elements that have it.
    type Acc = Option<(S, Vec<T>)>;
    type Out = Vec<T>;

    fn create(&self) -> Self::Acc {
        None
    }

    #[inline]
    fn add(&self, acc: &mut Self::Acc, input: &T) {
        let score = (self.score)(input);
        match acc {
            Some((best, kept)) if score == *best => kept.push(input.clone()),
            Some((best, _)) if score < *best => {}
            _ => *acc = Some((score, vec![input.clone()])),
        }
    }

    fn merge(&self, acc: &mut Self::Acc, other: Self::Acc) {
        match (acc.as_mut(), other) {
            (_, None) => {}
            (None, other) => *acc = other,
            (Some((best, kept)), Some((score, more))) => {
                if score == *best {
                    kept.extend(more);
                } else if score > *best {
                    *best = score;
                    *kept = more;
                }
            }
        }
    }

    fn extract(&self, acc: &Self::Acc) -> Vec<T> {
        acc.as_ref().map(|(_, kept)| kept.clone()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Item = (u32, char);
    type ByFirst = KeepMax<fn(&Item) -> u32>;

    fn fold(c: &ByFirst, xs: &[Item]) -> Option<(u32, Vec<Item>)> {
        let mut acc = c.create();
        for x in xs {
            c.add(&mut acc, x);
        }
        acc
    }

    #[test]
    fn keeps_all_ties_of_the_maximum_and_merges_like_folding() {
        let c: ByFirst = KeepMax::by(|x| x.0);
        let xs = [(3, 'a'), (5, 'b'), (1, 'c'), (5, 'd'), (4, 'e')];
        assert_eq!(c.extract(&fold(&c, &xs)), vec![(5, 'b'), (5, 'd')]);
        assert!(c.extract(&c.create()).is_empty());
        for cut in 0..=xs.len() {
            let mut left = fold(&c, &xs[..cut]);
            c.merge(&mut left, fold(&c, &xs[cut..]));
            assert_eq!(c.extract(&left), vec![(5, 'b'), (5, 'd')], "cut at {cut}");
        }
    }
}
