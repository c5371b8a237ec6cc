//! Relabeling: Prometheus' `relabel_configs`, `metric_relabel_configs` and
//! `write_relabel_configs` rules (`model/relabel/relabel.go` of Prometheus 2.42 is the reference
//! for every action, default and validation message).
//!
//! A storage-independent label transformation: the scrape manager applies it to targets and to
//! scraped series, the remote writer to what it sends. It lives outside `server` so that an
//! embedding application can relabel what it appends without the HTTP stack.
//!
//! Prometheus' regular expressions are Go's RE2 syntax, anchored as `^(?:regex)$`, and its
//! replacement templates follow Go's `Regexp.Expand`. Rust's `regex` crate differs in details that
//! change what a rule matches (`\d`, `\w`, `\s`, `\b` are Unicode-aware in Rust and ASCII in Go;
//! Go has `\Q..\E` and octal escapes; `[` inside a class and `\<` are literals in Go but syntax in
//! Rust; a `{` that is not a repetition is a literal in Go), so a pattern is translated from Go's
//! syntax to an equivalent Rust one before it is compiled ([`translate_go_regex`]), and templates
//! are expanded here with Go's rules (`$1x` names the group `1x`, `$$` is a `$`, a malformed `$`
//! stays literal, an unknown group expands to nothing).

use std::fmt;

use md5::{Digest, Md5};
use regex::Regex;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::labels::{Label, Labels};

/// What a rule does (`action:` in YAML; Prometheus accepts any letter case).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Action {
    #[default]
    Replace,
    Keep,
    Drop,
    KeepEqual,
    DropEqual,
    HashMod,
    LabelMap,
    LabelDrop,
    LabelKeep,
    Lowercase,
    Uppercase,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Replace => "replace",
            Action::Keep => "keep",
            Action::Drop => "drop",
            Action::KeepEqual => "keepequal",
            Action::DropEqual => "dropequal",
            Action::HashMod => "hashmod",
            Action::LabelMap => "labelmap",
            Action::LabelDrop => "labeldrop",
            Action::LabelKeep => "labelkeep",
            Action::Lowercase => "lowercase",
            Action::Uppercase => "uppercase",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Action {
    type Err = String;
    /// Case-insensitive, as Prometheus' `Action.UnmarshalYAML`.
    fn from_str(s: &str) -> Result<Action, String> {
        Ok(match s.to_lowercase().as_str() {
            "replace" => Action::Replace,
            "keep" => Action::Keep,
            "drop" => Action::Drop,
            "keepequal" => Action::KeepEqual,
            "dropequal" => Action::DropEqual,
            "hashmod" => Action::HashMod,
            "labelmap" => Action::LabelMap,
            "labeldrop" => Action::LabelDrop,
            "labelkeep" => Action::LabelKeep,
            "lowercase" => Action::Lowercase,
            "uppercase" => Action::Uppercase,
            _ => return Err(format!("unknown relabel action {s:?}")),
        })
    }
}

impl<'de> Deserialize<'de> for Action {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Action, D::Error> {
        // Parsed inside the visitor so that a YAML decoder can give the error the value's
        // position. `action:` with no value is Go's zero value, which Prometheus rejects.
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Action;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a relabel action")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Action, E> {
                s.parse().map_err(E::custom)
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<Action, E> {
                Err(E::custom("relabel action cannot be empty"))
            }
            fn visit_none<E: serde::de::Error>(self) -> Result<Action, E> {
                self.visit_unit()
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for Action {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// One relabeling rule as written in YAML, with Prometheus' defaults (`separator: ;`,
/// `regex: (.*)`, `replacement: $1`, `action: replace`). The regex is anchored at both ends when
/// compiled, as Prometheus does.
///
/// A key given with no value (`regex:`) is Go's zero value, the empty string, not the default:
/// Prometheus' YAML decoder behaves that way and rules in the wild rely on it.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RelabelConfig {
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub source_labels: Vec<String>,
    #[serde(deserialize_with = "null_as_default")]
    pub separator: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_label: Option<String>,
    #[serde(deserialize_with = "null_as_default")]
    pub regex: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub modulus: Option<u64>,
    #[serde(deserialize_with = "null_as_default")]
    pub replacement: String,
    pub action: Action,
}

fn null_as_default<'de, D: Deserializer<'de>, T: Deserialize<'de> + Default>(
    d: D,
) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

const DEFAULT_SEPARATOR: &str = ";";
const DEFAULT_REGEX: &str = "(.*)";
const DEFAULT_REPLACEMENT: &str = "$1";

impl Default for RelabelConfig {
    fn default() -> RelabelConfig {
        RelabelConfig {
            source_labels: Vec::new(),
            separator: DEFAULT_SEPARATOR.to_string(),
            target_label: None,
            regex: DEFAULT_REGEX.to_string(),
            modulus: None,
            replacement: DEFAULT_REPLACEMENT.to_string(),
            action: Action::Replace,
        }
    }
}

/// Why a rule cannot be compiled. Messages follow Prometheus' wording so that a user comparing
/// with `promtool check config` recognizes them; each names the field at fault.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RelabelError {
    #[error("regex {regex:?}: {message}")]
    Regex { regex: String, message: String },
    #[error("relabel configuration for hashmod requires non-zero modulus")]
    ModulusRequired,
    #[error("relabel configuration for {action} action requires 'target_label' value")]
    TargetLabelRequired { action: Action },
    #[error("{target:?} is invalid 'target_label' for {action} action")]
    InvalidTargetLabel { target: String, action: Action },
    #[error("'replacement' can not be set for {action} action")]
    ReplacementNotAllowed { action: Action },
    #[error("{replacement:?} is invalid 'replacement' for {action} action")]
    InvalidReplacement { replacement: String, action: Action },
    #[error(
        "{action} action requires only 'source_labels' and `target_label`, and no other fields"
    )]
    OnlySourceAndTarget { action: Action },
    #[error("{action} action requires only 'regex', and no other fields")]
    OnlyRegex { action: Action },
    #[error("source_labels: {name:?} is not a valid label name")]
    InvalidSourceLabel { name: String },
    /// Which rule of a list (0-based) failed, from [`compile`].
    #[error("relabel rule {index}: {source}")]
    Rule {
        index: usize,
        #[source]
        source: Box<RelabelError>,
    },
}

impl RelabelError {
    /// The YAML key of the rule that the error is about, for locating it in a file.
    pub fn field(&self) -> Option<&'static str> {
        Some(match self {
            RelabelError::Regex { .. } => "regex",
            RelabelError::ModulusRequired => "modulus",
            RelabelError::TargetLabelRequired { .. } => "action",
            RelabelError::InvalidTargetLabel { .. } => "target_label",
            RelabelError::ReplacementNotAllowed { .. } => "replacement",
            RelabelError::InvalidReplacement { .. } => "replacement",
            RelabelError::OnlySourceAndTarget { .. } | RelabelError::OnlyRegex { .. } => "action",
            RelabelError::InvalidSourceLabel { .. } => "source_labels",
            RelabelError::Rule { source, .. } => return source.field(),
        })
    }

    /// The rule index carried by a [`RelabelError::Rule`].
    pub fn rule_index(&self) -> Option<usize> {
        match self {
            RelabelError::Rule { index, .. } => Some(*index),
            _ => None,
        }
    }

    /// The error without the rule index wrapper.
    pub fn inner(&self) -> &RelabelError {
        match self {
            RelabelError::Rule { source, .. } => source.inner(),
            e => e,
        }
    }
}

/// A compiled [`RelabelConfig`]: the anchored regex and the parsed templates.
#[derive(Clone, Debug)]
pub struct Rule {
    action: Action,
    source_labels: Vec<String>,
    separator: String,
    regex: Regex,
    /// Go's group names by group index (index 0, the whole match, has none).
    group_names: Vec<Option<String>>,
    /// The target label as written (Prometheus deletes this raw name when a replacement is empty).
    target_label: String,
    /// The target label's template; `None` when it has no `$` and is used as is.
    target_template: Option<Template>,
    replacement: Template,
    modulus: u64,
    config: RelabelConfig,
}

