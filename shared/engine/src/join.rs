//! Helpers for window joins.

/// The inner join of the per-input lists of a window join: every combination that takes one
/// value from each input, as a vector of references (input order). Empty if any input is empty.
///
/// An N-way window join ([`crate::WindowedStream::join`]) of three inputs:
///
/// ```
/// use shardflow_engine::{join, Pipeline, Windowing};
///
/// // (key, event time, input 0..3, value)
/// let sums = Pipeline::builder("three-way")
///     .event_time(|r: &(char, i64, usize, i64)| r.1)
///     .key_by(|r| r.0)
///     .window(Windowing::tumbling(10).unwrap())
///     .join(3, |r| r.2, |_key, _window, lists| {
///         join::inner(lists).into_iter().map(|row| row.iter().map(|r| r.3).sum::<i64>()).collect()
///     })
///     .sink("sums");
/// let mut engine = sums.engine();
/// let shard = engine.partition("shard-0");
/// for (offset, r) in [('a', 1, 0, 1), ('a', 2, 1, 10), ('a', 3, 1, 20), ('a', 4, 2, 100), ('b', 5, 0, 1)]
///     .into_iter()
///     .enumerate()
/// {
///     engine.process(shard, offset as u64, 0, r);
/// }
/// engine.finish(); // key b has no values of inputs 1 and 2: no rows
/// let mut sums: Vec<i64> = engine.drain_output().into_iter().map(|o| o.value).collect();
/// sums.sort();
/// assert_eq!(sums, [111, 121]);
/// ```
pub fn inner<T>(lists: &[Vec<T>]) -> Vec<Vec<&T>> {
    let mut out: Vec<Vec<&T>> = vec![Vec::new()];
    for list in lists {
        if list.is_empty() {
            return Vec::new();
        }
        out = out
            .into_iter()
            .flat_map(|prefix| {
                list.iter().map(move |v| {
                    let mut row = prefix.clone();
                    row.push(v);
                    row
                })
            })
            .collect();
    }
    if lists.is_empty() {
        Vec::new()
    } else {
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inner_join_is_the_cartesian_product_or_nothing() {
        let lists = vec![vec![1, 2], vec![10], vec![100, 200]];
        let rows: Vec<Vec<i32>> = inner(&lists)
            .into_iter()
            .map(|r| r.into_iter().copied().collect())
            .collect();
        assert_eq!(
            rows,
            vec![vec![1, 10, 100], vec![1, 10, 200], vec![2, 10, 100], vec![2, 10, 200]]
        );
        assert!(inner(&[vec![1], vec![]]).is_empty());
        assert!(inner::<i32>(&[]).is_empty());
    }
}
