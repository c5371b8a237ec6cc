//! Prometheus' series description notation: a metric and its values in "expanding notation", as
//! written in the `load` blocks of PromQL test scripts and in the `input_series` of rule unit
//! tests (`promtool test rules`; `docs/configuration/unit_testing_rules.md` of Prometheus 2.42).
//!
//! ```text
//! http_requests{job="api", instance="a"}  1+2x3 _ stale -2-1x2 7x1 _x2
//! ```
//!
//! expands, one value per step, to `1 3 5 7 _ stale -2 -3 -4 7 7 _ _`: `a+bxN` and `a-bxN` are `a`
//! then `N` further values stepping by `b`; `axN` is `a` repeated `N + 1` times; `_` is a missing
//! sample and `_xN` is `N` of them (not `N + 1`); `stale` is a staleness marker.
//!
//! The syntax is that of Prometheus 2.42's lexer and grammar (`promql/parser/lex.go` in its
//! series-description mode and the `series_description` rules of `generated_parser.y`), including
//! their corners: items are separated by whitespace; numbers are decimal (no hexadecimal: `0x5` is
//! six zeros), read with Go's `strconv.ParseInt(s, 0, 64)` first, so `010` is octal 8; `Inf` and
//! `NaN` are numbers but `Infinity` is not; `stale` takes no sign and no `xN` of its own (`stalex3`
//! is one unknown word; `stale+0x3` is a stale marker then NaNs); the repetition count is an
//! unsigned decimal integer. Errors carry the 1-based byte column in the trimmed line
//! and Prometheus' wording, so that `promtool`'s message (`1:15: parse error: ...`) can be
//! reproduced from them.
//!
//! It exists in the library, not in a test, because two users need the same reading: the runner of
//! Prometheus' PromQL test scripts (`tests/promql_upstream.rs`) and `tsdbctl test rules`.
//! Native-histogram values (`{{...}}`, Prometheus 2.40+ behind a feature flag) are not supported.

use super::parse_error::{is_keyword, AGGREGATORS, OPERATOR_KEYWORDS};
use crate::chunk::STALE_NAN_BITS;
use crate::labels::{Label, Labels, METRIC_NAME};

/// One expanded value: a sample, or a step without a sample (`_`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SequenceValue {
    /// `_`: no sample at this step.
    Omitted,
    /// A sample value; `stale` is the staleness-marker NaN ([`STALE_NAN_BITS`]).
    Value(f64),
}

impl SequenceValue {
    /// The value, or `None` for an omitted step.
    pub fn value(self) -> Option<f64> {
        match self {
            SequenceValue::Omitted => None,
            SequenceValue::Value(v) => Some(v),
        }
    }
}

/// A parsed series description: the series' labels and its expanded values, one per step.
#[derive(Clone, Debug, PartialEq)]
pub struct SeriesDesc {
    pub labels: Labels,
    pub values: Vec<SequenceValue>,
}

/// What is wrong with a series description, and where: `column` is the 1-based byte column of the
/// offending token in the whitespace-trimmed input (Prometheus reports the same column).
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("column {column}: {kind}")]
pub struct NotationError {
    pub column: usize,
    pub kind: NotationErrorKind,
}

impl NotationError {
    /// The message as Prometheus' `ParseErr` prints it for a one-line input:
    /// `1:<column>: parse error: <message>`.
    pub fn prometheus_message(&self) -> String {
        format!("1:{}: parse error: {}", self.column, self.kind)
    }
}

/// The problems, worded as Prometheus 2.42's lexer and parser word them.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum NotationErrorKind {
    /// A token the grammar does not allow here. `found` is Prometheus' description of the token
    /// (`identifier "foo"`, `end of input`, `<op:+>`); `context` where (`series values`,
    /// `label set`) when Prometheus' grammar says so: inside an item of a value sequence it does,
    /// between items it does not (its parser has reduced the sequence there and fails at the
    /// top level); `expected` what would have fitted, when Prometheus says so.
    #[error("unexpected {found}{}{}", context.map(|c| format!(" in {c}")).unwrap_or_default(), expected.map(|e| format!(", expected {e}")).unwrap_or_default())]
    Unexpected {
        found: String,
        context: Option<&'static str>,
        expected: Option<&'static str>,
    },
    /// A character that starts no token of a value sequence.
    #[error("unexpected character in series sequence: {}", go_quote_rune(*.0))]
    UnexpectedChar(char),
    /// A character that starts no token inside `{...}`.
    #[error("unexpected character inside braces: {}", go_quote_rune(*.0))]
    UnexpectedCharInBraces(char),
    /// `!` inside braces not followed by `=` or `~`.
    #[error("unexpected character after '!' inside braces: {}", go_quote_rune(*.0))]
    UnexpectedAfterBang(char),
    /// A `{` inside braces.
    #[error("unexpected left brace '{{'")]
    LeftBraceInBraces,
    /// The input ends before the closing `}`.
    #[error("unexpected end of input inside braces")]
    UnclosedBraces,
    /// A number followed by a letter or `_` (other than the `x` of a repetition).
    #[error("bad number syntax: {}", go_quote(.0))]
    BadNumber(String),
    /// A number token that Go's `ParseFloat` refuses (`1e`) or that overflows (`1e400`).
    #[error("error parsing number: strconv.ParseFloat: parsing {}: {}", go_quote(text), if *range { "value out of range" } else { "invalid syntax" })]
    NumberValue { text: String, range: bool },
    /// A repetition count that is not an unsigned 64-bit decimal integer.
    #[error("invalid repetition in series values: strconv.ParseUint: parsing {}: {}", go_quote(text), if *range { "value out of range" } else { "invalid syntax" })]
    BadRepetition { text: String, range: bool },
    /// A quoted label value without its closing quote.
    #[error("unterminated quoted string")]
    UnterminatedString,
    /// A backslash escape Go does not know, or a malformed one.
    #[error("{0}")]
    BadEscape(String),
    /// The same label name twice (Prometheus would build the set and have storage refuse it).
    #[error("label name {} is not unique", go_quote(.0))]
    DuplicateLabel(String),
    /// A repetition that would expand to more values than this reader accepts.
    #[error("series expands to more than {MAX_VALUES} values")]
    TooManyValues,
}

