//! keyed: rows that share a key (an order id) where only the first of each counts. The consumers insert
//! the first event of each order in a batch and judge the others against it. (The relay's first unsent row
//! of each key is chosen in SQL, `relay::store::Round::lock_next`.)

use std::collections::HashSet;
use std::hash::Hash;

/// The indices of the first item of each key in `items`, in their order.
pub fn first_of_each<'a, T, K: Hash + Eq>(items: &'a [T], key: impl Fn(&'a T) -> K) -> Vec<usize> {
    let mut seen = HashSet::new();
    (0..items.len())
        .filter(|&i| seen.insert(key(&items[i])))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_of_each_key_in_order_and_nothing_else() {
        let items = [(3, "a"), (5, "b"), (8, "a"), (9, "c"), (12, "b"), (13, "d")];
        assert_eq!(first_of_each(&items, |(_, key)| *key), vec![0, 1, 3, 5]);
        assert_eq!(first_of_each(&items, |(id, _)| id % 2), vec![0, 2]);
        assert!(first_of_each(&[] as &[(i64, &str)], |(_, key)| *key).is_empty());
    }
}