impl Rule {
    /// Compiles and validates a rule exactly as Prometheus 2.42 accepts it.
    pub fn new(cfg: &RelabelConfig) -> Result<Rule, RelabelError> {
        validate(cfg)?;
        let translated = translate_go_regex(&cfg.regex).map_err(|message| RelabelError::Regex {
            regex: cfg.regex.clone(),
            message,
        })?;
        let regex = Regex::new(&format!("^(?:{})$", translated.pattern)).map_err(|e| {
            // The crate's syntax errors draw the pattern over several lines; keep the last,
            // which says what is wrong.
            let text = e.to_string();
            let last = text.lines().last().unwrap_or("").trim();
            RelabelError::Regex {
                regex: cfg.regex.clone(),
                message: last.strip_prefix("error: ").unwrap_or(last).to_string(),
            }
        })?;
        let target_label = cfg.target_label.clone().unwrap_or_default();
        let target_template = target_label
            .contains('$')
            .then(|| Template::parse(&target_label));
        Ok(Rule {
            action: cfg.action,
            source_labels: cfg.source_labels.clone(),
            separator: cfg.separator.clone(),
            regex,
            // Index 0 is the outer `(?:...)` wrapper's match: Go names nothing there either.
            group_names: translated.group_names,
            target_label,
            target_template,
            replacement: Template::parse(&cfg.replacement),
            modulus: cfg.modulus.unwrap_or(0),
            config: cfg.clone(),
        })
    }

    pub fn action(&self) -> Action {
        self.action
    }

    /// The configuration this rule was compiled from.
    pub fn config(&self) -> &RelabelConfig {
        &self.config
    }

    /// Whether `s` matches the anchored regex.
    pub fn is_match(&self, s: &str) -> bool {
        self.regex.is_match(s)
    }

    /// Applies this rule to a sorted, empty-free label vector; false when the rule drops it.
    fn apply(&self, labels: &mut Vec<Label>, scratch: &mut String) -> bool {
        let val: &str = match self.source_labels.as_slice() {
            // The common single-source case borrows the value instead of joining.
            [] => "",
            [one] => get(labels, one).unwrap_or(""),
            many => {
                scratch.clear();
                for (i, n) in many.iter().enumerate() {
                    if i > 0 {
                        scratch.push_str(&self.separator);
                    }
                    scratch.push_str(get(labels, n).unwrap_or(""));
                }
                scratch.as_str()
            }
        };
        match self.action {
            Action::Drop => !self.regex.is_match(val),
            Action::Keep => self.regex.is_match(val),
            Action::DropEqual => get(labels, &self.target_label).unwrap_or("") != val,
            Action::KeepEqual => get(labels, &self.target_label).unwrap_or("") == val,
            Action::Replace => {
                if self.target_template.is_none() {
                    if let Some(lit) = self.replacement.literal() {
                        // No group referenced: a match test, and no capture positions to
                        // allocate (`replacement: static`, the common constant label).
                        if !self.regex.is_match(val) {
                            return true;
                        }
                        if lit.is_empty() {
                            del(labels, &self.target_label);
                        } else {
                            set(labels, &self.target_label, lit.to_string());
                        }
                        return true;
                    }
                }
                let mut locs = self.regex.capture_locations();
                if self.regex.captures_read(&mut locs, val).is_none() {
                    return true;
                }
                let target = self
                    .target_template
                    .as_ref()
                    .map(|t| t.expand(val, &locs, &self.group_names));
                if let Some(t) = &target {
                    if !is_valid_label_name(t) {
                        del(labels, &self.target_label);
                        return true;
                    }
                }
                let res = self.replacement.expand(val, &locs, &self.group_names);
                if res.is_empty() {
                    del(labels, &self.target_label);
                    return true;
                }
                match target {
                    Some(name) => set(labels, &name, res),
                    None => set(labels, &self.target_label, res),
                }
                true
            }
            Action::Lowercase => {
                let v = go_lowercase(val);
                set(labels, &self.target_label, v);
                true
            }
            Action::Uppercase => {
                let v = go_uppercase(val);
                set(labels, &self.target_label, v);
                true
            }
            Action::HashMod => {
                let digest = Md5::digest(val.as_bytes());
                // Prometheus folds the 16 bytes with shifts that overflow to zero for the first
                // eight (Go's shift semantics), so only the last eight count, big-endian.
                let mut tail = [0u8; 8];
                tail.copy_from_slice(&digest[8..16]);
                let v = u64::from_be_bytes(tail) % self.modulus.max(1);
                set(labels, &self.target_label, v.to_string());
                true
            }
            Action::LabelMap => {
                // Prometheus reads the input set while writing a builder: collect first.
                let mut locs = self.regex.capture_locations();
                let mut adds: Vec<(String, String)> = Vec::new();
                for l in labels.iter() {
                    if self.regex.is_match(&l.name)
                        && self.regex.captures_read(&mut locs, &l.name).is_some()
                    {
                        let name = self.replacement.expand(&l.name, &locs, &self.group_names);
                        adds.push((name, l.value.clone()));
                    }
                }
                for (n, v) in adds {
                    set(labels, &n, v);
                }
                true
            }
            Action::LabelDrop => {
                labels.retain(|l| !self.regex.is_match(&l.name));
                true
            }
            Action::LabelKeep => {
                labels.retain(|l| self.regex.is_match(&l.name));
                true
            }
        }
    }
}

/// Prometheus' `Config.UnmarshalYAML` checks, in its order.
fn validate(cfg: &RelabelConfig) -> Result<(), RelabelError> {
    let a = cfg.action;
    let target = cfg.target_label.as_deref().unwrap_or("");
    for n in &cfg.source_labels {
        if !is_valid_label_name(n) {
            return Err(RelabelError::InvalidSourceLabel { name: n.clone() });
        }
    }
    let modulus = cfg.modulus.unwrap_or(0);
    if modulus == 0 && a == Action::HashMod {
        return Err(RelabelError::ModulusRequired);
    }
    use Action::*;
    if matches!(
        a,
        Replace | HashMod | Lowercase | Uppercase | KeepEqual | DropEqual
    ) && target.is_empty()
    {
        return Err(RelabelError::TargetLabelRequired { action: a });
    }
    if matches!(a, Replace | Lowercase | Uppercase | KeepEqual | DropEqual)
        && !is_valid_target_template(target)
    {
        return Err(RelabelError::InvalidTargetLabel {
            target: target.to_string(),
            action: a,
        });
    }
    if matches!(a, Lowercase | Uppercase | KeepEqual | DropEqual)
        && cfg.replacement != DEFAULT_REPLACEMENT
    {
        return Err(RelabelError::ReplacementNotAllowed { action: a });
    }
    if a == LabelMap && !is_valid_target_template(&cfg.replacement) {
        return Err(RelabelError::InvalidReplacement {
            replacement: cfg.replacement.clone(),
            action: a,
        });
    }
    if a == HashMod && !is_valid_label_name(target) {
        return Err(RelabelError::InvalidTargetLabel {
            target: target.to_string(),
            action: a,
        });
    }
    if matches!(a, DropEqual | KeepEqual)
        && (cfg.regex != DEFAULT_REGEX
            || modulus != 0
            || cfg.separator != DEFAULT_SEPARATOR
            || cfg.replacement != DEFAULT_REPLACEMENT)
    {
        return Err(RelabelError::OnlySourceAndTarget { action: a });
    }
    if matches!(a, LabelDrop | LabelKeep)
        && (!cfg.source_labels.is_empty()
            || !target.is_empty()
            || modulus != 0
            || cfg.separator != DEFAULT_SEPARATOR
            || cfg.replacement != DEFAULT_REPLACEMENT)
    {
        return Err(RelabelError::OnlyRegex { action: a });
    }
    Ok(())
}

/// Compiles a list of rules; the error says which rule (0-based) is wrong.
pub fn compile(cfgs: &[RelabelConfig]) -> Result<Vec<Rule>, RelabelError> {
    cfgs.iter()
        .enumerate()
        .map(|(index, c)| {
            Rule::new(c).map_err(|e| RelabelError::Rule {
                index,
                source: Box::new(e),
            })
        })
        .collect()
}

/// Applies rules in order to a label set; None when a rule drops it. Labels whose value becomes
/// empty are removed.
pub fn process(rules: &[Rule], labels: &Labels) -> Option<Labels> {
    let mut v = labels.as_slice().to_vec();
    if process_vec(rules, &mut v) {
        Some(Labels::from_sorted_unchecked(v))
    } else {
        None
    }
}

/// The same on a scratch vector for hot paths: on return sorted by name, no empty values; false
/// when dropped. The input may be in any order; of duplicate names the last wins.
pub fn process_vec(rules: &[Rule], labels: &mut Vec<Label>) -> bool {
    normalize(labels);
    let mut scratch = String::new();
    for r in rules {
        if !r.apply(labels, &mut scratch) {
            return false;
        }
    }
    true
}

fn normalize(labels: &mut Vec<Label>) {
    labels.retain(|l| !l.value.is_empty());
    if labels.windows(2).all(|w| w[0].name < w[1].name) {
        return;
    }
    labels.sort_by(|a, b| a.name.cmp(&b.name));
    // Keep the last of equal names, as `Labels::new`.
    let mut out: Vec<Label> = Vec::with_capacity(labels.len());
    for l in labels.drain(..) {
        match out.last_mut() {
            Some(last) if last.name == l.name => *last = l,
            _ => out.push(l),
        }
    }
    *labels = out;
}