/// The most values one description may expand to: a guard against `1x99999999999` exhausting
/// memory (Prometheus would try). Ten million steps are far beyond any unit test.
pub const MAX_VALUES: usize = 10_000_000;

/// Parses a whole series description, `metric{labels} values...`, trimmed of surrounding
/// whitespace as Prometheus' test loader trims its lines. The metric may be a name, a label set
/// or both; without values the sequence is empty.
pub fn parse_series_desc(line: &str) -> Result<SeriesDesc, NotationError> {
    let mut lx = Lexer::new(line.trim());
    let labels = parse_metric_part(&mut lx, true)?;
    let values = parse_values_part(&mut lx)?;
    Ok(SeriesDesc { labels, values })
}

/// Parses a metric alone (`name`, `name{a="b"}` or `{a="b"}`), as Prometheus' `parser.ParseMetric`
/// reads the `labels` of a rule unit test's expected sample: whitespace between tokens is allowed.
pub fn parse_metric(s: &str) -> Result<Labels, NotationError> {
    let mut lx = Lexer::new(s.trim());
    let labels = parse_metric_part(&mut lx, false)?;
    lx.skip_spaces();
    if lx.pos < lx.src.len() {
        let t = lx.value_token()?;
        return Err(lx.unexpected(&t, None, None));
    }
    Ok(labels)
}

/// Parses a value sequence alone (`1+2x3 _ stale`), as if it followed a metric.
pub fn parse_values(s: &str) -> Result<Vec<SequenceValue>, NotationError> {
    // The separator the grammar wants before the first item; columns then count from it.
    let text = format!(" {}", s.trim());
    let mut lx = Lexer::new(&text);
    parse_values_part(&mut lx).map_err(|mut e| {
        e.column = e.column.saturating_sub(1).max(1);
        e
    })
}

/// A number as Prometheus' test language reads a bare value (an expected scalar): Go's
/// `strconv.ParseInt(s, 0, 64)` (decimal, `0x` hexadecimal, `0o`/leading-`0` octal, `0b` binary,
/// `_` separators), then `strconv.ParseFloat` (decimal, `Inf`, `Infinity`, `NaN`, signed).
pub fn parse_number(s: &str) -> Option<f64> {
    if let Some(i) = go_parse_int_base0(s) {
        return Some(i as f64);
    }
    go_parse_float(s).ok()
}

/// The body of the `series_notation` fuzz target: reading untrusted text as a series description,
/// a metric or a bare number must never panic.
#[doc(hidden)]
pub fn fuzz_parse(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = parse_series_desc(text);
    let _ = parse_metric(text);
    let _ = parse_values(text);
    let _ = parse_number(text);
}

/// Whether `v` is Prometheus' staleness marker (the `stale` of the notation).
pub fn is_stale(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

// ------------------------------------------------------------------ tokens

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Eof,
    Space,
    Add,
    Sub,
    Times,
    Blank,
    Number(String),
    /// An identifier or keyword, as written.
    Ident(String),
    RightBrace,
    Comma,
    Eql,
    /// `!=`, `=~`, `!~`: operators the grammar of a series never accepts.
    MatchOp(&'static str),
    /// A quoted string: its value, and its text as written (quotes included), which Prometheus'
    /// messages show.
    Str {
        value: String,
        raw: String,
    },
}

struct Token {
    tok: Tok,
    /// Byte offset of the token's start.
    pos: usize,
}

/// The context of errors inside a value sequence.
const SERIES_VALUES: Option<&str> = Some("series values");

/// Keywords of Prometheus 2.42's lexer that the grammar accepts as a metric name.
const METRIC_KEYWORDS: &[&str] = &[
    "avg",
    "bottomk",
    "by",
    "count",
    "count_values",
    "group",
    "and",
    "or",
    "unless",
    "max",
    "min",
    "offset",
    "quantile",
    "stddev",
    "stdvar",
    "sum",
    "topk",
    "without",
    "start",
    "end",
];
/// Prometheus' description of a token in "unexpected ..." messages (`Item.desc()`).
fn describe(t: &Tok) -> String {
    match t {
        Tok::Eof => "end of input".into(),
        Tok::Space => go_quote(" "),
        Tok::Add => "<op:+>".into(),
        Tok::Sub => "<op:->".into(),
        Tok::Times => go_quote("x"),
        Tok::Blank => go_quote("_"),
        Tok::RightBrace => go_quote("}"),
        Tok::Comma => go_quote(","),
        Tok::Eql => go_quote("="),
        Tok::MatchOp(op) => format!("<op:{op}>"),
        Tok::Number(s) => format!("number {}", go_quote_trunc(s)),
        Tok::Str { raw, .. } => format!("string {}", go_quote_trunc(raw)),
        Tok::Ident(s) => {
            let lower = s.to_ascii_lowercase();
            if lower == "inf" || lower == "nan" {
                format!("number {}", go_quote_trunc(s))
            } else if OPERATOR_KEYWORDS.contains(&lower.as_str()) {
                format!("<op:{s}>")
            } else if AGGREGATORS.contains(&lower.as_str()) {
                format!("<aggr:{s}>")
            } else if is_keyword(&lower) {
                format!("<{s}>")
            } else if s.contains(':') {
                format!("metric identifier {}", go_quote(s))
            } else {
                format!("identifier {}", go_quote(s))
            }
        }
    }
}

struct Lexer<'a> {
    src: &'a str,
    pos: usize,
}

