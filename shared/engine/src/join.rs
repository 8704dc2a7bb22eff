//! Helpers for window joins.

/// The inner join of the per-input lists of a window join: every combination that takes one
/// value from each input, as a vector of references (input order). Empty if any input is empty.
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