fn get<'a>(labels: &'a [Label], name: &str) -> Option<&'a str> {
    labels
        .binary_search_by(|l| l.name.as_str().cmp(name))
        .ok()
        .and_then(|i| labels.get(i))
        .map(|l| l.value.as_str())
}

/// Prometheus' `labels.Builder.Set`: an empty value deletes.
fn set(labels: &mut Vec<Label>, name: &str, value: String) {
    if value.is_empty() {
        del(labels, name);
        return;
    }
    match labels.binary_search_by(|l| l.name.as_str().cmp(name)) {
        Ok(i) => {
            if let Some(l) = labels.get_mut(i) {
                l.value = value;
            }
        }
        Err(i) => labels.insert(
            i,
            Label {
                name: name.to_string(),
                value,
            },
        ),
    }
}

fn del(labels: &mut Vec<Label>, name: &str) {
    if let Ok(i) = labels.binary_search_by(|l| l.name.as_str().cmp(name)) {
        labels.remove(i);
    }
}

/// `model.LabelName.IsValid` of Prometheus 2.42: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn is_valid_label_name(s: &str) -> bool {
    let b = s.as_bytes();
    match b.first() {
        Some(c) if c.is_ascii_alphabetic() || *c == b'_' => {}
        _ => return false,
    }
    b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

/// Prometheus' `relabelTarget` pattern, `^(?:(?:[a-zA-Z_]|\$(?:\{\w+\}|\w+))+\w*)+$`: a label name
/// in which `$name` and `${name}` references may stand for letters. Equivalently: the string is
/// non-empty, starts with a letter, `_` or a reference, and every `$` begins a well-formed
/// reference (`\w` is ASCII in Go).
fn is_valid_target_template(s: &str) -> bool {
    let b = s.as_bytes();
    if b.is_empty() {
        return false;
    }
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let mut i = 0;
    let mut first = true;
    while i < b.len() {
        let c = b[i];
        if c == b'$' {
            if b.get(i + 1) == Some(&b'{') {
                let start = i + 2;
                let mut j = start;
                while j < b.len() && word(b[j]) {
                    j += 1;
                }
                if j == start || b.get(j) != Some(&b'}') {
                    return false;
                }
                i = j + 1;
            } else {
                let start = i + 1;
                let mut j = start;
                while j < b.len() && word(b[j]) {
                    j += 1;
                }
                if j == start {
                    return false;
                }
                i = j;
            }
        } else if word(c) {
            if first && c.is_ascii_digit() {
                return false;
            }
            i += 1;
        } else {
            return false;
        }
        first = false;
    }
    true
}

/// A replacement or target template pre-split into literal text and group references.
#[derive(Clone, Debug, PartialEq)]
struct Template {
    pieces: Vec<Piece>,
}

#[derive(Clone, Debug, PartialEq)]
enum Piece {
    Lit(String),
    Num(usize),
    Name(String),
}

impl Template {
    /// Parses with Go's `Regexp.Expand` rules: `$$` is `$`; `$name` takes the longest run of
    /// letters, digits and `_` (Unicode, as Go); `${name}` is bracketed; a name of only digits
    /// without a leading zero (below 1e8) is a group number; anything else after `$` leaves the
    /// `$` as text.
    fn parse(t: &str) -> Template {
        let mut pieces = Vec::new();
        let mut lit = String::new();
        let mut rest = t;
        while let Some(pos) = rest.find('$') {
            lit.push_str(&rest[..pos]);
            rest = &rest[pos + 1..];
            if let Some(r) = rest.strip_prefix('$') {
                lit.push('$');
                rest = r;
                continue;
            }
            match extract_name(rest) {
                None => lit.push('$'),
                Some((name, after)) => {
                    if !lit.is_empty() {
                        pieces.push(Piece::Lit(std::mem::take(&mut lit)));
                    }
                    pieces.push(match group_number(name) {
                        Some(n) => Piece::Num(n),
                        None => Piece::Name(name.to_string()),
                    });
                    rest = after;
                }
            }
        }
        lit.push_str(rest);
        if !lit.is_empty() {
            pieces.push(Piece::Lit(lit));
        }
        Template { pieces }
    }

    /// The text of a template that references no group.
    fn literal(&self) -> Option<&str> {
        match self.pieces.as_slice() {
            [] => Some(""),
            [Piece::Lit(s)] => Some(s),
            _ => None,
        }
    }

    fn expand(
        &self,
        src: &str,
        locs: &regex::CaptureLocations,
        names: &[Option<String>],
    ) -> String {
        let mut out = String::new();
        for p in &self.pieces {
            match p {
                Piece::Lit(s) => out.push_str(s),
                Piece::Num(n) => {
                    if let Some((a, b)) = locs.get(*n) {
                        out.push_str(src.get(a..b).unwrap_or(""));
                    }
                }
                Piece::Name(name) => {
                    // Go takes the first group of that name that took part in the match.
                    for (i, n) in names.iter().enumerate() {
                        if n.as_deref() == Some(name.as_str()) {
                            if let Some((a, b)) = locs.get(i) {
                                out.push_str(src.get(a..b).unwrap_or(""));
                                break;
                            }
                        }
                    }
                }
            }
        }
        out
    }
}

/// Go's `extract`: the name after a `$` and the rest of the template, or None when malformed.
fn extract_name(s: &str) -> Option<(&str, &str)> {
    let (brace, body) = match s.strip_prefix('{') {
        Some(b) => (true, b),
        None => (false, s),
    };
    let end = body
        .char_indices()
        .find(|(_, c)| !(c.is_alphabetic() || c.is_numeric() || *c == '_'))
        .map(|(i, _)| i)
        .unwrap_or(body.len());
    if end == 0 {
        return None;
    }
    let name = &body[..end];
    if brace {
        let after = body[end..].strip_prefix('}')?;
        Some((name, after))
    } else {
        Some((name, &body[end..]))
    }
}

fn group_number(name: &str) -> Option<usize> {
    if !name.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    if name.len() > 1 && name.starts_with('0') {
        return None;
    }
    let n: usize = name.parse().ok()?;
    (n < 100_000_000).then_some(n)
}

/// Go's `strings.ToLower`: one rune to one rune (simple case mapping).
fn go_lowercase(s: &str) -> String {
    if s.is_ascii() {
        return s.to_ascii_lowercase();
    }
    s.chars()
        .map(|c| {
            let mut m = c.to_lowercase();
            match (m.next(), m.next()) {
                (Some(l), None) => l,
                // Only U+0130 lowercases to two runes in Rust; its simple mapping is `i`.
                (Some(l), Some(_)) if c == '\u{130}' => l,
                _ => c,
            }
        })
        .collect()
}

/// Go's `strings.ToUpper`: one rune to one rune; runes whose only upper case is several runes
/// (`ß`) stay as they are, as in Go.
fn go_uppercase(s: &str) -> String {
    if s.is_ascii() {
        return s.to_ascii_uppercase();
    }
    s.chars()
        .map(|c| {
            let mut m = c.to_uppercase();
            match (m.next(), m.next()) {
                (Some(u), None) => u,
                _ => c,
            }
        })
        .collect()
}

/// A Go (RE2) pattern rewritten in Rust `regex` syntax, with Go's group names by group index.
#[derive(Clone, Debug, PartialEq)]
pub struct TranslatedRegex {
    pub pattern: String,
    /// One entry per group, index 0 for the whole match (of the wrapper Prometheus adds).
    pub group_names: Vec<Option<String>>,
}

const ASCII_DIGIT: &str = "0-9";
const ASCII_WORD: &str = "0-9A-Za-z_";
const ASCII_SPACE: &str = r"\t\n\x0C\r ";
const NOT_DIGIT: &str = r"\x00-/:-\x{10FFFF}";
const NOT_WORD: &str = r"\x00-/:-@\[-\^`\{-\x{10FFFF}";
const NOT_SPACE: &str = r"\x00-\x08\x0B\x0E-\x1F!-\x{10FFFF}";
/// Go's limit on `{n,m}` counts.
const MAX_REPEAT: u32 = 1000;