fn is_alpha(c: u8) -> bool {
    c == b'_' || c.is_ascii_alphabetic()
}

fn is_alnum(c: u8) -> bool {
    is_alpha(c) || c.is_ascii_digit()
}

fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r')
}

impl<'a> Lexer<'a> {
    fn new(src: &'a str) -> Lexer<'a> {
        Lexer { src, pos: 0 }
    }

    fn peek(&self) -> Option<u8> {
        self.src.as_bytes().get(self.pos).copied()
    }

    fn peek_at(&self, off: usize) -> Option<u8> {
        self.src.as_bytes().get(self.pos + off).copied()
    }

    fn err(&self, pos: usize, kind: NotationErrorKind) -> NotationError {
        NotationError {
            column: pos + 1,
            kind,
        }
    }

    fn unexpected(
        &self,
        t: &Token,
        context: Option<&'static str>,
        expected: Option<&'static str>,
    ) -> NotationError {
        self.err(
            t.pos,
            NotationErrorKind::Unexpected {
                found: describe(&t.tok),
                context,
                expected,
            },
        )
    }

    fn skip_spaces(&mut self) {
        while self.peek().is_some_and(is_space) {
            self.pos += 1;
        }
    }

    fn char_at(&self, pos: usize) -> char {
        self.src[pos..].chars().next().unwrap_or('\u{fffd}')
    }

    /// An identifier (letters, digits, `_`, and `:` unless inside braces) from the current byte.
    fn ident(&mut self, colon: bool) -> Token {
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|c| is_alnum(c) || (colon && c == b':'))
        {
            self.pos += 1;
        }
        Token {
            tok: Tok::Ident(self.src[start..self.pos].to_string()),
            pos: start,
        }
    }

    /// Go's `scanNumber` in series-description mode: digits, an optional fraction and exponent,
    /// and then no letter, digit or `_` unless it is the `x` of a repetition.
    fn number(&mut self) -> Result<Token, NotationError> {
        let start = self.pos;
        let digits = |lx: &mut Lexer<'_>| {
            while lx.peek().is_some_and(|c| c.is_ascii_digit()) {
                lx.pos += 1;
            }
        };
        digits(self);
        if self.peek() == Some(b'.') {
            self.pos += 1;
            digits(self);
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            digits(self);
        }
        match self.peek() {
            Some(b'x') => {}
            Some(c) if is_alnum(c) => {
                return Err(self.err(
                    start,
                    NotationErrorKind::BadNumber(self.src[start..self.pos].to_string()),
                ))
            }
            _ => {}
        }
        Ok(Token {
            tok: Tok::Number(self.src[start..self.pos].to_string()),
            pos: start,
        })
    }

    /// The next token of a value sequence (Go's `lexValueSequence`).
    fn value_token(&mut self) -> Result<Token, NotationError> {
        let start = self.pos;
        let Some(c) = self.peek() else {
            return Ok(Token {
                tok: Tok::Eof,
                pos: start,
            });
        };
        let tok = match c {
            c if is_space(c) => {
                self.skip_spaces();
                Tok::Space
            }
            b'+' => {
                self.pos += 1;
                Tok::Add
            }
            b'-' => {
                self.pos += 1;
                Tok::Sub
            }
            b'x' => {
                self.pos += 1;
                Tok::Times
            }
            b'_' => {
                self.pos += 1;
                Tok::Blank
            }
            c if c.is_ascii_digit()
                || (c == b'.' && self.peek_at(1).is_some_and(|d| d.is_ascii_digit())) =>
            {
                return self.number()
            }
            c if is_alpha(c) => return Ok(self.ident(true)),
            _ => {
                return Err(self.err(
                    start,
                    NotationErrorKind::UnexpectedChar(self.char_at(start)),
                ))
            }
        };
        Ok(Token { tok, pos: start })
    }

    /// The next token inside `{...}` (Go's `lexInsideBraces`); spaces are skipped.
    fn brace_token(&mut self) -> Result<Token, NotationError> {
        self.skip_spaces();
        let start = self.pos;
        let Some(c) = self.peek() else {
            return Err(self.err(start, NotationErrorKind::UnclosedBraces));
        };
        let tok = match c {
            c if is_alpha(c) => return Ok(self.ident(false)),
            b',' => {
                self.pos += 1;
                Tok::Comma
            }
            b'"' | b'\'' | b'`' => return self.string(),
            b'=' => {
                self.pos += 1;
                if self.peek() == Some(b'~') {
                    self.pos += 1;
                    Tok::MatchOp("=~")
                } else {
                    Tok::Eql
                }
            }
            b'!' => {
                self.pos += 1;
                match self.peek() {
                    Some(b'~') => {
                        self.pos += 1;
                        Tok::MatchOp("!~")
                    }
                    Some(b'=') => {
                        self.pos += 1;
                        Tok::MatchOp("!=")
                    }
                    _ => {
                        let ch = if self.pos < self.src.len() {
                            self.char_at(self.pos)
                        } else {
                            // Go's lexer reports its end-of-input rune.
                            '\u{fffd}'
                        };
                        return Err(self.err(start, NotationErrorKind::UnexpectedAfterBang(ch)));
                    }
                }
            }
            b'{' => return Err(self.err(start, NotationErrorKind::LeftBraceInBraces)),
            b'}' => {
                self.pos += 1;
                Tok::RightBrace
            }
            _ => {
                return Err(self.err(
                    start,
                    NotationErrorKind::UnexpectedCharInBraces(self.char_at(start)),
                ))
            }
        };
        Ok(Token { tok, pos: start })
    }

    /// A quoted string (`"..."`, `'...'` with Go escapes, or a raw `` `...` ``), unquoted.
    fn string(&mut self) -> Result<Token, NotationError> {
        let start = self.pos;
        let bytes = self.src.as_bytes();
        let Some(&quote) = bytes.get(start) else {
            return Err(self.err(start, NotationErrorKind::UnterminatedString));
        };
        let mut i = start + 1;
        let mut out = String::new();
        if quote == b'`' {
            let Some(end) = self.src[i..].find('`') else {
                return Err(self.err(start, NotationErrorKind::UnterminatedString));
            };
            out.push_str(&self.src[i..i + end]);
            self.pos = i + end + 1;
            return Ok(Token {
                tok: Tok::Str {
                    value: out,
                    raw: self.src[start..self.pos].to_string(),
                },
                pos: start,
            });
        }
        loop {
            let Some(c) = self.src[i..].chars().next() else {
                return Err(self.err(start, NotationErrorKind::UnterminatedString));
            };
            if c == '\n' {
                return Err(self.err(start, NotationErrorKind::UnterminatedString));
            }
            if c as u32 == quote as u32 {
                i += 1;
                break;
            }
            if c != '\\' {
                out.push(c);
                i += c.len_utf8();
                continue;
            }
            i += 1;
            let (ch, used) = unescape(&self.src[i..], quote as char)
                .map_err(|m| self.err(start, NotationErrorKind::BadEscape(m)))?;
            out.push(ch);
            i += used;
        }
        self.pos = i;
        Ok(Token {
            tok: Tok::Str {
                value: out,
                raw: self.src[start..i].to_string(),
            },
            pos: start,
        })
    }
}

