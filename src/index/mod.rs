//! Series selection: postings lists, the head's in-memory inverted index, and label matchers
//! resolved to series references.
//!
//! Semantics follow Prometheus' `tsdb/index/postings.go` and `PostingsForMatchers` in
//! `tsdb/querier.go` (v2.42). The postings section of the block index format (`index.md`,
//! "Postings") stores lists as big-endian u32 references, read by [`BigEndianPostings`]; the block
//! index reader itself lives elsewhere and implements [`IndexReader`] like [`MemPostings`] does.

mod mem;
mod postings;

pub use mem::MemPostings;
pub use postings::{
    collect, intersect, merge, without, BigEndianPostings, EmptyPostings, ListPostings, Postings,
    VecPostings,
};

use crate::labels::{MatchType, Matcher};

/// What [`postings_for_matchers`] needs from an index (the head's or a block's).
pub trait IndexReader {
    /// Values of label `name`, sorted and unique.
    fn label_values(&self, name: &str) -> Vec<String>;
    /// Union of the postings of `name=v` over `values`.
    fn postings(&self, name: &str, values: &[&str]) -> Box<dyn Postings + '_>;
    /// Every series.
    fn all_postings(&self) -> Box<dyn Postings + '_>;
}

/// The matcher selecting exactly the series `m` does not select, among those with the label
/// (Prometheus' `Matcher.Inverse`). Flipping the kind keeps the compiled regex, which is the same
/// anchored pattern for `=~` and `!~`.
fn inverse(m: &Matcher) -> Matcher {
    let mut inv = m.clone();
    inv.kind = match m.kind {
        MatchType::Equal => MatchType::NotEqual,
        MatchType::NotEqual => MatchType::Equal,
        MatchType::Regexp => MatchType::NotRegexp,
        MatchType::NotRegexp => MatchType::Regexp,
    };
    inv
}

/// Series that have label `m.name` with a value `m` matches (never series lacking the label).
/// `=` and literal alternations are looked up directly; anything else scans the label's values.
fn postings_for_matcher<'a>(ix: &'a dyn IndexReader, m: &Matcher) -> Box<dyn Postings + 'a> {
    if m.kind == MatchType::Equal {
        return ix.postings(&m.name, &[m.value.as_str()]);
    }
    if let Some(set) = m.set_matches() {
        let values: Vec<&str> = set.iter().map(String::as_str).collect();
        return ix.postings(&m.name, &values);
    }
    let all = ix.label_values(&m.name);
    let values: Vec<&str> = all
        .iter()
        .map(String::as_str)
        .filter(|v| m.matches(v))
        .collect();
    ix.postings(&m.name, &values)
}

/// Series that have label `m.name` with a value `m` does not match.
fn inverse_postings_for_matcher<'a>(
    ix: &'a dyn IndexReader,
    m: &Matcher,
) -> Box<dyn Postings + 'a> {
    let all = ix.label_values(&m.name);
    let values: Vec<&str> = if m.kind == MatchType::Equal && m.value.is_empty() {
        // `=""` matches no stored value: every value's series has the label set.
        all.iter().map(String::as_str).collect()
    } else {
        all.iter()
            .map(String::as_str)
            .filter(|v| !m.matches(v))
            .collect()
    };
    ix.postings(&m.name, &values)
}

