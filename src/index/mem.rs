//! The head's in-memory inverted index: label name -> label value -> sorted series references
//! (Prometheus' `MemPostings`). It is not synchronized; the head wraps it in a lock.
//!
//! Memory is the constraint (the head budgets ~1.5 KiB per series in all): names and values are the
//! caller's interned `Arc<str>`s, so each distinct pair costs one map slot and one vector, and each
//! series costs one `u64` per label plus one in the all-postings list, with no per-series boxes.

use std::sync::Arc;

use foldhash::HashMap;

use super::postings::{merge, EmptyPostings, ListPostings, Postings};
use super::IndexReader;

/// Label name -> label value -> sorted, unique series references.
#[derive(Debug, Default)]
pub struct MemPostings {
    by_name: HashMap<Arc<str>, HashMap<Arc<str>, Vec<u64>>>,
    all: Vec<u64>,
}

/// Inserts `r` keeping `list` sorted and unique; appending a new largest reference (the usual
/// case: the head hands out increasing references) is O(1).
#[inline]
fn insert_sorted(list: &mut Vec<u64>, r: u64) {
    match list.last() {
        Some(&last) if last >= r => {
            if let Err(i) = list.binary_search(&r) {
                list.insert(i, r);
            }
        }
        _ => list.push(r),
    }
}

/// Removes the references in `sorted_drop` from `list` in one merge-like pass.
fn remove_sorted(list: &mut Vec<u64>, sorted_drop: &[u64]) {
    let mut d = 0;
    list.retain(|&r| {
        while d < sorted_drop.len() && sorted_drop[d] < r {
            d += 1;
        }
        d >= sorted_drop.len() || sorted_drop[d] != r
    });
}

impl MemPostings {
    pub fn new() -> Self {
        Self::default()
    }

    /// Indexes `series` under each of its labels (sorted by name) and in the all-postings list.
    pub fn add<'a>(
        &mut self,
        series: u64,
        labels: impl IntoIterator<Item = (&'a Arc<str>, &'a Arc<str>)>,
    ) {
        for (name, value) in labels {
            let values = match self.by_name.get_mut(&**name) {
                Some(v) => v,
                None => self.by_name.entry(Arc::clone(name)).or_default(),
            };
            let list = match values.get_mut(&**value) {
                Some(l) => l,
                None => values.entry(Arc::clone(value)).or_default(),
            };
            insert_sorted(list, series);
        }
        insert_sorted(&mut self.all, series);
    }

    /// Removes the given series (sorted references) from every list, dropping lists that empty.
    /// Walks the whole index, as Prometheus' does: it runs at series GC, not per sample.
    pub fn delete(&mut self, series: &[u64]) {
        if series.is_empty() {
            return;
        }
        debug_assert!(series.windows(2).all(|w| w[0] <= w[1]));
        let (lo, hi) = (series[0], series[series.len() - 1]);
        for values in self.by_name.values_mut() {
            values.retain(|_, list| {
                // Most lists hold none of the references: skip them without a pass.
                if list.last().is_some_and(|&l| l >= lo) && list.first().is_some_and(|&f| f <= hi) {
                    remove_sorted(list, series);
                }
                !list.is_empty()
            });
        }
        self.by_name.retain(|_, values| !values.is_empty());
        remove_sorted(&mut self.all, series);
    }

    /// The series with label `name="value"`, sorted; empty if none.
    pub fn get(&self, name: &str, value: &str) -> &[u64] {
        self.by_name
            .get(name)
            .and_then(|v| v.get(value))
            .map_or(&[], Vec::as_slice)
    }

    /// Every indexed series, sorted.
    pub fn all(&self) -> &[u64] {
        &self.all
    }

    /// Names of labels at least one series has, sorted.
    pub fn label_names(&self) -> Vec<String> {
        let mut out: Vec<String> = self.by_name.keys().map(|k| k.to_string()).collect();
        out.sort_unstable();
        out
    }

    /// Values label `name` takes, sorted.
    pub fn label_values(&self, name: &str) -> Vec<String> {
        let mut out: Vec<String> = self
            .by_name
            .get(name)
            .map(|v| v.keys().map(|k| k.to_string()).collect())
            .unwrap_or_default();
        out.sort_unstable();
        out
    }

    pub fn num_series(&self) -> usize {
        self.all.len()
    }
}