/// One escape after a backslash, as Go's `strconv.Unquote` reads it: the character and the bytes
/// consumed.
fn unescape(s: &str, quote: char) -> Result<(char, usize), String> {
    let mut it = s.chars();
    let Some(c) = it.next() else {
        return Err("escape sequence not terminated".into());
    };
    let simple = match c {
        'a' => Some('\x07'),
        'b' => Some('\x08'),
        'f' => Some('\x0c'),
        'n' => Some('\n'),
        'r' => Some('\r'),
        't' => Some('\t'),
        'v' => Some('\x0b'),
        '\\' => Some('\\'),
        c if c == quote => Some(c),
        _ => None,
    };
    if let Some(ch) = simple {
        return Ok((ch, c.len_utf8()));
    }
    let (n, base, skip) = match c {
        '0'..='7' => (3, 8, 0),
        'x' => (2, 16, 1),
        'u' => (4, 16, 1),
        'U' => (8, 16, 1),
        other => return Err(format!("unknown escape sequence {}", go_sharp_u(other))),
    };
    let mut digits = s[skip.min(s.len())..].chars();
    let mut v: u32 = 0;
    let mut used = skip;
    for _ in 0..n {
        let Some(d) = digits.next() else {
            return Err("escape sequence not terminated".into());
        };
        let Some(x) = d.to_digit(base) else {
            return Err(format!(
                "illegal character {} in escape sequence",
                go_sharp_u(d)
            ));
        };
        v = v.saturating_mul(base).saturating_add(x);
        used += d.len_utf8();
    }
    let max = if base == 8 || c == 'x' {
        255
    } else {
        0x10_ffff
    };
    if v > max || (0xd800..0xe000).contains(&v) {
        return Err("escape sequence is an invalid Unicode code point".into());
    }
    // \x and octal escapes are bytes; above 0x7f they would form UTF-8 only together with their
    // neighbours, which label values in tests never need: take them as code points.
    let ch = char::from_u32(v).ok_or("escape sequence is an invalid Unicode code point")?;
    Ok((ch, used))
}

/// Go's `%#U` of a rune: `U+0071 'q'` (the character only when printable).
fn go_sharp_u(c: char) -> String {
    if c.is_control() {
        format!("U+{:04X}", c as u32)
    } else {
        format!("U+{:04X} '{c}'", c as u32)
    }
}

// ------------------------------------------------------------------ grammar

/// `metric_identifier label_set | label_set` (either may be empty). In series-description mode the
/// token after the metric must start the value sequence.
fn parse_metric_part(lx: &mut Lexer<'_>, series_desc: bool) -> Result<Labels, NotationError> {
    let mut set: Vec<(Label, usize)> = Vec::new();
    let mut name: Option<String> = None;
    if !series_desc {
        lx.skip_spaces();
    }
    match lx.peek() {
        Some(c) if is_alpha(c) || c == b':' => {
            let t = lx.ident(true);
            let Tok::Ident(s) = &t.tok else {
                return Err(lx.unexpected(&t, None, None));
            };
            let lower = s.to_ascii_lowercase();
            let keyword = OPERATOR_KEYWORDS.contains(&lower.as_str())
                || AGGREGATORS.contains(&lower.as_str())
                || is_keyword(&lower)
                || lower == "inf"
                || lower == "nan";
            if keyword && !METRIC_KEYWORDS.contains(&lower.as_str()) {
                let context = if series_desc { SERIES_VALUES } else { None };
                return Err(lx.unexpected(&t, context, None));
            }
            name = Some(s.clone());
        }
        Some(b'{') | None => {}
        Some(_) if series_desc => {
            // Prometheus reads a leading number as an expression token where the metric was due.
            let t = lx.value_token()?;
            return Err(lx.unexpected(&t, SERIES_VALUES, None));
        }
        Some(_) => {
            let t = lx.value_token()?;
            return Err(lx.unexpected(&t, None, None));
        }
    }
    if !series_desc {
        lx.skip_spaces();
    }
    if lx.peek() == Some(b'{') {
        lx.pos += 1;
        parse_label_set(lx, &mut set)?;
    }
    for (i, (l, pos)) in set.iter().enumerate() {
        if set[..i].iter().any(|(o, _)| o.name == l.name) {
            return Err(lx.err(*pos, NotationErrorKind::DuplicateLabel(l.name.clone())));
        }
    }
    let mut labels: Vec<Label> = set.into_iter().map(|(l, _)| l).collect();
    if let Some(n) = name {
        // The name written before the braces wins over a `__name__` inside them (Prometheus'
        // `labels.Builder.Set`).
        labels.retain(|l| l.name != METRIC_NAME);
        labels.push(Label::new(METRIC_NAME, n));
    }
    Ok(Labels::new(labels))
}