/// Translates a Go regular expression into Rust `regex` syntax with the same meaning, rejecting
/// what Go rejects (within the subset that matters to relabeling). Named groups become plain
/// groups: names are kept in [`TranslatedRegex::group_names`] for template expansion, because Go
/// accepts names Rust does not (`(?P<1a>x)`) and resolves them with its own rules.
pub fn translate_go_regex(pat: &str) -> Result<TranslatedRegex, String> {
    let chars: Vec<char> = pat.chars().collect();
    let mut out = String::with_capacity(pat.len() + 8);
    // Group 0 is the anchoring wrapper's whole match.
    let mut names: Vec<Option<String>> = vec![None];
    let mut i = 0;
    // Whether the previous item was a repetition operator (Go rejects `a**`, `a{2}{3}`).
    let mut last_repeat = false;
    // Whether there is something to repeat (Go: "missing argument to repetition operator").
    let mut have_atom = false;
    // Largest product of nested counted repetitions within each open group, and within the
    // last atom (a closed group's own largest product).
    let mut weights: Vec<u32> = vec![1];
    let mut last_weight: u32 = 1;
    // A flags-only group `(?i)` is not an atom in Go: a repetition after it applies to the atom
    // before. Rust rejects that, so the flags are written after such a repetition.
    let mut pending_flags = String::new();
    while i < chars.len() {
        let c = chars[i];
        let is_repeat =
            matches!(c, '*' | '+' | '?') || (c == '{' && parse_repeat(&chars, i).is_some());
        if !is_repeat && !pending_flags.is_empty() {
            out.push_str(&pending_flags);
            pending_flags.clear();
        }
        let prev_weight = last_weight;
        last_weight = 1;
        match c {
            '\\' => {
                i = escape_outside(&chars, i, &mut out)?;
                last_repeat = false;
                have_atom = true;
            }
            '[' => {
                i = class(&chars, i, &mut out)?;
                last_repeat = false;
                have_atom = true;
            }
            '(' => {
                if chars.get(i + 1) == Some(&'?') {
                    if chars.get(i + 2) == Some(&'P') && chars.get(i + 3) == Some(&'<') {
                        let start = i + 4;
                        let end = (start..chars.len())
                            .find(|&j| chars[j] == '>')
                            .ok_or_else(|| "invalid named capture".to_string())?;
                        let name: String = chars[start..end].iter().collect();
                        if name.is_empty()
                            || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                        {
                            return Err(format!("invalid named capture: `(?P<{name}>`"));
                        }
                        names.push(Some(name));
                        out.push('(');
                        weights.push(1);
                        i = end + 1;
                        have_atom = false;
                    } else {
                        // Flags: only i, m, s, U and one `-`, ended by `)` or `:`.
                        let mut j = i + 2;
                        let mut flags = String::new();
                        let mut neg = false;
                        let mut saw_flag = false;
                        loop {
                            match chars.get(j) {
                                Some(&f @ ('i' | 'm' | 's' | 'U')) => {
                                    flags.push(f);
                                    saw_flag = true;
                                }
                                Some('-') if !neg => {
                                    flags.push('-');
                                    neg = true;
                                    saw_flag = false;
                                }
                                Some(&end @ (':' | ')')) => {
                                    if neg && !saw_flag {
                                        let shown: String = chars[i..=j].iter().collect();
                                        return Err(format!(
                                            "invalid or unsupported Perl syntax: `{shown}`"
                                        ));
                                    }
                                    if flags.is_empty() {
                                        if end == ':' {
                                            out.push_str("(?:");
                                            weights.push(1);
                                            have_atom = false;
                                        } else {
                                            last_weight = prev_weight;
                                        }
                                    } else if end == ':' {
                                        out.push_str("(?");
                                        out.push_str(&flags);
                                        out.push(':');
                                        weights.push(1);
                                        have_atom = false;
                                    } else {
                                        pending_flags.push_str("(?");
                                        pending_flags.push_str(&flags);
                                        pending_flags.push(')');
                                        last_weight = prev_weight;
                                    }
                                    break;
                                }
                                _ => {
                                    let shown: String =
                                        chars[i..(j + 1).min(chars.len())].iter().collect();
                                    return Err(format!(
                                        "invalid or unsupported Perl syntax: `{shown}`"
                                    ));
                                }
                            }
                            j += 1;
                        }
                        i = j + 1;
                    }
                } else {
                    names.push(None);
                    out.push('(');
                    weights.push(1);
                    i += 1;
                    have_atom = false;
                }
                last_repeat = false;
            }
            ')' => {
                if weights.len() <= 1 {
                    return Err(format!("unexpected ): `{pat}`"));
                }
                out.push(')');
                last_weight = weights.pop().unwrap_or(1);
                if let Some(f) = weights.last_mut() {
                    *f = (*f).max(last_weight);
                }
                i += 1;
                last_repeat = false;
                have_atom = true;
            }
            '|' => {
                out.push('|');
                i += 1;
                last_repeat = false;
                have_atom = false;
            }
            '*' | '+' | '?' => {
                if last_repeat {
                    let shown: String = chars[i.saturating_sub(1)..=i].iter().collect();
                    return Err(format!("invalid nested repetition operator: `{shown}`"));
                }
                if !have_atom {
                    return Err(format!("missing argument to repetition operator: `{c}`"));
                }
                out.push(c);
                i += 1;
                if chars.get(i) == Some(&'?') {
                    out.push('?');
                    i += 1;
                }
                last_weight = prev_weight;
                last_repeat = true;
            }
            '{' => match parse_repeat(&chars, i) {
                Some((min, max, end)) => {
                    let shown: String = chars[i..end].iter().collect();
                    if last_repeat {
                        return Err(format!("invalid nested repetition operator: `{shown}`"));
                    }
                    if !have_atom {
                        return Err(format!(
                            "missing argument to repetition operator: `{shown}`"
                        ));
                    }
                    if min > MAX_REPEAT || max.is_some_and(|m| m > MAX_REPEAT || m < min) {
                        return Err(format!("invalid repeat count: `{shown}`"));
                    }
                    // Go also bounds nested counts: their product along any path is at most
                    // 1000 (`(a{2}){501}` is an error), a count of 0 ending the path.
                    let m = max.unwrap_or(min);
                    let w = if m == 0 {
                        1
                    } else {
                        m.saturating_mul(prev_weight)
                    };
                    if (min >= 2 || max.is_some_and(|m| m >= 2)) && w > MAX_REPEAT {
                        return Err(format!("invalid repeat count: `{shown}`"));
                    }
                    last_weight = w;
                    if let Some(f) = weights.last_mut() {
                        *f = (*f).max(w);
                    }
                    out.push_str(&shown);
                    i = end;
                    if chars.get(i) == Some(&'?') {
                        out.push('?');
                        i += 1;
                    }
                    last_repeat = true;
                }
                None => {
                    out.push_str(r"\{");
                    i += 1;
                    last_repeat = false;
                    have_atom = true;
                }
            },
            '}' | ']' => {
                out.push('\\');
                out.push(c);
                i += 1;
                last_repeat = false;
                have_atom = true;
            }
            '^' | '$' => {
                out.push(c);
                i += 1;
                last_repeat = false;
                have_atom = true;
            }
            c => {
                out.push(c);
                i += 1;
                last_repeat = false;
                have_atom = true;
            }
        }
    }
    if weights.len() > 1 {
        return Err(format!("missing closing ): `{pat}`"));
    }
    out.push_str(&pending_flags);
    Ok(TranslatedRegex {
        pattern: out,
        group_names: names,
    })
}

/// Writes `c` so that Rust reads it as that literal character outside a class.
fn push_literal(out: &mut String, c: char) {
    let mut b = [0u8; 4];
    out.push_str(&regex::escape(c.encode_utf8(&mut b)));
}

/// `{n}`, `{n,}`, `{n,m}` at `i`: (min, max, index after `}`), or None when Go reads a literal `{`.
fn parse_repeat(chars: &[char], i: usize) -> Option<(u32, Option<u32>, usize)> {
    let mut j = i + 1;
    let num = |j: &mut usize| -> Option<u32> {
        let start = *j;
        while *j < chars.len() && chars[*j].is_ascii_digit() {
            *j += 1;
        }
        if *j == start {
            return None;
        }
        let s: String = chars[start..*j].iter().collect();
        // Go saturates huge counts into an error; any count this long is over the limit.
        Some(s.parse::<u32>().unwrap_or(u32::MAX))
    };
    let min = num(&mut j)?;
    let max = if chars.get(j) == Some(&',') {
        j += 1;
        if chars.get(j) == Some(&'}') {
            None
        } else {
            Some(num(&mut j)?)
        }
    } else {
        Some(min)
    };
    if chars.get(j) != Some(&'}') {
        return None;
    }
    Some((min, max, j + 1))
}

