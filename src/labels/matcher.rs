//! Label matchers `=`, `!=`, `=~`, `!~` with Prometheus' semantics.
//!
//! A missing label has the value `""`, so a matcher that matches the empty string also selects
//! series that lack the label. Regular expressions are fully anchored and `.` matches a newline:
//! Prometheus 3 compiles `^(?s:RE)$` (RE2 syntax; the `regex` crate accepts the same language for
//! what PromQL uses). Prometheus 2.x used `^(?:RE)$`; the two differ only on values with newlines.

use regex::Regex;
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MatchType {
    Equal,
    NotEqual,
    Regexp,
    NotRegexp,
}

impl MatchType {
    pub fn as_str(self) -> &'static str {
        match self {
            MatchType::Equal => "=",
            MatchType::NotEqual => "!=",
            MatchType::Regexp => "=~",
            MatchType::NotRegexp => "!~",
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("invalid regular expression {pattern:?} for label {name:?}: {source}")]
pub struct MatcherError {
    pub name: String,
    pub pattern: String,
    #[source]
    pub source: regex::Error,
}

/// Selects series by one label.
#[derive(Clone, Debug)]
pub struct Matcher {
    pub name: String,
    pub kind: MatchType,
    pub value: String,
    re: Option<Regex>,
}

impl Matcher {
    /// Builds a matcher; a regex matcher compiles its anchored pattern here.
    ///
    /// ```
    /// use tsdb::labels::{Matcher, MatchType};
    /// let m = Matcher::new(MatchType::Regexp, "job", "api|node").unwrap();
    /// assert!(m.matches("api"));
    /// assert!(!m.matches("xapi")); // fully anchored
    /// ```
    pub fn new(
        kind: MatchType,
        name: impl Into<String>,
        value: impl Into<String>,
    ) -> Result<Matcher, MatcherError> {
        let name = name.into();
        let value = value.into();
        let re = match kind {
            MatchType::Regexp | MatchType::NotRegexp => Some(
                Regex::new(&format!("^(?s:{value})$")).map_err(|source| MatcherError {
                    name: name.clone(),
                    pattern: value.clone(),
                    source,
                })?,
            ),
            _ => None,
        };
        Ok(Matcher {
            name,
            kind,
            value,
            re,
        })
    }

    /// `name="value"`.
    pub fn equal(name: impl Into<String>, value: impl Into<String>) -> Matcher {
        Matcher {
            name: name.into(),
            kind: MatchType::Equal,
            value: value.into(),
            re: None,
        }
    }

    /// Whether a label value (`""` for a missing label) satisfies the matcher.
    pub fn matches(&self, value: &str) -> bool {
        match self.kind {
            MatchType::Equal => value == self.value,
            MatchType::NotEqual => value != self.value,
            MatchType::Regexp => self.re.as_ref().is_some_and(|r| r.is_match(value)),
            MatchType::NotRegexp => !self.re.as_ref().is_some_and(|r| r.is_match(value)),
        }
    }

    /// Whether the matcher selects series that lack the label.
    pub fn matches_empty(&self) -> bool {
        self.matches("")
    }

    /// For `=~` with a pattern that is a plain alternation of literals (`a|b|c`), the literals:
    /// the index can then look them up instead of scanning every value.
    pub fn set_matches(&self) -> Option<Vec<String>> {
        if self.kind != MatchType::Regexp {
            return None;
        }
        let mut out = Vec::new();
        for alt in self.value.split('|') {
            if alt.is_empty() || alt.chars().any(|c| "\\.+*?()[]{}^$".contains(c)) {
                return None;
            }
            out.push(alt.to_string());
        }
        Some(out)
    }
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Matcher) -> bool {
        self.name == other.name && self.kind == other.kind && self.value == other.value
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{:?}", self.name, self.kind.as_str(), self.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn semantics_match_prometheus() {
        let m = Matcher::new(MatchType::Regexp, "a", "foo.*").unwrap();
        assert!(m.matches("foobar"));
        assert!(!m.matches("xfoo"));
        assert!(!m.matches_empty());
        let m = Matcher::new(MatchType::Regexp, "a", "foo|").unwrap();
        assert!(m.matches_empty());
        let m = Matcher::new(MatchType::NotEqual, "a", "x").unwrap();
        assert!(m.matches_empty());
        let m = Matcher::new(MatchType::NotRegexp, "a", ".+").unwrap();
        assert!(m.matches_empty());
        assert!(!m.matches("v"));
        assert!(Matcher::new(MatchType::Regexp, "a", "(").is_err());
        // Prometheus 3: `.` matches a newline.
        let m = Matcher::new(MatchType::Regexp, "a", "x.y").unwrap();
        assert!(m.matches("x\ny"));
    }

    #[test]
    fn set_matches_only_for_literal_alternations() {
        let m = Matcher::new(MatchType::Regexp, "a", "x|yy|z").unwrap();
        assert_eq!(m.set_matches().unwrap(), vec!["x", "yy", "z"]);
        let m = Matcher::new(MatchType::Regexp, "a", "x|y.*").unwrap();
        assert!(m.set_matches().is_none());
    }
}