/// The inside of `{...}` after the `{`: `name="value"` items separated by commas, an optional
/// trailing comma, then `}`.
fn parse_label_set(lx: &mut Lexer<'_>, out: &mut Vec<(Label, usize)>) -> Result<(), NotationError> {
    loop {
        let t = lx.brace_token()?;
        let name = match t.tok {
            Tok::RightBrace => return Ok(()),
            Tok::Ident(ref n) => n.clone(),
            _ => return Err(lx.unexpected(&t, Some("label set"), Some("identifier or \"}\""))),
        };
        let name_pos = t.pos;
        let t = lx.brace_token()?;
        if t.tok != Tok::Eql {
            return Err(lx.unexpected(&t, Some("label set"), Some("\"=\"")));
        }
        let t = lx.brace_token()?;
        let Tok::Str { value, .. } = t.tok else {
            return Err(lx.unexpected(&t, Some("label set"), Some("string")));
        };
        out.push((Label::new(name, value), name_pos));
        let t = lx.brace_token()?;
        match t.tok {
            Tok::Comma => {}
            Tok::RightBrace => return Ok(()),
            _ => return Err(lx.unexpected(&t, Some("label set"), Some("\",\" or \"}\""))),
        }
    }
}

/// `series_values`: items each preceded by whitespace, up to the end of input.
fn parse_values_part(lx: &mut Lexer<'_>) -> Result<Vec<SequenceValue>, NotationError> {
    let mut out = Vec::new();
    loop {
        let t = lx.value_token()?;
        match t.tok {
            Tok::Eof => return Ok(out),
            Tok::Space => {}
            _ => return Err(lx.unexpected(&t, SERIES_VALUES, None)),
        }
        let t = lx.value_token()?;
        let after = match t.tok {
            Tok::Eof => return Ok(out),
            Tok::Blank => {
                let n = lx.value_token()?;
                if n.tok == Tok::Times {
                    let (times, at) = repetition(lx)?;
                    push_n(lx, &mut out, SequenceValue::Omitted, times, None, at)?;
                    lx.value_token()?
                } else {
                    out.push(SequenceValue::Omitted);
                    n
                }
            }
            _ => {
                let v = series_value(lx, t)?;
                let n = lx.value_token()?;
                match n.tok {
                    Tok::Times => {
                        let (times, at) = repetition(lx)?;
                        let n = times.saturating_add(1);
                        push_n(lx, &mut out, SequenceValue::Value(v), n, None, at)?;
                        lx.value_token()?
                    }
                    Tok::Add | Tok::Sub => {
                        let neg = n.tok == Tok::Sub;
                        let m = lx.value_token()?;
                        let Some(s) = number_text(&m.tok) else {
                            return Err(lx.unexpected(&m, SERIES_VALUES, None));
                        };
                        let step = number_value(lx, s, m.pos)?;
                        let step = if neg { -step } else { step };
                        let x = lx.value_token()?;
                        if x.tok != Tok::Times {
                            return Err(lx.unexpected(&x, SERIES_VALUES, None));
                        }
                        let (times, at) = repetition(lx)?;
                        let n = times.saturating_add(1);
                        push_n(lx, &mut out, SequenceValue::Value(v), n, Some(step), at)?;
                        lx.value_token()?
                    }
                    _ => {
                        out.push(SequenceValue::Value(v));
                        n
                    }
                }
            }
        };
        match after.tok {
            Tok::Eof => return Ok(out),
            // The separator before the next item: step back onto it.
            Tok::Space => lx.pos = after.pos,
            // Between items Prometheus' parser has reduced the sequence: no context.
            _ => return Err(lx.unexpected(&after, None, None)),
        }
    }
}

/// `series_value`: `stale`, a number, or a signed number; `t` is its first token.
fn series_value(lx: &mut Lexer<'_>, t: Token) -> Result<f64, NotationError> {
    match t.tok {
        Tok::Ident(ref s) if s == "stale" => Ok(f64::from_bits(STALE_NAN_BITS)),
        Tok::Ident(ref s) => {
            let lower = s.to_ascii_lowercase();
            if lower == "inf" || lower == "nan" {
                return number_value(lx, s, t.pos);
            }
            let keyword = OPERATOR_KEYWORDS.contains(&lower.as_str())
                || AGGREGATORS.contains(&lower.as_str())
                || is_keyword(&lower);
            if keyword {
                // A keyword token where an item starts: a syntax error between items.
                Err(lx.unexpected(&t, None, None))
            } else {
                Err(lx.unexpected(&t, SERIES_VALUES, Some("number or \"stale\"")))
            }
        }
        Tok::Number(ref s) => number_value(lx, s, t.pos),
        Tok::Add | Tok::Sub => {
            let neg = t.tok == Tok::Sub;
            let n = lx.value_token()?;
            let v = match number_text(&n.tok) {
                Some(s) => number_value(lx, s, n.pos)?,
                None => return Err(lx.unexpected(&n, SERIES_VALUES, None)),
            };
            Ok(if neg { -v } else { v })
        }
        _ => Err(lx.unexpected(&t, None, None)),
    }
}