/// An escape outside a class at `chars[i] == '\\'`; returns the index after it.
fn escape_outside(chars: &[char], i: usize, out: &mut String) -> Result<usize, String> {
    let Some(&c) = chars.get(i + 1) else {
        return Err("trailing backslash at end of expression".to_string());
    };
    match c {
        'd' => out.push_str("[0-9]"),
        'D' => out.push_str("[^0-9]"),
        'w' => out.push_str("[0-9A-Za-z_]"),
        'W' => out.push_str("[^0-9A-Za-z_]"),
        's' => out.push_str(r"[\t\n\x0C\r ]"),
        'S' => out.push_str(r"[^\t\n\x0C\r ]"),
        'b' => out.push_str(r"(?-u:\b)"),
        'B' => out.push_str(r"(?-u:\B)"),
        'A' => out.push_str(r"\A"),
        'z' => out.push_str(r"\z"),
        'Q' => {
            let mut j = i + 2;
            while j < chars.len() {
                if chars[j] == '\\' && chars.get(j + 1) == Some(&'E') {
                    return Ok(j + 2);
                }
                push_literal(out, chars[j]);
                j += 1;
            }
            // Unterminated, `\Q` would swallow the `)$` of Prometheus' anchoring wrapper.
            return Err("missing closing ): unterminated \\Q".to_string());
        }
        _ => return escape_common(chars, i, out, false),
    }
    Ok(i + 2)
}

/// Escapes valid both inside and outside a class: `\pX`, `\x..`, octal, control letters and
/// escaped punctuation.
fn escape_common(
    chars: &[char],
    i: usize,
    out: &mut String,
    in_class: bool,
) -> Result<usize, String> {
    let Some(&c) = chars.get(i + 1) else {
        return Err("trailing backslash at end of expression".to_string());
    };
    match c {
        'p' | 'P' => {
            // `\pL` or `\p{Name}`: same names in both engines for the classes Go knows.
            if chars.get(i + 2) == Some(&'{') {
                let end = (i + 3..chars.len())
                    .find(|&j| chars[j] == '}')
                    .ok_or_else(|| "invalid character class range".to_string())?;
                let name: String = chars[i + 3..end].iter().collect();
                // Go negates with `\p{^Name}`, which Rust spells `\P{Name}`.
                let (neg, name) = match name.strip_prefix('^') {
                    Some(n) => (c == 'p', n.to_string()),
                    None => (c == 'P', name),
                };
                out.push_str(if neg { "\\P{" } else { "\\p{" });
                out.push_str(&name);
                out.push('}');
                Ok(end + 1)
            } else {
                let Some(&n) = chars.get(i + 2) else {
                    return Err("invalid character class range".to_string());
                };
                out.push('\\');
                out.push(c);
                out.push(n);
                Ok(i + 3)
            }
        }
        'x' => {
            if chars.get(i + 2) == Some(&'{') {
                let end = (i + 3..chars.len())
                    .find(|&j| chars[j] == '}')
                    .ok_or_else(|| "invalid escape sequence: `\\x{`".to_string())?;
                let hex: String = chars[i + 3..end].iter().collect();
                let v = u32::from_str_radix(&hex, 16)
                    .ok()
                    .filter(|v| *v <= 0x10FFFF && !hex.is_empty())
                    .ok_or_else(|| format!("invalid escape sequence: `\\x{{{hex}}}`"))?;
                out.push_str(&format!(r"\x{{{v:X}}}"));
                Ok(end + 1)
            } else {
                let hex: String = chars.iter().skip(i + 2).take(2).collect();
                if hex.len() != 2 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                    return Err(format!("invalid escape sequence: `\\x{hex}`"));
                }
                out.push_str(&format!(r"\x{hex}"));
                Ok(i + 4)
            }
        }
        '0'..='7' => {
            // Go: `\1`-`\7` alone would be a backreference (unsupported); with more octal
            // digits, or starting with 0, it is an octal code of up to three digits.
            let next_octal = chars.get(i + 2).is_some_and(|d| ('0'..='7').contains(d));
            if c != '0' && !next_octal {
                return Err(format!("invalid escape sequence: `\\{c}`"));
            }
            let mut j = i + 1;
            let mut v = 0u32;
            while j < chars.len() && j < i + 4 && ('0'..='7').contains(&chars[j]) {
                v = v * 8 + (chars[j] as u32 - '0' as u32);
                j += 1;
            }
            out.push_str(&format!(r"\x{{{v:X}}}"));
            Ok(j)
        }
        'a' => {
            out.push_str(r"\x07");
            Ok(i + 2)
        }
        'f' => {
            out.push_str(r"\x0C");
            Ok(i + 2)
        }
        'n' | 'r' | 't' => {
            out.push('\\');
            out.push(c);
            Ok(i + 2)
        }
        'v' => {
            out.push_str(r"\x0B");
            Ok(i + 2)
        }
        c if c.is_ascii() && !c.is_ascii_alphanumeric() => {
            // Go: an escaped ASCII non-word character is always itself.
            if in_class {
                push_class_char(out, c);
            } else {
                push_literal(out, c);
            }
            Ok(i + 2)
        }
        c => Err(format!("invalid escape sequence: `\\{c}`")),
    }
}

/// A bracket class at `chars[i] == '['`; returns the index after its `]`.
fn class(chars: &[char], i: usize, out: &mut String) -> Result<usize, String> {
    let mut j = i + 1;
    out.push('[');
    if chars.get(j) == Some(&'^') {
        out.push('^');
        j += 1;
    }
    let mut first = true;
    loop {
        let Some(&c) = chars.get(j) else {
            let shown: String = chars[i..].iter().collect();
            return Err(format!("missing closing ]: `{shown}`"));
        };
        if c == ']' && !first {
            out.push(']');
            return Ok(j + 1);
        }
        first = false;
        // POSIX class `[:alpha:]` (same names and meaning in both engines).
        if c == '[' && chars.get(j + 1) == Some(&':') {
            if let Some(end) = (j + 2..chars.len().saturating_sub(1))
                .find(|&k| chars[k] == ':' && chars[k + 1] == ']')
            {
                let name: String = chars[j + 2..end].iter().collect();
                let bare = name.strip_prefix('^').unwrap_or(&name);
                const POSIX: [&str; 14] = [
                    "alnum", "alpha", "ascii", "blank", "cntrl", "digit", "graph", "lower",
                    "print", "punct", "space", "upper", "word", "xdigit",
                ];
                if !POSIX.contains(&bare) {
                    return Err(format!("invalid character class range: `[:{name}:]`"));
                }
                out.push_str(&format!("[:{name}:]"));
                j = end + 2;
                continue;
            }
        }
        // Perl classes inside a class: ASCII ranges, as Go means them.
        if c == '\\' {
            let perl = match chars.get(j + 1) {
                Some('d') => Some(ASCII_DIGIT),
                Some('D') => Some(NOT_DIGIT),
                Some('w') => Some(ASCII_WORD),
                Some('W') => Some(NOT_WORD),
                Some('s') => Some(ASCII_SPACE),
                Some('S') => Some(NOT_SPACE),
                Some('p' | 'P') => {
                    j = escape_common(chars, j, out, true)?;
                    continue;
                }
                _ => None,
            };
            if let Some(p) = perl {
                out.push_str(p);
                j += 2;
                continue;
            }
        }
        // A single character, possibly the start of a range.
        let (lo, after) = class_char(chars, j)?;
        if chars.get(after) == Some(&'-') && chars.get(after + 1).is_some_and(|c| *c != ']') {
            let (hi, after_hi) = class_char(chars, after + 1)?;
            if hi < lo {
                let shown: String = chars[j..after_hi].iter().collect();
                return Err(format!("invalid character class range: `{shown}`"));
            }
            push_class_char(out, lo);
            out.push('-');
            push_class_char(out, hi);
            j = after_hi;
        } else {
            push_class_char(out, lo);
            j = after;
        }
    }
}

/// One character of a class (literal or escaped) at `j`.
fn class_char(chars: &[char], j: usize) -> Result<(char, usize), String> {
    let Some(&c) = chars.get(j) else {
        return Err("missing closing ]".to_string());
    };
    if c != '\\' {
        return Ok((c, j + 1));
    }
    let mut tmp = String::new();
    let end = escape_common(chars, j, &mut tmp, true)?;
    let value = match chars.get(j + 1) {
        Some('x') | Some('0'..='7') => {
            // escape_common normalized to `\x{HEX}` or `\xHH`.
            let hex = tmp
                .trim_start_matches("\\x")
                .trim_start_matches('{')
                .trim_end_matches('}');
            u32::from_str_radix(hex, 16).ok().and_then(char::from_u32)
        }
        Some('a') => Some('\x07'),
        Some('f') => Some('\x0C'),
        Some('n') => Some('\n'),
        Some('r') => Some('\r'),
        Some('t') => Some('\t'),
        Some('v') => Some('\x0B'),
        Some('p' | 'P') => None,
        Some(&p) => Some(p),
        None => None,
    };
    let v = value.ok_or_else(|| "invalid character class range".to_string())?;
    Ok((v, end))
}

