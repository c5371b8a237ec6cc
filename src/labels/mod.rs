//! Label sets and label matchers: the identity of a series and the way queries select series.
//!
//! A [`Labels`] is a set of (name, value) pairs sorted by name, with unique names and no empty
//! values — Prometheus' rule: a label with an empty value is the same as no label. The metric name
//! is the label `__name__`. This module knows nothing of storage; every layer above uses it.

mod matcher;
mod selector;

pub use matcher::{MatchType, Matcher, MatcherError};
pub use selector::{parse_selector, SelectorError};

use std::fmt;

/// The label that holds a series' metric name.
pub const METRIC_NAME: &str = "__name__";

/// One label: a name and a non-empty value.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Label {
    pub name: String,
    pub value: String,
}

impl Label {
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Label {
        Label {
            name: name.into(),
            value: value.into(),
        }
    }
}

/// A series' label set: sorted by name, names unique, values non-empty.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Labels(Vec<Label>);

impl Labels {
    /// Builds a label set from labels in any order: sorts by name, drops labels with empty values,
    /// and keeps the last of duplicate names (as Prometheus' `labels.Builder` does).
    pub fn new(mut labels: Vec<Label>) -> Labels {
        labels.retain(|l| !l.value.is_empty());
        // Stable sort keeps input order among equal names; dedup then keeps the last.
        labels.sort_by(|a, b| a.name.cmp(&b.name));
        let mut out: Vec<Label> = Vec::with_capacity(labels.len());
        for l in labels {
            match out.last_mut() {
                Some(last) if last.name == l.name => *last = l,
                _ => out.push(l),
            }
        }
        Labels(out)
    }

    /// Builds a label set from (name, value) pairs.
    ///
    /// ```
    /// use tsdb::labels::Labels;
    /// let l = Labels::from_pairs(&[("job", "api"), ("__name__", "up")]);
    /// assert_eq!(l.to_string(), r#"up{job="api"}"#);
    /// ```
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Labels {
        Labels::new(pairs.iter().map(|(n, v)| Label::new(*n, *v)).collect())
    }

    /// Wraps labels the caller guarantees are already sorted by unique name with non-empty values.
    pub fn from_sorted_unchecked(labels: Vec<Label>) -> Labels {
        debug_assert!(labels.windows(2).all(|w| w[0].name < w[1].name));
        Labels(labels)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .binary_search_by(|l| l.name.as_str().cmp(name))
            .ok()
            .map(|i| self.0[i].value.as_str())
    }

    /// The metric name (`__name__`), if any.
    pub fn metric_name(&self) -> Option<&str> {
        self.get(METRIC_NAME)
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Label> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn as_slice(&self) -> &[Label] {
        &self.0
    }

    pub fn into_vec(self) -> Vec<Label> {
        self.0
    }

    /// A copy without the metric name, as PromQL functions and operators return.
    pub fn without_metric_name(&self) -> Labels {
        Labels(
            self.0
                .iter()
                .filter(|l| l.name != METRIC_NAME)
                .cloned()
                .collect(),
        )
    }
}

impl<'a> IntoIterator for &'a Labels {
    type Item = &'a Label;
    type IntoIter = std::slice::Iter<'a, Label>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// Writes a label value or HELP-free string with Go `%q`-style escaping of `\`, `"` and newline,
/// as Prometheus prints label sets.
fn write_escaped(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    for c in s.chars() {
        match c {
            '\\' => f.write_str("\\\\")?,
            '"' => f.write_str("\\\"")?,
            '\n' => f.write_str("\\n")?,
            c => fmt::Write::write_char(f, c)?,
        }
    }
    Ok(())
}

/// `name{a="b", c="d"}`, or `{a="b"}` without a metric name: Prometheus' notation.
impl fmt::Display for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(name) = self.metric_name() {
            f.write_str(name)?;
        }
        let mut rest = self.0.iter().filter(|l| l.name != METRIC_NAME).peekable();
        if rest.peek().is_none() && self.metric_name().is_some() {
            return Ok(());
        }
        f.write_str("{")?;
        let mut first = true;
        for l in rest {
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            f.write_str(&l.name)?;
            f.write_str("=\"")?;
            write_escaped(f, &l.value)?;
            f.write_str("\"")?;
        }
        f.write_str("}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_sorts_drops_empty_and_keeps_last_duplicate() {
        let l = Labels::new(vec![
            Label::new("b", "1"),
            Label::new("a", ""),
            Label::new("c", "x"),
            Label::new("b", "2"),
        ]);
        assert_eq!(
            l.as_slice(),
            &[Label::new("b", "2"), Label::new("c", "x")][..]
        );
        assert_eq!(l.get("b"), Some("2"));
        assert_eq!(l.get("a"), None);
    }

    #[test]
    fn display_escapes_like_prometheus() {
        let l = Labels::from_pairs(&[("__name__", "m"), ("a", "x\"y\\z\nw")]);
        assert_eq!(l.to_string(), r#"m{a="x\"y\\z\nw"}"#);
        assert_eq!(Labels::from_pairs(&[("a", "1")]).to_string(), r#"{a="1"}"#);
        assert_eq!(Labels::default().to_string(), "{}");
    }
}