/// The text of a number token: digits, or `Inf`/`NaN` in any case (which Prometheus' lexer
/// turns into numbers through its keyword table).
fn number_text(t: &Tok) -> Option<&str> {
    match t {
        Tok::Number(s) => Some(s),
        Tok::Ident(s) if matches!(s.to_ascii_lowercase().as_str(), "inf" | "nan") => Some(s),
        _ => None,
    }
}

/// The value of a number token: Go's `ParseInt(s, 0, 64)`, else `ParseFloat(s, 64)`.
fn number_value(lx: &Lexer<'_>, s: &str, pos: usize) -> Result<f64, NotationError> {
    if let Some(i) = go_parse_int_base0(s) {
        return Ok(i as f64);
    }
    go_parse_float(s).map_err(|range| {
        lx.err(
            pos,
            NotationErrorKind::NumberValue {
                text: s.to_string(),
                range,
            },
        )
    })
}

/// The count after `x`: Go's `ParseUint(s, 10, 64)` of a number token, and where it is.
fn repetition(lx: &mut Lexer<'_>) -> Result<(u64, usize), NotationError> {
    let t = lx.value_token()?;
    let Some(s) = number_text(&t.tok) else {
        return Err(lx.unexpected(&t, SERIES_VALUES, None));
    };
    let bad = |range| {
        lx.err(
            t.pos,
            NotationErrorKind::BadRepetition {
                text: s.to_string(),
                range,
            },
        )
    };
    if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
        return Err(bad(false));
    }
    let n = s.parse::<u64>().map_err(|_| bad(true))?;
    Ok((n, t.pos))
}

/// Appends `n` values starting at `first`, adding `step` after each (Prometheus adds repeatedly,
/// so the rounding is that of successive additions; without a step the value is copied, so a
/// stale marker stays one). `at` is where the count was written.
fn push_n(
    lx: &Lexer<'_>,
    out: &mut Vec<SequenceValue>,
    first: SequenceValue,
    n: u64,
    step: Option<f64>,
    at: usize,
) -> Result<(), NotationError> {
    let n = usize::try_from(n).unwrap_or(usize::MAX);
    if n > MAX_VALUES.saturating_sub(out.len()) {
        return Err(lx.err(at, NotationErrorKind::TooManyValues));
    }
    out.reserve(n);
    let mut cur = first;
    for _ in 0..n {
        out.push(cur);
        if let (SequenceValue::Value(v), Some(step)) = (cur, step) {
            cur = SequenceValue::Value(v + step);
        }
    }
    Ok(())
}

// ------------------------------------------------------------------ Go number syntax

/// Go's `strconv.ParseInt(s, 0, 64)`: `None` when it would fail.
fn go_parse_int_base0(s: &str) -> Option<i64> {
    let (neg, body) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let b = body.as_bytes();
    let (radix, rest) = match b {
        [b'0', p, _, ..] if matches!(p.to_ascii_lowercase(), b'b' | b'o' | b'x') => {
            let radix = match p.to_ascii_lowercase() {
                b'b' => 2,
                b'o' => 8,
                _ => 16,
            };
            (radix, &body[2..])
        }
        [b'0', ..] => (8, &body[1..]),
        [] => return None,
        _ => (10, body),
    };
    let mut n: u64 = 0;
    let mut underscores = false;
    for c in rest.chars() {
        if c == '_' {
            underscores = true;
            continue;
        }
        let d = c.to_digit(radix)?;
        n = n.checked_mul(u64::from(radix))?.checked_add(u64::from(d))?;
    }
    if underscores && !underscore_ok(body) {
        return None;
    }
    if neg {
        (n <= 1 << 63).then(|| (n as i128).wrapping_neg() as i64)
    } else {
        i64::try_from(n).ok()
    }
}

/// Go's `underscoreOK`: underscores only between digits or after a base prefix.
fn underscore_ok(s: &str) -> bool {
    let b = s.as_bytes();
    // '^' start, '0' digit or prefix, '_' underscore, '!' anything else.
    let mut saw = b'^';
    let mut i = 0;
    let mut hex = false;
    if b.len() >= 2 && b[0] == b'0' && matches!(b[1].to_ascii_lowercase(), b'b' | b'o' | b'x') {
        i = 2;
        saw = b'0';
        hex = b[1].eq_ignore_ascii_case(&b'x');
    }
    while i < b.len() {
        let c = b[i];
        i += 1;
        if c.is_ascii_digit() || hex && c.is_ascii_hexdigit() {
            saw = b'0';
            continue;
        }
        if c == b'_' {
            if saw != b'0' {
                return false;
            }
            saw = b'_';
            continue;
        }
        if saw == b'_' {
            return false;
        }
        saw = b'!';
    }
    saw != b'_'
}

/// Go's `strconv.ParseFloat(s, 64)` for decimal syntax and the special values: `Err(true)` on
/// overflow, `Err(false)` on bad syntax. Hexadecimal floats and `_` separators are refused (the
/// notation's lexer never produces them).
fn go_parse_float(s: &str) -> Result<f64, bool> {
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    let lower = body.to_ascii_lowercase();
    if lower == "nan" {
        // Go refuses a signed NaN.
        return if body.len() == s.len() {
            Ok(f64::NAN)
        } else {
            Err(false)
        };
    }
    if lower == "inf" || lower == "infinity" {
        return Ok(if s.starts_with('-') {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        });
    }
    let b = body.as_bytes();
    let valid = !b.is_empty()
        && b.iter()
            .all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'E' | b'+' | b'-'))
        && b.iter().any(|c| c.is_ascii_digit());
    if !valid {
        return Err(false);
    }
    let v: f64 = s.parse().map_err(|_| false)?;
    if v.is_infinite() {
        return Err(true);
    }
    Ok(v)
}