impl IndexReader for MemPostings {
    fn label_values(&self, name: &str) -> Vec<String> {
        MemPostings::label_values(self, name)
    }

    fn postings(&self, name: &str, values: &[&str]) -> Box<dyn Postings + '_> {
        let Some(by_value) = self.by_name.get(name) else {
            return Box::new(EmptyPostings);
        };
        let lists: Vec<Box<dyn Postings + '_>> = values
            .iter()
            .filter_map(|v| by_value.get(*v))
            .map(|l| Box::new(ListPostings::new(l)) as Box<dyn Postings + '_>)
            .collect();
        merge(lists)
    }

    fn all_postings(&self) -> Box<dyn Postings + '_> {
        Box::new(ListPostings::new(&self.all))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::{BTreeMap, BTreeSet};

    fn lbls(pairs: &[(&str, &str)]) -> Vec<(Arc<str>, Arc<str>)> {
        pairs
            .iter()
            .map(|(n, v)| (Arc::from(*n), Arc::from(*v)))
            .collect()
    }

    fn pairs(l: &[(Arc<str>, Arc<str>)]) -> impl Iterator<Item = (&Arc<str>, &Arc<str>)> {
        l.iter().map(|(n, v)| (n, v))
    }

    #[test]
    fn add_get_and_names() {
        let mut p = MemPostings::new();
        p.add(1, pairs(&lbls(&[("__name__", "up"), ("job", "a")])));
        p.add(2, pairs(&lbls(&[("__name__", "up"), ("job", "b")])));
        p.add(3, pairs(&lbls(&[("__name__", "down")])));
        assert_eq!(p.get("__name__", "up"), &[1, 2]);
        assert_eq!(p.get("job", "b"), &[2]);
        assert_eq!(p.get("job", "c"), &[] as &[u64]);
        assert_eq!(p.get("nope", "c"), &[] as &[u64]);
        assert_eq!(p.all(), &[1, 2, 3]);
        assert_eq!(p.label_names(), ["__name__", "job"]);
        assert_eq!(p.label_values("__name__"), ["down", "up"]);
        assert_eq!(p.num_series(), 3);
        p.delete(&[2, 3]);
        assert_eq!(p.get("__name__", "up"), &[1]);
        assert_eq!(p.label_values("__name__"), ["up"]);
        assert_eq!(p.label_values("job"), ["a"]);
        assert_eq!(p.all(), &[1]);
        p.delete(&[1]);
        assert!(p.label_names().is_empty());
        assert_eq!(p.num_series(), 0);
    }

    proptest! {
        #[test]
        fn lists_stay_sorted_under_out_of_order_add_and_delete(
            adds in proptest::collection::vec((0u64..200, 0usize..4, 0usize..3), 0..300),
            dels in proptest::collection::btree_set(0u64..200, 0..50),
        ) {
            let mut p = MemPostings::new();
            let mut model: BTreeMap<(String, String), BTreeSet<u64>> = BTreeMap::new();
            let mut all = BTreeSet::new();
            for &(r, a, b) in &adds {
                let pairs = [("a", ["x", "y", "z", "w"][a]), ("b", ["1", "2", "3"][b])];
                p.add(r, self::pairs(&lbls(&pairs)));
                for (n, v) in pairs {
                    model.entry((n.into(), v.into())).or_default().insert(r);
                }
                all.insert(r);
            }
            let check = |p: &MemPostings, model: &BTreeMap<(String, String), BTreeSet<u64>>, all: &BTreeSet<u64>| {
                for ((n, v), set) in model {
                    let want: Vec<u64> = set.iter().copied().collect();
                    prop_assert_eq!(p.get(n, v), &want[..]);
                }
                let want: Vec<u64> = all.iter().copied().collect();
                prop_assert_eq!(p.all(), &want[..]);
                Ok(())
            };
            check(&p, &model, &all)?;
            let dels: Vec<u64> = dels.into_iter().collect();
            p.delete(&dels);
            for set in model.values_mut() {
                set.retain(|r| !dels.contains(r));
            }
            model.retain(|_, s| !s.is_empty());
            all.retain(|r| !dels.contains(r));
            check(&p, &model, &all)?;
            let names: BTreeSet<String> = model.keys().map(|k| k.0.clone()).collect();
            prop_assert_eq!(p.label_names(), names.into_iter().collect::<Vec<_>>());
        }
    }
}