/// Writes one class member so that Rust reads it as that literal character.
fn push_class_char(out: &mut String, c: char) {
    if r"\.+*?()|[]{}^$#&-~".contains(c) {
        out.push('\\');
        out.push(c);
    } else if c.is_control() {
        out.push_str(&format!(r"\x{{{:X}}}", c as u32));
    } else {
        out.push(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(
        source: &[&str],
        regex: &str,
        target: &str,
        replacement: &str,
        action: Action,
    ) -> RelabelConfig {
        RelabelConfig {
            source_labels: source.iter().map(|s| s.to_string()).collect(),
            target_label: (!target.is_empty()).then(|| target.to_string()),
            regex: if regex.is_empty() {
                DEFAULT_REGEX
            } else {
                regex
            }
            .to_string(),
            replacement: if replacement.is_empty() {
                DEFAULT_REPLACEMENT
            } else {
                replacement
            }
            .to_string(),
            action,
            ..RelabelConfig::default()
        }
    }

    fn run(input: &[(&str, &str)], cfgs: &[RelabelConfig]) -> Option<Labels> {
        let rules = compile(cfgs).unwrap();
        process(&rules, &Labels::from_pairs(input))
    }

    fn l(pairs: &[(&str, &str)]) -> Option<Labels> {
        Some(Labels::from_pairs(pairs))
    }

    // The cases of Prometheus 2.42's TestRelabel, in its order.
    #[test]
    fn replace_with_template() {
        let c = cfg(&["a"], "f(.*)", "d", "ch${1}-ch${1}", Action::Replace);
        assert_eq!(
            run(&[("a", "foo"), ("b", "bar"), ("c", "baz")], &[c]),
            l(&[("a", "foo"), ("b", "bar"), ("c", "baz"), ("d", "choo-choo")])
        );
    }

    #[test]
    fn replace_chained_with_separator() {
        let c1 = cfg(
            &["a", "b"],
            "f(.*);(.*)r",
            "a",
            "b${1}${2}m",
            Action::Replace,
        );
        let c2 = cfg(
            &["c", "a"],
            "(b).*b(.*)ba(.*)",
            "d",
            "$1$2$2$3",
            Action::Replace,
        );
        assert_eq!(
            run(&[("a", "foo"), ("b", "bar"), ("c", "baz")], &[c1, c2]),
            l(&[("a", "boobam"), ("b", "bar"), ("c", "baz"), ("d", "boooom")])
        );
    }

    #[test]
    fn drop_stops_processing() {
        let c1 = cfg(&["a"], ".*o.*", "", "", Action::Drop);
        let c2 = cfg(&["a"], "f(.*)", "d", "ch$1-ch$1", Action::Replace);
        assert_eq!(run(&[("a", "foo")], &[c1.clone(), c2]), None);
        assert_eq!(run(&[("a", "foo"), ("b", "bar")], &[c1]), None);
    }

    #[test]
    fn replace_inner_group() {
        let c = cfg(&["a"], ".*(b).*", "d", "$1", Action::Replace);
        assert_eq!(run(&[("a", "abc")], &[c]), l(&[("a", "abc"), ("d", "b")]));
    }

    #[test]
    fn drop_needs_full_match() {
        let c = cfg(&["a"], "no-match", "", "", Action::Drop);
        assert_eq!(run(&[("a", "foo")], &[c]), l(&[("a", "foo")]));
        // Anchored: `f|o` matches neither all of "foo" nor any alternative.
        let c = cfg(&["a"], "f|o", "", "", Action::Drop);
        assert_eq!(run(&[("a", "foo")], &[c]), l(&[("a", "foo")]));
    }

    #[test]
    fn keep() {
        let c = cfg(&["a"], "no-match", "", "", Action::Keep);
        assert_eq!(run(&[("a", "foo")], &[c]), None);
        let c = cfg(&["a"], "f.*", "", "", Action::Keep);
        assert_eq!(run(&[("a", "foo")], &[c]), l(&[("a", "foo")]));
    }

    #[test]
    fn replace_without_match_changes_nothing() {
        let c = cfg(&["a"], "f", "b", "bar", Action::Replace);
        assert_eq!(run(&[("a", "boo")], &[c]), l(&[("a", "boo")]));
    }

    #[test]
    fn hashmod_matches_prometheus() {
        let mut c = cfg(&["c"], "", "d", "", Action::HashMod);
        c.modulus = Some(1000);
        assert_eq!(
            run(&[("a", "foo"), ("b", "bar"), ("c", "baz")], &[c]),
            l(&[("a", "foo"), ("b", "bar"), ("c", "baz"), ("d", "976")])
        );
        let mut c = cfg(&["a"], "", "b", "", Action::HashMod);
        c.modulus = Some(1000);
        assert_eq!(
            run(&[("a", "foo\nbar")], &[c]),
            l(&[("a", "foo\nbar"), ("b", "734")])
        );
    }

    #[test]
    fn labelmap() {
        let c = cfg(&[], "(b.*)", "", "bar_${1}", Action::LabelMap);
        assert_eq!(
            run(&[("a", "foo"), ("b1", "bar"), ("b2", "baz")], &[c]),
            l(&[
                ("a", "foo"),
                ("b1", "bar"),
                ("b2", "baz"),
                ("bar_b1", "bar"),
                ("bar_b2", "baz")
            ])
        );
        let c = cfg(&[], "__meta_(my.*)", "", "${1}", Action::LabelMap);
        assert_eq!(
            run(
                &[
                    ("a", "foo"),
                    ("__meta_my_bar", "aaa"),
                    ("__meta_my_baz", "bbb"),
                    ("__meta_other", "ccc")
                ],
                &[c]
            ),
            l(&[
                ("a", "foo"),
                ("__meta_my_bar", "aaa"),
                ("__meta_my_baz", "bbb"),
                ("__meta_other", "ccc"),
                ("my_bar", "aaa"),
                ("my_baz", "bbb")
            ])
        );
    }

    #[test]
    fn templated_target_label() {
        let re = "some-([^-]+)-([^,]+)";
        let c = cfg(&["a"], re, "${1}", "${2}", Action::Replace);
        assert_eq!(
            run(&[("a", "some-name-value")], &[c]),
            l(&[("a", "some-name-value"), ("name", "value")])
        );
        // Empty replacement: nothing set.
        let c = cfg(&["a"], re, "${1}", "${3}", Action::Replace);
        assert_eq!(
            run(&[("a", "some-name-value")], &[c]),
            l(&[("a", "some-name-value")])
        );
        // Targets expanding to invalid names are skipped.
        let cs = [
            cfg(&["a"], re, "${3}", "${1}", Action::Replace),
            cfg(&["a"], re, "0${3}", "${1}", Action::Replace),
            cfg(&["a"], re, "-${3}", "${1}", Action::Replace),
        ];
        // `0${3}` and `-${3}` are rejected by validation in Prometheus too, so apply the
        // first one only through `compile` and the others directly.
        assert!(Rule::new(&cs[1]).is_err());
        assert!(Rule::new(&cs[2]).is_err());
        assert_eq!(
            run(&[("a", "some-name-value")], &cs[..1]),
            l(&[("a", "some-name-value")])
        );
    }

    #[test]
    fn real_life_tags() {
        let t = "__meta_sd_tags";
        let cs = [
            cfg(
                &[t],
                "(?:.+,|^)path:(/[^,]+).*",
                "__metrics_path__",
                "${1}",
                Action::Replace,
            ),
            cfg(
                &[t],
                "(?:.+,|^)job:([^,]+).*",
                "job",
                "${1}",
                Action::Replace,
            ),
            cfg(
                &[t],
                "(?:.+,|^)label:([^=]+)=([^,]+).*",
                "${1}",
                "${2}",
                Action::Replace,
            ),
        ];
        let v = "path:/secret,job:some-job,label:foo=bar";
        assert_eq!(
            run(&[(t, v)], &cs),
            l(&[
                (t, v),
                ("__metrics_path__", "/secret"),
                ("job", "some-job"),
                ("foo", "bar")
            ])
        );
    }

    #[test]
    fn labelkeep_and_labeldrop() {
        let input = [("a", "foo"), ("b1", "bar"), ("b2", "baz")];
        let c = cfg(&[], "(b.*)", "", "", Action::LabelKeep);
        assert_eq!(run(&input, &[c]), l(&[("b1", "bar"), ("b2", "baz")]));
        let c = cfg(&[], "(b.*)", "", "", Action::LabelDrop);
        assert_eq!(run(&input, &[c]), l(&[("a", "foo")]));
    }

    #[test]
    fn upper_and_lower_case() {
        let cs = [
            cfg(&["foo"], "", "foo_uppercase", "", Action::Uppercase),
            cfg(&["foo"], "", "foo_lowercase", "", Action::Lowercase),
        ];
        assert_eq!(
            run(&[("foo", "bAr123Foo")], &cs),
            l(&[
                ("foo", "bAr123Foo"),
                ("foo_lowercase", "bar123foo"),
                ("foo_uppercase", "BAR123FOO")
            ])
        );
        // Go maps rune to rune: `ß` has no single-rune upper case and stays.
        assert_eq!(go_uppercase("straße"), "STRAßE");
        assert_eq!(go_lowercase("İSTANBUL"), "istanbul");
        assert_eq!(go_lowercase("ΟΔΟΣ"), "οδοσ");
    }

    #[test]
    fn keepequal_and_dropequal() {
        let input = [
            ("__tmp_port", "1234"),
            ("__port1", "1234"),
            ("__port2", "5678"),
        ];
        let keep1 = cfg(&["__tmp_port"], "", "__port1", "", Action::KeepEqual);
        let drop1 = cfg(&["__tmp_port"], "", "__port1", "", Action::DropEqual);
        let drop2 = cfg(&["__tmp_port"], "", "__port2", "", Action::DropEqual);
        let keep2 = cfg(&["__tmp_port"], "", "__port2", "", Action::KeepEqual);
        assert_eq!(run(&input, &[keep1]), l(&input));
        assert_eq!(run(&input, &[drop1]), None);
        assert_eq!(run(&input, &[drop2]), l(&input));
        assert_eq!(run(&input, &[keep2]), None);
    }

    // Prometheus' TestTargetLabelValidity.
    #[test]
    fn target_label_validity() {
        let cases = [
            ("-label", false),
            ("label", true),
            ("label${1}", true),
            ("${1}label", true),
            ("${1}", true),
            ("${", false),
            ("$", false),
            ("${}", false),
            ("foo${", false),
            ("$1", true),
            ("asd$2asd", true),
            ("-foo${1}bar-", false),
            ("_${1}_", true),
            ("foo${bar}foo", true),
            ("1abc", false),
            ("", false),
        ];
        for (s, valid) in cases {
            assert_eq!(is_valid_target_template(s), valid, "{s:?}");
        }
    }

    #[test]
    fn validation_follows_prometheus() {
        let base = RelabelConfig::default();
        let err = |c: RelabelConfig| Rule::new(&c).unwrap_err();
        assert_eq!(
            err(RelabelConfig {
                action: Action::HashMod,
                target_label: Some("x".into()),
                ..base.clone()
            }),
            RelabelError::ModulusRequired
        );
        assert_eq!(
            err(base.clone()),
            RelabelError::TargetLabelRequired {
                action: Action::Replace
            }
        );
        for a in [
            Action::Lowercase,
            Action::Uppercase,
            Action::KeepEqual,
            Action::DropEqual,
        ] {
            assert_eq!(
                err(RelabelConfig {
                    action: a,
                    ..base.clone()
                }),
                RelabelError::TargetLabelRequired { action: a }
            );
            assert_eq!(
                err(RelabelConfig {
                    action: a,
                    target_label: Some("t".into()),
                    replacement: "x".into(),
                    ..base.clone()
                }),
                RelabelError::ReplacementNotAllowed { action: a }
            );
        }
        assert_eq!(
            err(RelabelConfig {
                target_label: Some("a-b".into()),
                ..base.clone()
            }),
            RelabelError::InvalidTargetLabel {
                target: "a-b".into(),
                action: Action::Replace
            }
        );
        // hashmod wants a plain label name, not a template.
        assert_eq!(
            err(RelabelConfig {
                action: Action::HashMod,
                modulus: Some(3),
                target_label: Some("$1".into()),
                ..base.clone()
            }),
            RelabelError::InvalidTargetLabel {
                target: "$1".into(),
                action: Action::HashMod
            }
        );
        assert_eq!(
            err(RelabelConfig {
                action: Action::LabelMap,
                replacement: "a-$1".into(),
                ..base.clone()
            }),
            RelabelError::InvalidReplacement {
                replacement: "a-$1".into(),
                action: Action::LabelMap
            }
        );
        assert_eq!(
            err(RelabelConfig {
                action: Action::KeepEqual,
                target_label: Some("t".into()),
                regex: "x".into(),
                ..base.clone()
            }),
            RelabelError::OnlySourceAndTarget {
                action: Action::KeepEqual
            }
        );
        for a in [Action::LabelDrop, Action::LabelKeep] {
            assert_eq!(
                err(RelabelConfig {
                    action: a,
                    source_labels: vec!["x".into()],
                    ..base.clone()
                }),
                RelabelError::OnlyRegex { action: a }
            );
            assert_eq!(
                err(RelabelConfig {
                    action: a,
                    separator: ",".into(),
                    ..base.clone()
                }),
                RelabelError::OnlyRegex { action: a }
            );
        }
        assert_eq!(
            err(RelabelConfig {
                action: Action::Keep,
                source_labels: vec!["a.b".into()],
                ..base.clone()
            }),
            RelabelError::InvalidSourceLabel { name: "a.b".into() }
        );
        assert!(matches!(
            err(RelabelConfig {
                action: Action::Keep,
                regex: "a(b".into(),
                ..base.clone()
            }),
            RelabelError::Regex { .. }
        ));
        // compile names the rule.
        let e = compile(&[
            RelabelConfig {
                action: Action::Keep,
                ..base.clone()
            },
            base.clone(),
        ])
        .unwrap_err();
        assert_eq!(e.rule_index(), Some(1));
        assert_eq!(e.field(), Some("action"));
        assert_eq!(
            e.to_string(),
            "relabel rule 1: relabel configuration for replace action requires 'target_label' value"
        );
    }

    #[test]
    fn yaml_defaults_and_nulls() {
        let c: RelabelConfig = serde_yaml::from_str("target_label: x").unwrap();
        assert_eq!(c.regex, "(.*)");
        assert_eq!(c.replacement, "$1");
        assert_eq!(c.separator, ";");
        // A key with no value is Go's zero value, not the default.
        let c: RelabelConfig = serde_yaml::from_str("regex:\nreplacement: static").unwrap();
        assert_eq!(c.regex, "");
        let c: RelabelConfig = serde_yaml::from_str("action: LabelDrop\nregex: x").unwrap();
        assert_eq!(c.action, Action::LabelDrop);
        assert!(serde_yaml::from_str::<RelabelConfig>("action: frobnicate").is_err());
        assert!(serde_yaml::from_str::<RelabelConfig>("action:").is_err());
        assert!(serde_yaml::from_str::<RelabelConfig>("regexp: x").is_err());
    }

    #[test]
    fn empty_regex_matches_only_empty() {
        // `regex:` null compiles `^(?:)$` (Prometheus' conf.good.yml example).
        let c = RelabelConfig {
            regex: String::new(),
            replacement: "static".into(),
            target_label: Some("abc".into()),
            ..RelabelConfig::default()
        };
        assert_eq!(
            run(&[("x", "1")], std::slice::from_ref(&c)),
            l(&[("abc", "static"), ("x", "1")])
        );
        let c2 = RelabelConfig {
            source_labels: vec!["x".into()],
            ..c
        };
        assert_eq!(run(&[("x", "1")], &[c2]), l(&[("x", "1")]));
    }

    #[test]
    fn go_expand_semantics() {
        let t = |tmpl: &str, re: &str, src: &str| {
            let tr = translate_go_regex(re).unwrap();
            let rx = Regex::new(&format!("^(?:{})$", tr.pattern)).unwrap();
            let mut locs = rx.capture_locations();
            rx.captures_read(&mut locs, src).unwrap();
            Template::parse(tmpl).expand(src, &locs, &tr.group_names)
        };
        // `$1x` is the group named `1x`, which does not exist.
        assert_eq!(t("$1x", "(a)", "a"), "");
        assert_eq!(t("${1}x", "(a)", "a"), "ax");
        assert_eq!(t("$$1", "(a)", "a"), "$1");
        assert_eq!(t("$", "(a)", "a"), "$");
        assert_eq!(t("${1", "(a)", "a"), "${1");
        assert_eq!(t("$-", "(a)", "a"), "$-");
        assert_eq!(t("$0", "(a)b", "ab"), "ab");
        // Leading zeros make a name, not a number.
        assert_eq!(t("$01", "(a)", "a"), "");
        assert_eq!(t("$9", "(a)", "a"), "");
        assert_eq!(t("$name-$1", "(?P<name>a)", "a"), "a-a");
        // Go accepts group names Rust does not.
        assert_eq!(t("${1a}", "(?P<1a>a)", "a"), "a");
        // Unicode letters belong to names in Go.
        assert_eq!(t("$1é", "(a)", "a"), "");
        // A group that did not take part expands to nothing.
        assert_eq!(t("<$2>", "(a)|(b)", "a"), "<>");
    }

    fn matches(re: &str, s: &str) -> bool {
        let tr = translate_go_regex(re).unwrap_or_else(|e| panic!("{re}: {e}"));
        Regex::new(&format!("^(?:{})$", tr.pattern))
            .unwrap_or_else(|e| panic!("{re} -> {}: {e}", tr.pattern))
            .is_match(s)
    }

    #[test]
    fn go_regex_syntax() {
        // Perl classes are ASCII in Go.
        assert!(matches(r"\d+", "123"));
        assert!(!matches(r"\d", "٣"));
        assert!(!matches(r"\w", "é"));
        assert!(matches(r"\W", "é"));
        assert!(!matches(r"[\w]", "é"));
        assert!(matches(r"[^\d]", "٣"));
        assert!(matches(r"[\D]", "٣"));
        assert!(!matches(r"\s", "\u{a0}"));
        assert!(matches(r"\S", "\u{a0}"));
        assert!(matches(r"[\S]", "\u{a0}"));
        assert!(!matches(r"\s", "\x0B"));
        assert!(matches(r"a\b.*", "a-b"));
        // ASCII word boundary: between `a` and `é` there is one in Go, none in Unicode.
        assert!(matches(r"a\bé", "aé"));
        // Literals Rust would read as syntax.
        assert!(matches(r"\Q.*+\E", ".*+"));
        assert!(!matches(r"\Q.*+\E", "a"));
        assert!(matches(r"\Qa\\E", "a\\"));
        assert!(matches(r"a{", "a{"));
        assert!(matches(r"a{,2}", "a{,2}"));
        assert!(matches(r"x}", "x}"));
        assert!(matches(r"[[]", "["));
        assert!(matches(r"[a&&b]", "&"));
        assert!(matches(r"[--/]", "."));
        assert!(matches(r"[a~~b]", "~"));
        assert!(matches(r"\<a\>", "<a>"));
        assert!(matches(r"\101", "A"));
        assert!(matches(r"\0", "\0"));
        assert!(matches(r"[\101-\103]", "B"));
        assert!(matches(r"[]a]", "]"));
        assert!(matches(r"[^]a]", "b"));
        assert!(matches(r"[[:alpha:]]+", "abc"));
        assert!(matches(r"[[:^digit:]]", "a"));
        assert!(matches(r"a b#c", "a b#c"));
        assert!(matches(r"\pL\p{Greek}", "aα"));
        assert!(matches(r"(?i)abc", "ABC"));
        assert!(matches(r"(?i:a)b", "Ab"));
        assert!(matches(r"(?s).", "\n"));
        assert!(!matches(r".", "\n"));
        assert!(matches(r"a{2,3}?", "aa"));
        assert!(matches(r"\x41\x{42}", "AB"));
        assert!(matches(r"[\x41-\x{43}]", "C"));
        assert!(matches(r"\.\-", ".-"));
        assert!(matches(r"[\]\-]+", "]-"));
        // Rejected by Go.
        for bad in [
            r"a**",
            r"a{2}{3}",
            r"a++",
            r"*",
            r"(?x)a",
            r"(?<n>a)",
            r"(?=a)",
            r"\1",
            r"\8",
            r"\e",
            r"\Z",
            r"[a",
            r"[z-a]",
            r"[a--b]",
            r"[[:foo:]]",
            r"a{1001}",
            r"(?P<a-b>x)",
            "\\",
            r"\Q.*",
            r"[\b]",
            r"\p{Foo}",
            r"(?i)*",
            r"(a{500}){3}",
            r"(a{2}){501}",
            r"((a{10}){10}){11}",
            r"(a{0}){1001}",
            r"\C",
            r"(?-)",
            r"(?i-)",
            r"x{2,1}",
            r"\18",
            r"[\1]",
            r"\x4",
            r"\x{110000}",
            r"\x{}",
            r"[\Q]\E]",
        ] {
            let ok = translate_go_regex(bad)
                .ok()
                .and_then(|t| Regex::new(&format!("^(?:{})$", t.pattern)).ok());
            assert!(ok.is_none(), "{bad:?} should be rejected");
        }
        // Accepted by Go.
        // Each checked against promtool 2.42.
        for good in [
            r"a*?",
            r"a{2}?",
            r"(?i)",
            r"(?i-s:a)",
            r"(?U)a+",
            r"a|",
            r"()",
            r"^$",
            r"(?)",
            r"(?P<1a>x)",
            r"(?P<a>x)(?P<a>y)",
            r"a{,2}",
            r"[[]",
            r"\<",
            r"\pZ",
            r"^*",
            r"a{1000}",
            r"[\d-z]",
            r"a(?i)*",
            r"\0",
            r"\01",
            r"\08",
            r"\12",
            r"\1234",
            r"[\0]",
            r"(a{2}){500}",
            r"(a*){1000}",
            r"((a{10}){10}){10}",
            r"a{0,}",
            r"\p{^Greek}",
            r"\PL",
            r"[\p{Greek}a]",
            r"\pN",
            r"\Q\E",
            r"\Qa\\E",
            r"[^\x00-\x{10FFFF}]",
            "\\ ",
            r"a\#",
            r"(?s-i:a)",
            r"(?ims)",
            r"[[:word:]]",
            r"[[:^word:]]",
            r"\b*",
            r"\A",
            r"\z",
            r"(|a)*",
            r"a{ 2}",
            r"a{2 }",
            r"x{00002}",
        ] {
            assert!(translate_go_regex(good).is_ok(), "{good}");
            let t = translate_go_regex(good).unwrap();
            assert!(Regex::new(&t.pattern).is_ok(), "{good} -> {}", t.pattern);
        }
    }

    #[test]
    fn process_vec_normalizes() {
        let rules = compile(&[cfg(&["b"], "(.*)", "c", "$1", Action::Replace)]).unwrap();
        let mut v = vec![
            Label::new("b", "2"),
            Label::new("a", ""),
            Label::new("b", "3"),
            Label::new("A", "x"),
        ];
        assert!(process_vec(&rules, &mut v));
        assert_eq!(
            v,
            vec![
                Label::new("A", "x"),
                Label::new("b", "3"),
                Label::new("c", "3")
            ]
        );
        // Setting an empty value deletes.
        let rules = compile(&[cfg(&["missing"], "(.*)", "b", "$1", Action::Replace)]).unwrap();
        assert_eq!(
            run(
                &[("b", "1")],
                &[cfg(&["missing"], "(.*)", "b", "$1", Action::Replace)]
            ),
            l(&[])
        );
        let mut v = vec![Label::new("b", "1")];
        assert!(process_vec(&rules, &mut v));
        assert!(v.is_empty());
    }

    proptest::proptest! {
        #[test]
        fn prop_output_is_a_valid_label_set(
            pairs in proptest::collection::vec(("[a-c_]{1,3}", "[a-c]{0,3}"), 0..6),
            re in "[a-c.*()|]{0,6}",
            action in 0usize..11,
        ) {
            let actions = [
                Action::Replace, Action::Keep, Action::Drop, Action::KeepEqual, Action::DropEqual,
                Action::HashMod, Action::LabelMap, Action::LabelDrop, Action::LabelKeep,
                Action::Lowercase, Action::Uppercase,
            ];
            let a = actions[action];
            let mut c = RelabelConfig { action: a, ..RelabelConfig::default() };
            if matches!(a, Action::Replace | Action::Keep | Action::Drop | Action::LabelMap
                | Action::LabelDrop | Action::LabelKeep) {
                c.regex = re;
            }
            if !matches!(a, Action::LabelDrop | Action::LabelKeep | Action::LabelMap) {
                c.source_labels = vec!["a".into(), "b".into()];
                c.target_label = Some("t".into());
            }
            if a == Action::HashMod { c.modulus = Some(7); }
            let Ok(rule) = Rule::new(&c) else { return Ok(()); };
            let mut v: Vec<Label> = pairs.iter().map(|(n, v)| Label::new(n.as_str(), v.as_str())).collect();
            let kept = process_vec(std::slice::from_ref(&rule), &mut v);
            let via_labels = process(std::slice::from_ref(&rule), &Labels::new(
                pairs.iter().map(|(n, v)| Label::new(n.as_str(), v.as_str())).collect()));
            proptest::prop_assert_eq!(kept, via_labels.is_some());
            if kept {
                proptest::prop_assert!(v.windows(2).all(|w| w[0].name < w[1].name));
                proptest::prop_assert!(v.iter().all(|l| !l.value.is_empty()));
                proptest::prop_assert_eq!(Some(Labels::from_sorted_unchecked(v)), via_labels);
            }
        }

        #[test]
        fn prop_translate_never_panics(re in "\\PC{0,12}") {
            if let Ok(t) = translate_go_regex(&re) {
                let _ = Regex::new(&format!("^(?:{})$", t.pattern));
            }
        }
    }
}