// ------------------------------------------------------------------ Go quoting

use crate::gostr::{quote as go_quote, quote_rune as go_quote_rune};

/// Go's `%.10q` (Prometheus' `Item.String` for long tokens).
fn go_quote_trunc(s: &str) -> String {
    crate::gostr::quote_trunc(s, 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn show(v: &[SequenceValue]) -> Vec<String> {
        v.iter()
            .map(|x| match x {
                SequenceValue::Omitted => "_".into(),
                SequenceValue::Value(f) if is_stale(*f) => "stale".into(),
                SequenceValue::Value(f) => f.to_string(),
            })
            .collect()
    }

    fn values(s: &str) -> Vec<String> {
        show(&parse_series_desc(&format!("m {s}")).unwrap().values)
    }

    fn error(line: &str) -> String {
        parse_series_desc(line).unwrap_err().prometheus_message()
    }

    #[test]
    fn expands_the_documented_examples() {
        assert_eq!(values("-2+4x3"), ["-2", "2", "6", "10"]);
        assert_eq!(values("1-2x4"), ["1", "-1", "-3", "-5", "-7"]);
        assert_eq!(values("1x4"), ["1", "1", "1", "1", "1"]);
        assert_eq!(values("1 _x3 stale"), ["1", "_", "_", "_", "stale"]);
        assert_eq!(
            values("1+1x2 _ -2-1x1 _x2 stale 0x1 Inf"),
            ["1", "2", "3", "_", "-2", "-3", "_", "_", "stale", "0", "0", "inf"]
        );
    }

    #[test]
    fn numbers_read_as_go_reads_them() {
        // `010` is octal (ParseInt base 0); `0x3` is a repetition, not hexadecimal.
        assert_eq!(values("010 0x3"), ["8", "0", "0", "0", "0"]);
        assert_eq!(
            values("08 1e3x1 .5 5. +Inf -inf"),
            ["8", "1000", "1000", "0.5", "5", "inf", "-inf"]
        );
        assert!(values("NaN")[0] == "NaN");
        assert_eq!(values("1+0.5x2"), ["1", "1.5", "2"]);
        assert_eq!(values("1  2\t3"), ["1", "2", "3"]);
        assert_eq!(values("_x0 1x0"), ["1"]);
        assert_eq!(values(""), Vec::<String>::new());
        assert_eq!(values("1 "), ["1"]);
    }

    #[test]
    fn metrics_parse_as_prometheus_series() {
        let d = parse_series_desc(r#"up{job="a", instance='b:1',} 1"#).unwrap();
        assert_eq!(
            d.labels,
            Labels::from_pairs(&[("__name__", "up"), ("job", "a"), ("instance", "b:1")])
        );
        let d = parse_series_desc(r#"{__name__="x", a="\"q\"\n"} 1"#).unwrap();
        assert_eq!(
            d.labels,
            Labels::from_pairs(&[("__name__", "x"), ("a", "\"q\"\n")])
        );
        let d = parse_series_desc("ns:rule_name:sum 2").unwrap();
        assert_eq!(d.labels.metric_name(), Some("ns:rule_name:sum"));
        // Aggregation keywords are valid metric names.
        assert_eq!(
            parse_series_desc("sum{a=\"b\"} 1")
                .unwrap()
                .labels
                .metric_name(),
            Some("sum")
        );
        assert_eq!(parse_series_desc("{} 1").unwrap().labels, Labels::default());
        assert_eq!(
            parse_metric(r#"up {job = "a"}"#).unwrap(),
            Labels::from_pairs(&[("__name__", "up"), ("job", "a")])
        );
        assert_eq!(
            parse_metric("up").unwrap(),
            Labels::from_pairs(&[("__name__", "up")])
        );
    }

    /// Messages and columns checked against `promtool test rules` 2.42 (the line is
    /// `up{job="a"} <values>`).
    #[test]
    fn errors_are_worded_and_placed_as_prometheus_does() {
        assert_eq!(
            error(r#"up{job="a"} 1 foo 2"#),
            r#"1:15: parse error: unexpected identifier "foo" in series values, expected number or "stale""#
        );
        assert_eq!(
            error(r#"up{job="a"} 1+2"#),
            "1:16: parse error: unexpected end of input in series values"
        );
        assert_eq!(
            error(r#"up{job="a"} 1 2_"#),
            r#"1:15: parse error: bad number syntax: "2""#
        );
        assert_eq!(
            error(r#"up{job="a"} stalex3"#),
            r#"1:13: parse error: unexpected identifier "stalex3" in series values, expected number or "stale""#
        );
        assert_eq!(
            error(r#"up{job="a"} 1x2.5"#),
            r#"1:15: parse error: invalid repetition in series values: strconv.ParseUint: parsing "2.5": invalid syntax"#
        );
        assert_eq!(
            error(r#"up{job="a"} 1 $"#),
            "1:15: parse error: unexpected character in series sequence: '$'"
        );
        assert_eq!(
            error(r#"up{job="a"} 1 -stale"#),
            r#"1:16: parse error: unexpected identifier "stale" in series values"#
        );
        // Between items Prometheus' parser reports no context; inside an item it does.
        for (line, msg) in [
            ("m _ x2", r#"1:5: parse error: unexpected "x""#),
            ("m 1+1x2x3", r#"1:8: parse error: unexpected "x""#),
            ("m 1 _2", r#"1:6: parse error: unexpected number "2""#),
            ("m 1 sum", "1:5: parse error: unexpected <aggr:sum>"),
            (
                "m 1 +sum",
                "1:6: parse error: unexpected <aggr:sum> in series values",
            ),
            (
                "m 1 _x",
                "1:7: parse error: unexpected end of input in series values",
            ),
            (
                "m 1x-2",
                "1:5: parse error: unexpected <op:-> in series values",
            ),
            (
                "m 1+Inf x2",
                r#"1:8: parse error: unexpected " " in series values"#,
            ),
            (
                "m 1-NaNx2",
                r#"1:5: parse error: unexpected identifier "NaNx2" in series values"#,
            ),
            (
                r#"m{a="b"}1"#,
                r#"1:9: parse error: unexpected number "1" in series values"#,
            ),
            (
                r#"on{a="b"} 1"#,
                "1:1: parse error: unexpected <on> in series values",
            ),
            (
                r#"m{a=b} 1"#,
                r#"1:5: parse error: unexpected identifier "b" in label set, expected string"#,
            ),
            (
                "m 1e",
                r#"1:3: parse error: error parsing number: strconv.ParseFloat: parsing "1e": invalid syntax"#,
            ),
            (
                "m 1e400",
                r#"1:3: parse error: error parsing number: strconv.ParseFloat: parsing "1e400": value out of range"#,
            ),
            (
                "m :1",
                "1:3: parse error: unexpected character in series sequence: ':'",
            ),
            (
                "m 1 2}",
                "1:6: parse error: unexpected character in series sequence: '}'",
            ),
        ] {
            assert_eq!(error(line), msg, "{line:?}");
        }
        assert!(
            values("-nan")[0] == "NaN",
            "Prometheus negates the number NaN"
        );
        assert_eq!(
            parse_metric(r#"up{job=~"a"}"#)
                .unwrap_err()
                .prometheus_message(),
            r#"1:7: parse error: unexpected <op:=~> in label set, expected "=""#
        );
        assert_eq!(
            parse_metric("up{").unwrap_err().prometheus_message(),
            "1:4: parse error: unexpected end of input inside braces"
        );
    }

    #[test]
    fn rejects_what_prometheus_rejects() {
        for bad in [
            "m 1x",
            "m 1x-2",
            "m _ x2",
            "m 1 2 +",
            "m 1e",
            "m 1e400",
            "m infinity",
            "m 1,2",
            "m{a=\"b\"}1",
            "m{a=\"b\" 1",
            "m{a=b} 1",
            "m{a=\"b\",a=\"c\"} 1",
            "m :1",
            "m 1x99999999999999999999",
            "1 2",
            "on{a=\"b\"} 1",
            "m 1+1x2x3",
            "m 1 _2",
        ] {
            assert!(parse_series_desc(bad).is_err(), "{bad:?} parsed");
        }
        assert!(
            parse_series_desc("m 1x100000000").is_err(),
            "expansion is bounded"
        );
    }

    #[test]
    fn bare_numbers_follow_go_parse_number() {
        assert_eq!(parse_number("0x1f"), Some(31.0));
        assert_eq!(parse_number("010"), Some(8.0));
        assert_eq!(parse_number("1_000"), Some(1000.0));
        assert_eq!(parse_number("-Inf"), Some(f64::NEG_INFINITY));
        assert_eq!(parse_number("Infinity"), Some(f64::INFINITY));
        assert!(parse_number("NaN").is_some_and(f64::is_nan));
        assert_eq!(parse_number("1.5e3"), Some(1500.0));
        assert_eq!(parse_number("foo"), None);
        assert_eq!(parse_number("{}"), None);
        assert_eq!(parse_number("-nan"), None);
    }

    proptest::proptest! {
        // A few thousand inputs per property: these are the fuzz targets' bodies, run on stable.
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4096))]

        #[test]
        fn never_panics_on_any_text(s in "\\PC{0,40}") {
            fuzz_parse(s.as_bytes());
        }

        #[test]
        fn never_panics_on_mutated_descriptions(
            pos in 0usize..64,
            byte in proptest::num::u8::ANY,
            which in 0usize..4,
        ) {
            let seeds = [
                "up{job=\"a\", instance='b'} 1+2x3 _ stale -2-1x2 7x1 _x2",
                "ns:m{a=`raw`,} .5 5. 1e3x2 +Inf -NaN 010",
                "{__name__=\"x\", v=\"\\u00e9\\x41\\101\"} 1",
                "sum 1 _x3 stale",
            ];
            let mut b = seeds[which].as_bytes().to_vec();
            let i = pos % (b.len() + 1);
            if i < b.len() {
                b[i] = byte;
            } else {
                b.push(byte);
            }
            fuzz_parse(&b);
            b.truncate(i);
            fuzz_parse(&b);
        }

        #[test]
        fn never_panics_on_notation_like_text(s in "[a-z{}=\"', _x+\\-0-9.eE:\\\\!~]{0,40}") {
            if let Err(e) = parse_series_desc(&s) {
                proptest::prop_assert!(e.column >= 1 && e.column <= s.trim().len() + 1);
            }
            let _ = parse_metric(&s);
        }

        #[test]
        fn expansion_matches_arithmetic(a in -1000i32..1000, b in -50i32..50, n in 0u32..20) {
            let sign = if b < 0 { "-" } else { "+" };
            let v = parse_series_desc(&format!("m {a}{sign}{}x{n}", b.abs())).unwrap().values;
            proptest::prop_assert_eq!(v.len(), n as usize + 1);
            for (i, x) in v.iter().enumerate() {
                proptest::prop_assert_eq!(x.value(), Some(f64::from(a) + f64::from(b) * i as f64));
            }
        }
    }
}