/// The sorted references of series every matcher selects, where a series lacking a label counts as
/// having the value `""` (Prometheus' `PostingsForMatchers`).
///
/// Matchers that do not match `""` require the label: their postings are intersected. Matchers
/// that do match `""` select series lacking the label too, so they are applied by subtracting the
/// series whose value they reject; with nothing to subtract from, that starts from all series. A
/// negative matcher on a label some other matcher requires subtracts its inverse instead. No
/// matchers select nothing, as in Prometheus.
pub fn postings_for_matchers(ix: &dyn IndexReader, matchers: &[Matcher]) -> Vec<u64> {
    let must_be_set = |name: &str| {
        matchers
            .iter()
            .any(|m| m.name == name && !m.matches_empty())
    };
    let mut its: Vec<Box<dyn Postings + '_>> = Vec::new();
    let mut nots: Vec<Box<dyn Postings + '_>> = Vec::new();
    for m in matchers {
        if m.name.is_empty() && m.value.is_empty() {
            // Prometheus' special case: the all-postings key.
            its.push(ix.all_postings());
            continue;
        }
        if !must_be_set(&m.name) {
            // `l=""`, `l=~"x|"`, `l!="x"`, ...: keep series lacking l, drop those with a rejected value.
            nots.push(inverse_postings_for_matcher(ix, m));
            continue;
        }
        let is_not = matches!(m.kind, MatchType::NotEqual | MatchType::NotRegexp);
        if is_not && m.matches_empty() {
            // `l!="x"` where another matcher requires l: subtract `l="x"`.
            nots.push(postings_for_matcher(ix, &inverse(m)));
        } else if is_not {
            // `l!=""`, `l!~".*x"`: the series having a value the matcher accepts.
            its.push(inverse_postings_for_matcher(ix, &inverse(m)));
        } else {
            its.push(postings_for_matcher(ix, m));
        }
    }
    if its.is_empty() && !nots.is_empty() {
        its.push(ix.all_postings());
    }
    let mut it = intersect(its);
    for n in nots {
        it = without(it, n);
    }
    collect(&mut *it)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::Labels;
    use proptest::prelude::*;
    use std::sync::Arc;

    fn index(series: &[Labels]) -> MemPostings {
        let mut ix = MemPostings::new();
        for (i, l) in series.iter().enumerate() {
            let pairs: Vec<(Arc<str>, Arc<str>)> = l
                .iter()
                .map(|l| (Arc::from(l.name.as_str()), Arc::from(l.value.as_str())))
                .collect();
            ix.add(i as u64 + 1, pairs.iter().map(|(n, v)| (n, v)));
        }
        ix
    }

    /// The definition: every matcher accepts the series' value, `""` when the label is missing.
    fn brute_force(series: &[Labels], matchers: &[Matcher]) -> Vec<u64> {
        if matchers.is_empty() {
            return Vec::new();
        }
        (1..=series.len() as u64)
            .filter(|&r| {
                let l = &series[r as usize - 1];
                matchers
                    .iter()
                    .all(|m| m.matches(l.get(&m.name).unwrap_or("")))
            })
            .collect()
    }

    fn m(kind: MatchType, name: &str, value: &str) -> Matcher {
        Matcher::new(kind, name, value).unwrap()
    }

    #[test]
    fn matcher_semantics_table() {
        use MatchType::*;
        let series = vec![
            Labels::from_pairs(&[("n", "1")]),                // 1
            Labels::from_pairs(&[("n", "1"), ("i", "a")]),    // 2
            Labels::from_pairs(&[("n", "1"), ("i", "b")]),    // 3
            Labels::from_pairs(&[("n", "2")]),                // 4
            Labels::from_pairs(&[("n", "2"), ("i", "a")]),    // 5
            Labels::from_pairs(&[("n", "2"), ("i", "x\ny")]), // 6
            Labels::from_pairs(&[("i", "a")]),                // 7
        ];
        let ix = index(&series);
        let cases: Vec<(Vec<Matcher>, Vec<u64>)> = vec![
            (vec![], vec![]),
            (vec![m(Equal, "n", "1")], vec![1, 2, 3]),
            (vec![m(Equal, "n", "1"), m(Equal, "i", "a")], vec![2]),
            (vec![m(Equal, "n", "1"), m(Equal, "i", "missing")], vec![]),
            (vec![m(Equal, "n", "1"), m(NotEqual, "i", "")], vec![2, 3]),
            (vec![m(Equal, "n", "1"), m(Equal, "i", "")], vec![1]),
            (vec![m(Equal, "i", "")], vec![1, 4]),
            (vec![m(Equal, "missing", "")], vec![1, 2, 3, 4, 5, 6, 7]),
            (vec![m(NotEqual, "i", "")], vec![2, 3, 5, 6, 7]),
            (vec![m(NotEqual, "missing", "")], vec![]),
            // `.` matches a newline (`^(?s:RE)$`, as in Prometheus 3).
            (vec![m(Regexp, "i", ".+")], vec![2, 3, 5, 6, 7]),
            (vec![m(Regexp, "i", ".*")], vec![1, 2, 3, 4, 5, 6, 7]),
            (vec![m(Regexp, "i", "a|")], vec![1, 2, 4, 5, 7]),
            (vec![m(Regexp, "i", "a|b")], vec![2, 3, 5, 7]),
            (vec![m(Equal, "n", "1"), m(Regexp, "i", "a|")], vec![1, 2]),
            (vec![m(Equal, "n", "1"), m(NotEqual, "i", "a")], vec![1, 3]),
            (vec![m(NotEqual, "i", "a")], vec![1, 3, 4, 6]),
            (vec![m(NotRegexp, "i", "a|b")], vec![1, 4, 6]),
            (vec![m(NotRegexp, "i", ".+")], vec![1, 4]),
            (vec![m(NotRegexp, "i", "")], vec![2, 3, 5, 6, 7]),
            (
                vec![m(Regexp, "i", ".+"), m(NotEqual, "i", "a")],
                vec![3, 6],
            ),
            (
                vec![m(NotEqual, "i", ""), m(NotEqual, "i", "a")],
                vec![3, 6],
            ),
            (vec![m(Regexp, "i", "x.y")], vec![6]),
            (vec![m(Regexp, "i", "(?s)x.y")], vec![6]),
            (
                vec![m(Regexp, "n", "1|2"), m(NotRegexp, "i", "b|")],
                vec![2, 5, 6],
            ),
            (vec![m(Regexp, "n", "3|4")], vec![]),
            (vec![Matcher::equal("", "")], vec![1, 2, 3, 4, 5, 6, 7]),
        ];
        for (ms, want) in cases {
            let got = postings_for_matchers(&ix, &ms);
            let shown: Vec<String> = ms.iter().map(|m| m.to_string()).collect();
            assert_eq!(got, want, "{{{}}}", shown.join(", "));
            if !ms.iter().any(|m| m.name.is_empty()) {
                assert_eq!(brute_force(&series, &ms), want, "model for {shown:?}");
            }
        }
    }

    fn arb_matcher() -> impl Strategy<Value = Matcher> {
        let name = prop::sample::select(vec!["a", "b", "c"]);
        let kind = prop::sample::select(vec![
            MatchType::Equal,
            MatchType::NotEqual,
            MatchType::Regexp,
            MatchType::NotRegexp,
        ]);
        let value = prop::sample::select(vec![
            "", "1", "2", "3", "1|2", "1|", ".+", ".*", "[12]", "x|3", ".",
        ]);
        (kind, name, value).prop_map(|(k, n, v)| m(k, n, v))
    }

    proptest! {
        #[test]
        fn postings_for_matchers_equals_brute_force(
            raw in proptest::collection::vec(
                proptest::collection::vec((0usize..3, 0usize..4), 0..3), 0..25),
            matchers in proptest::collection::vec(arb_matcher(), 1..4),
        ) {
            let series: Vec<Labels> = raw
                .iter()
                .map(|ls| {
                    let pairs: Vec<(&str, &str)> = ls
                        .iter()
                        .map(|&(n, v)| (["a", "b", "c"][n], ["1", "2", "3", "4"][v]))
                        .collect();
                    Labels::from_pairs(&pairs)
                })
                .collect();
            let ix = index(&series);
            prop_assert_eq!(postings_for_matchers(&ix, &matchers), brute_force(&series, &matchers));
        }
    }
}
