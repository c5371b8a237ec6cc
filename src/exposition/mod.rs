//! Text exposition parser: Prometheus text format 0.0.4 and OpenMetrics 1.0 text, read exactly as
//! a Prometheus 2.42 scrape reads them.
//!
//! Why it exists: ingest reads scrape-shaped text files; a document must be accepted or rejected,
//! and give the same series and values, as Prometheus 2.42 would. Prometheus' parsers
//! (`model/textparse/promparse.go`, `promlex.l`, `openmetricsparse.go`, `openmetricslex.l`) and the
//! checks of `scrape/scrape.go` are looser than the written specifications in places, and stricter
//! in others; this module follows them, not the specs. The token rules are documented in `lex.rs`;
//! the facts that matter to users:
//!
//! - 0.0.4: tokens may be separated by spaces or tabs anywhere on a sample line (`a { b = "c" , } 1`),
//!   label pairs need no comma between them, a trailing comma is allowed; blank lines are skipped;
//!   `#` lines other than `# HELP`/`# TYPE` are comments; a missing final newline is fine; a raw
//!   newline may appear inside a quoted label value; CR is not whitespace (CRLF files fail, except
//!   on comment lines); timestamps are decimal digits (milliseconds). Whitespace before a metric name
//!   makes the scrape fail (the name then starts with it). A NUL byte at the start of a line or in a
//!   `#` comment ends the document there: see [`Parser::truncated_at`].
//! - OpenMetrics: single spaces only; no comments, no blank lines; types `unknown`, `info`,
//!   `stateset`, `gaugehistogram` too; `# UNIT` must be a `_`-suffix of the metric name; timestamps
//!   are float seconds, converted `int64(seconds * 1000)`; exemplars (`# {...} v [ts]`) are checked
//!   and skipped, only on names ending `_total` or `_bucket`; the document must end with `# EOF`.
//!   `_created` samples are ordinary series in 2.42, as are `le`/`quantile` labels (no
//!   normalisation of their values).
//! - Both: values are Go `ParseFloat` spellings minus hex floats and `_` (see `float.rs`); NaN is
//!   stored with Go's NaN bits; HELP text and label values must be UTF-8.
//! - Label sets ([`Parser::labels`]): a label with an empty value removes every label of that name
//!   (Prometheus' `labels.Builder`), then the metric name must be present and valid, and names
//!   unique.
//!
//! Zero-copy: entries borrow the input; nothing is allocated per sample. [`Entry::Sample`] carries
//! the raw series text (name and label block as written) so the caller can keep a scrape cache keyed
//! by it and ask [`Parser::labels`] only for series text it has not seen.
//!
//! Line locality: 0.0.4 parsing keeps no state from one line to the next, except that a quoted label
//! value may span lines and that a NUL can end the document. So a caller may split a 0.0.4 input at
//! line boundaries and parse the blocks in parallel ([`Parser::with_first_line`]): the results are
//! those of one pass up to the first block that fails or stops early (`truncated_at`); from that
//! block's start, parse the rest sequentially to get the true outcome. OpenMetrics carries one fact
//! across lines, whether `# EOF` was seen: parse it sequentially.
//!
//! This module depends only on [`crate::labels`].

mod fast;
mod float;
mod lex;

use std::borrow::Cow;

use crate::labels::{Label, METRIC_NAME};
use lex::{Lexer, State, Token};

pub use float::NORMAL_NAN_BITS;

/// Content type of Prometheus text format 0.0.4.
pub const CONTENT_TYPE_PROMETHEUS: &str = "text/plain; version=0.0.4; charset=utf-8";
/// Content type of OpenMetrics 1.0 text.
pub const CONTENT_TYPE_OPENMETRICS: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// How far [`detect_format`] looks from the start of the input.
const DETECT_PREFIX: usize = 4096;

/// Which text format a document is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text format 0.0.4.
    Prometheus,
    /// OpenMetrics 1.0 text.
    OpenMetrics,
}

impl Format {
    /// The parser Prometheus 2.42 picks for a scrape's Content-Type: OpenMetrics for the media type
    /// `application/openmetrics-text`, 0.0.4 for anything else (including a missing header).
    pub fn from_content_type(content_type: &str) -> Format {
        let media = content_type.split(';').next().unwrap_or("").trim();
        if media.eq_ignore_ascii_case("application/openmetrics-text") {
            Format::OpenMetrics
        } else {
            Format::Prometheus
        }
    }
}

/// Guesses the format of a file or stream, where no Content-Type exists.
///
/// OpenMetrics if the input ends with a `# EOF` line (followed by at most one newline), or if one
/// of the lines in its first 4 KiB starts with `# EOF`, `# UNIT ` or is a `# TYPE` naming a type
/// only OpenMetrics has (`unknown`, `gaugehistogram`, `info`, `stateset`); otherwise 0.0.4.
/// Looks at the first 4 KiB and the last few bytes only.
pub fn detect_format(input: &[u8]) -> Format {
    let trimmed = input.strip_suffix(b"\n").unwrap_or(input);
    if trimmed == b"# EOF" || trimmed.ends_with(b"\n# EOF") {
        return Format::OpenMetrics;
    }
    let prefix = &input[..input.len().min(DETECT_PREFIX)];
    for line in prefix.split(|&c| c == b'\n') {
        if line.starts_with(b"# EOF") || line.starts_with(b"# UNIT ") {
            return Format::OpenMetrics;
        }
        if let Some(rest) = line.strip_prefix(b"# TYPE ") {
            let kind = rest.rsplit(|&c| c == b' ').next().unwrap_or(b"");
            if matches!(kind, b"unknown" | b"gaugehistogram" | b"info" | b"stateset") {
                return Format::OpenMetrics;
            }
        }
    }
    Format::Prometheus
}

/// A metric family's type. 0.0.4's `untyped` is `Unknown`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricType {
    Counter,
    Gauge,
    Histogram,
    GaugeHistogram,
    Summary,
    Info,
    StateSet,
    Unknown,
}

/// One item of a document.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Entry<'a> {
    /// `# HELP`: raw (escaped) text; see [`unescape_help`].
    Help {
        metric: &'a [u8],
        text: &'a [u8],
    },
    Type {
        metric: &'a [u8],
        kind: MetricType,
    },
    /// OpenMetrics `# UNIT`.
    Unit {
        metric: &'a [u8],
        unit: &'a [u8],
    },
    /// A 0.0.4 comment line.
    Comment,
    /// A sample: the series text exactly as in the input (name and label block, no value), the
    /// value, and the timestamp if the line has one.
    Sample {
        series: &'a [u8],
        value: f64,
        timestamp_ms: Option<i64>,
    },
    /// OpenMetrics `# EOF`; `next_offset` is the byte offset just past it (and its newline), where
    /// a following document would start. Another `next_entry` call then fails if anything but the
    /// end of input follows, as in a Prometheus scrape.
    Eof {
        next_offset: usize,
    },
}

/// A document Prometheus would refuse, with the line and (1-based, byte) column of the offending
/// token.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{line}:{column}: {message}")]
pub struct ParseError {
    pub line: u64,
    pub column: u64,
    pub message: String,
}

/// An error before it is placed: byte offset and message.
struct Fail {
    pos: usize,
    message: String,
}

type Step<T> = Result<T, Fail>;

#[derive(Clone, Debug)]
enum End {
    Open,
    /// The input is consumed.
    Done,
    /// OpenMetrics `# EOF` returned; only the end of input may follow.
    AfterEof,
    /// 0.0.4 read a NUL as the end of the document at this offset.
    Truncated(usize),
    Failed(ParseError),
}

/// A pull parser over one document (or, with [`Parser::with_first_line`], a block of one).
pub struct Parser<'a> {
    lx: Lexer<'a>,
    format: Format,
    fast: bool,
    /// Line number of the byte at `line_pos`.
    pos_line: u64,
    line_pos: usize,
    entry_line: u64,
    entry_start: usize,
    name_end: usize,
    sample: bool,
    end: End,
}

impl<'a> Parser<'a> {
    pub fn new(input: &'a [u8], format: Format) -> Self {
        Parser::with_first_line(input, format, 1)
    }

    /// A parser for a block of a larger input that starts at a line boundary, whose first line is
    /// line `first_line` of that input: errors and [`Parser::line`] report absolute line numbers.
    pub fn with_first_line(input: &'a [u8], format: Format, first_line: u64) -> Self {
        Parser {
            lx: Lexer::new(input, format == Format::OpenMetrics),
            format,
            fast: true,
            pos_line: first_line.max(1),
            line_pos: 0,
            entry_line: first_line.max(1),
            entry_start: 0,
            name_end: 0,
            sample: false,
            end: End::Open,
        }
    }

    /// A parser that never takes the fast paths: the reference the fast paths are tested against.
    #[doc(hidden)]
    pub fn reference(input: &'a [u8], format: Format) -> Self {
        let mut p = Parser::new(input, format);
        p.fast = false;
        p
    }

    pub fn format(&self) -> Format {
        self.format
    }

    /// The line of the current entry (of the last error, after one).
    pub fn line(&self) -> u64 {
        self.entry_line
    }

    /// For 0.0.4: `Some(offset)` if the document ended before the end of the input because
    /// Prometheus' lexer reads a NUL at the start of a line (or in a `#` comment) as the end of the
    /// data; `offset` is the start of that line. Everything from there on is ignored by a scrape.
    pub fn truncated_at(&self) -> Option<usize> {
        match self.end {
            End::Truncated(at) => Some(at),
            _ => None,
        }
    }

    /// The next entry; `Ok(None)` at the end of the document. After an error, returns it again.
    pub fn next_entry(&mut self) -> Result<Option<Entry<'a>>, ParseError> {
        match &self.end {
            End::Open => {}
            End::Done | End::Truncated(_) => return Ok(None),
            End::Failed(e) => return Err(e.clone()),
            End::AfterEof => return self.after_eof(),
        }
        self.sample = false;
        if self.fast {
            if let Some(e) = self.try_fast() {
                return Ok(Some(e));
            }
        }
        let step = match self.format {
            Format::Prometheus => self.next_prom(),
            Format::OpenMetrics => self.next_om(),
        };
        match step {
            Ok(e) => {
                self.advance_lines(self.lx.i);
                Ok(e)
            }
            Err(f) => {
                let e = self.error_at(f.pos, f.message);
                self.entry_line = e.line;
                self.sample = false;
                self.end = End::Failed(e.clone());
                Err(e)
            }
        }
    }

    /// The full label set of the current sample: `__name__` first, then the labels in input order,
    /// unescaped, not sorted. Checked as a 2.42 scrape checks it: a label with an empty value
    /// removes every label of its name; then the metric name must be present and a valid name, and
    /// label names unique. `out` is cleared first.
    pub fn labels(&self, out: &mut Vec<Label>) -> Result<(), ParseError> {
        out.clear();
        if !self.sample {
            return Err(self.error_in_entry(
                self.entry_start,
                "expected a sample before asking for its labels, got another entry".into(),
            ));
        }
        let b = self.lx.b;
        let name = b.get(self.entry_start..self.name_end).unwrap_or(&[]);
        out.push(Label::new(METRIC_NAME, utf8(name)));
        let mut lx = self.lx.clone();
        lx.i = self.name_end;
        lx.state = State::Value;
        let mut bad_utf8 = false;
        let mut sink =
            |n: &[u8], v: &[u8]| match String::from_utf8(unescape_label_value(v).into_owned()) {
                Ok(value) => out.push(Label::new(utf8(n), value)),
                Err(_) => bad_utf8 = true,
            };
        let walked = match self.format {
            Format::Prometheus => {
                if skip_ws(&mut lx) == Token::BraceOpen {
                    prom_lvals(&mut lx, &mut sink)
                } else {
                    Ok(())
                }
            }
            Format::OpenMetrics => {
                if lx.lex() == Token::BraceOpen {
                    om_lvals(&mut lx, &mut sink)
                } else {
                    Ok(())
                }
            }
        };
        if let Err(f) = walked {
            return Err(self.error_in_entry(f.pos, f.message));
        }
        let at = self.entry_start;
        if bad_utf8 {
            return Err(self.error_in_entry(at, "expected valid UTF-8 in label values".into()));
        }
        // labels.Builder: an empty value deletes the name, whatever other values it has.
        if out.iter().any(|l| l.value.is_empty()) {
            let empty: Vec<String> = out
                .iter()
                .filter(|l| l.value.is_empty())
                .map(|l| l.name.clone())
                .collect();
            out.retain(|l| !empty.contains(&l.name));
        }
        if !out.iter().any(|l| l.name == METRIC_NAME) {
            return Err(self.error_in_entry(
                at,
                "expected a metric name, got an empty __name__ label".into(),
            ));
        }
        if let Some(l) = out
            .iter()
            .find(|l| l.name == METRIC_NAME && !is_valid_metric_name(l.value.as_bytes()))
        {
            return Err(self.error_in_entry(
                at,
                format!("expected a valid metric name, got {:?}", l.value),
            ));
        }
        if let Some(dup) = duplicate_name(out) {
            return Err(self.error_in_entry(
                at,
                format!("expected unique label names, got {dup:?} twice"),
            ));
        }
        Ok(())
    }

    /// For callers with a scrape cache: if the next line is a 0.0.4 sample whose series text is
    /// exactly `series` — a text this parser returned before, in a line it accepted — returns that
    /// sample reading only its value and timestamp. Otherwise returns `None` and [`next_entry`]
    /// reads the line as usual. Either way the entries are those of [`next_entry`] alone.
    ///
    /// [`next_entry`]: Parser::next_entry
    #[inline]
    pub fn next_sample_for(&mut self, series: &[u8]) -> Option<Entry<'a>> {
        if self.format != Format::Prometheus || !self.fast || !matches!(self.end, End::Open) {
            return None;
        }
        let b = self.lx.b;
        let mut pos = self.lx.i;
        while b.get(pos) == Some(&b'\n') {
            pos += 1;
            self.pos_line += 1;
        }
        self.line_pos = pos;
        self.lx.i = pos;
        let s = fast::prom_sample_known(b, pos, series)?;
        Some(self.take_fast(pos, s))
    }

    fn take_fast(&mut self, pos: usize, s: fast::FastSample) -> Entry<'a> {
        let b = self.lx.b;
        self.entry_start = pos;
        self.entry_line = self.pos_line;
        self.name_end = s.name_end;
        self.sample = true;
        self.lx.i = s.next;
        // One past the end means the line ended at the end of input, not at a newline.
        self.pos_line += u64::from(s.next <= b.len());
        self.line_pos = s.next;
        Entry::Sample {
            series: b.get(pos..s.series_end).unwrap_or(&[]),
            value: s.value,
            timestamp_ms: s.timestamp_ms,
        }
    }

    fn try_fast(&mut self) -> Option<Entry<'a>> {
        let b = self.lx.b;
        let mut pos = self.lx.i;
        let s = match self.format {
            Format::Prometheus => {
                // Blank lines: what the reference path does with a leading linebreak token.
                while b.get(pos) == Some(&b'\n') {
                    pos += 1;
                    self.pos_line += 1;
                }
                self.line_pos = pos;
                self.lx.i = pos;
                fast::prom_sample(b, pos)?
            }
            Format::OpenMetrics => fast::om_sample(b, pos)?,
        };
        Some(self.take_fast(pos, s))
    }

    /// Line bookkeeping after the reference path consumed up to `to`.
    fn advance_lines(&mut self, to: usize) {
        self.pos_line += count_newlines(self.lx.b, self.line_pos, to);
        self.line_pos = to.max(self.line_pos);
    }

    fn begin_entry(&mut self) {
        self.advance_lines(self.lx.i);
        self.entry_start = self.lx.i;
        self.entry_line = self.pos_line;
    }

    /// An error inside the current sample (for [`Parser::labels`], after the parser moved on).
    fn error_in_entry(&self, pos: usize, message: String) -> ParseError {
        let mut e = self.error_at(pos, message);
        e.line = self.entry_line + count_newlines(self.lx.b, self.entry_start, pos);
        e
    }

    fn error_at(&self, pos: usize, message: String) -> ParseError {
        let b = self.lx.b;
        let pos = pos.min(b.len());
        let from = self.line_pos.min(pos);
        let line = self.pos_line + count_newlines(b, from, pos);
        let line_start = b[..pos]
            .iter()
            .rposition(|&c| c == b'\n')
            .map_or(0, |p| p + 1);
        ParseError {
            line,
            column: (pos - line_start) as u64 + 1,
            message,
        }
    }

    fn after_eof(&mut self) -> Result<Option<Entry<'a>>, ParseError> {
        self.begin_entry();
        match self.lx.lex() {
            Token::Eof => {
                self.end = End::Done;
                Ok(None)
            }
            t => {
                let e = self.error_at(
                    self.lx.start,
                    format!(
                        "expected end of input after # EOF, got {}",
                        got(&self.lx, t)
                    ),
                );
                self.end = End::Failed(e.clone());
                Err(e)
            }
        }
    }

    fn next_prom(&mut self) -> Step<Option<Entry<'a>>> {
        loop {
            self.begin_entry();
            let start = self.lx.i;
            let t = skip_ws(&mut self.lx);
            match t {
                Token::Eof => {
                    self.end = if self.lx.i < self.lx.eff_len {
                        End::Truncated(start)
                    } else {
                        End::Done
                    };
                    return Ok(None);
                }
                Token::Linebreak => continue,
                Token::Help | Token::Type => {
                    let (metric, text) = self.prom_meta(t)?;
                    return Ok(Some(if t == Token::Help {
                        Entry::Help { metric, text }
                    } else {
                        Entry::Type {
                            metric,
                            kind: self.metric_type(text, false)?,
                        }
                    }));
                }
                Token::Comment => {
                    let t = skip_ws(&mut self.lx);
                    if t != Token::Linebreak {
                        return Err(fail(&self.lx, t, "expected end of line after comment"));
                    }
                    return Ok(Some(Entry::Comment));
                }
                Token::MName => return self.prom_sample(start).map(Some),
                t => {
                    return Err(fail(
                        &self.lx,
                        t,
                        "expected a metric name, # HELP, # TYPE or a comment at start of line",
                    ))
                }
            }
        }
    }

    fn prom_meta(&mut self, kw: Token) -> Step<(&'a [u8], &'a [u8])> {
        let t = skip_ws(&mut self.lx);
        if t != Token::MName {
            return Err(fail(
                &self.lx,
                t,
                &format!("expected metric name after {}", kw.name()),
            ));
        }
        let metric = self.lx.buf();
        let t = skip_ws(&mut self.lx);
        if t != Token::Text {
            return Err(fail(
                &self.lx,
                t,
                &format!("expected text in {}", kw.name()),
            ));
        }
        let tok = self.lx.buf();
        let text = if tok.len() > 1 { &tok[1..] } else { &[][..] };
        let text_pos = self.lx.start + usize::from(!tok.is_empty());
        if kw == Token::Help && std::str::from_utf8(text).is_err() {
            return Err(Fail {
                pos: self.lx.start,
                message: "expected valid UTF-8 in help text".into(),
            });
        }
        let t = skip_ws(&mut self.lx);
        if t != Token::Linebreak {
            return Err(fail(&self.lx, t, "expected end of line after metadata"));
        }
        // Type names are checked after the line ends, as in Prometheus; the position is the text's.
        self.name_end = text_pos;
        Ok((metric, text))
    }

    fn metric_type(&self, text: &[u8], om: bool) -> Step<MetricType> {
        let kind = match text {
            b"counter" => MetricType::Counter,
            b"gauge" => MetricType::Gauge,
            b"histogram" => MetricType::Histogram,
            b"summary" => MetricType::Summary,
            b"untyped" if !om => MetricType::Unknown,
            b"unknown" if om => MetricType::Unknown,
            b"gaugehistogram" if om => MetricType::GaugeHistogram,
            b"info" if om => MetricType::Info,
            b"stateset" if om => MetricType::StateSet,
            _ => {
                let names = if om {
                    "counter, gauge, histogram, gaugehistogram, summary, info, stateset or unknown"
                } else {
                    "counter, gauge, histogram, summary or untyped"
                };
                return Err(Fail {
                    pos: self.name_end,
                    message: format!("expected metric type {names}, got \"{}\"", escape(text)),
                });
            }
        };
        Ok(kind)
    }

    fn prom_sample(&mut self, start: usize) -> Step<Entry<'a>> {
        let b = self.lx.b;
        self.name_end = self.lx.i;
        let mut series_end = self.lx.i;
        let mut t = skip_ws(&mut self.lx);
        if t == Token::BraceOpen {
            prom_lvals(&mut self.lx, &mut |_, _| {})?;
            series_end = self.lx.i;
            t = skip_ws(&mut self.lx);
        }
        if t != Token::Value {
            return Err(fail(&self.lx, t, "expected value after metric"));
        }
        let value = value_of(self.lx.buf(), self.lx.start)?;
        let t = skip_ws(&mut self.lx);
        let timestamp_ms = match t {
            Token::Linebreak => None,
            Token::Timestamp => {
                let Some(ts) = float::parse_digits_i64(self.lx.buf()) else {
                    return Err(Fail {
                        pos: self.lx.start,
                        message: format!(
                            "expected a timestamp in int64 milliseconds, got \"{}\" (value out of range)",
                            escape(self.lx.buf())
                        ),
                    });
                };
                let t = skip_ws(&mut self.lx);
                if t != Token::Linebreak {
                    return Err(fail(&self.lx, t, "expected end of line after timestamp"));
                }
                Some(ts)
            }
            t => return Err(fail(&self.lx, t, "expected timestamp or end of line")),
        };
        self.sample = true;
        Ok(Entry::Sample {
            series: b.get(start..series_end.min(b.len())).unwrap_or(&[]),
            value,
            timestamp_ms,
        })
    }

    fn next_om(&mut self) -> Step<Option<Entry<'a>>> {
        self.begin_entry();
        let start = self.lx.i;
        let t = self.lx.lex();
        match t {
            Token::EofWord => {
                self.end = End::AfterEof;
                Ok(Some(Entry::Eof {
                    next_offset: self.lx.i.min(self.lx.b.len()),
                }))
            }
            Token::Eof => Err(missing_eof(&self.lx)),
            Token::Help | Token::Type | Token::Unit => {
                let t2 = self.lx.lex();
                if t2 != Token::MName {
                    return Err(fail(
                        &self.lx,
                        t2,
                        &format!("expected metric name after {}", t.name()),
                    ));
                }
                let metric = self.lx.buf();
                let t3 = self.lx.lex();
                if t3 != Token::Text {
                    return Err(fail(
                        &self.lx,
                        t3,
                        &format!("expected text in {}", t.name()),
                    ));
                }
                let tok = self.lx.buf();
                let text = tok.get(1..tok.len().saturating_sub(1)).unwrap_or(&[]);
                self.name_end = self.lx.start + 1;
                match t {
                    Token::Help => {
                        if std::str::from_utf8(text).is_err() {
                            return Err(Fail {
                                pos: self.lx.start,
                                message: "expected valid UTF-8 in help text".into(),
                            });
                        }
                        Ok(Some(Entry::Help { metric, text }))
                    }
                    Token::Type => Ok(Some(Entry::Type {
                        metric,
                        kind: self.metric_type(text, true)?,
                    })),
                    _ => {
                        let is_suffix = metric.len() > text.len()
                            && metric.ends_with(text)
                            && metric[metric.len() - text.len() - 1] == b'_';
                        if !text.is_empty() && !is_suffix {
                            return Err(Fail {
                                pos: self.lx.start + 1,
                                message: format!(
                                    "expected a unit that is a _-suffix of metric \"{}\", got \"{}\"",
                                    escape(metric),
                                    escape(text)
                                ),
                            });
                        }
                        Ok(Some(Entry::Unit { metric, unit: text }))
                    }
                }
            }
            Token::MName => self.om_sample(start).map(Some),
            t => Err(fail(
                &self.lx,
                t,
                "expected a metric name, # HELP, # TYPE, # UNIT or # EOF at start of line",
            )),
        }
    }

    fn om_sample(&mut self, start: usize) -> Step<Entry<'a>> {
        let b = self.lx.b;
        self.name_end = self.lx.i;
        let mut series_end = self.lx.i;
        let mut t = self.lx.lex();
        if t == Token::BraceOpen {
            om_lvals(&mut self.lx, &mut |_, _| {})?;
            series_end = self.lx.i;
            t = self.lx.lex();
        }
        if t != Token::Value {
            return Err(fail(&self.lx, t, "expected value after metric"));
        }
        let tok = self.lx.buf();
        let value = value_of(tok.get(1..).unwrap_or(&[]), self.lx.start + 1)?;
        let mut timestamp_ms = None;
        let mut t = self.lx.lex();
        if t == Token::Timestamp {
            timestamp_ms = Some(om_timestamp(&self.lx, "timestamp")?);
            t = self.lx.lex();
            if !matches!(t, Token::Linebreak | Token::Comment) {
                return Err(fail(
                    &self.lx,
                    t,
                    "expected end of line or exemplar after timestamp",
                ));
            }
        }
        match t {
            Token::Linebreak => {}
            Token::Comment => {
                let name = b.get(start..self.name_end).unwrap_or(&[]);
                if !(name.ends_with(b"_total") || name.ends_with(b"_bucket")) {
                    return Err(Fail {
                        pos: self.lx.start,
                        message: format!(
                            "expected a metric name ending in _total or _bucket before an exemplar, got \"{}\"",
                            escape(name)
                        ),
                    });
                }
                om_lvals(&mut self.lx, &mut |_, _| {})?;
                let t = self.lx.lex();
                if t != Token::Value {
                    return Err(fail(&self.lx, t, "expected value after exemplar labels"));
                }
                let tok = self.lx.buf();
                value_of(tok.get(1..).unwrap_or(&[]), self.lx.start + 1)?;
                match self.lx.lex() {
                    Token::Linebreak => {}
                    Token::Eof => return Err(missing_eof(&self.lx)),
                    Token::Timestamp => {
                        om_timestamp(&self.lx, "exemplar timestamp")?;
                        let t = self.lx.lex();
                        if t != Token::Linebreak {
                            return Err(fail(
                                &self.lx,
                                t,
                                "expected end of line after exemplar timestamp",
                            ));
                        }
                    }
                    t => {
                        return Err(fail(
                            &self.lx,
                            t,
                            "expected exemplar timestamp or end of line",
                        ))
                    }
                }
            }
            Token::Eof => return Err(missing_eof(&self.lx)),
            t => {
                return Err(fail(
                    &self.lx,
                    t,
                    "expected timestamp, exemplar or end of line",
                ))
            }
        }
        self.sample = true;
        Ok(Entry::Sample {
            series: b.get(start..series_end.min(b.len())).unwrap_or(&[]),
            value,
            timestamp_ms,
        })
    }
}

/// Next token other than whitespace (0.0.4 separates tokens by any run of spaces and tabs).
fn skip_ws(lx: &mut Lexer<'_>) -> Token {
    loop {
        let t = lx.lex();
        if t != Token::Whitespace {
            return t;
        }
    }
}

/// 0.0.4 label block after `{`: pairs separated by an optional comma, a trailing comma allowed.
fn prom_lvals(lx: &mut Lexer<'_>, sink: &mut dyn FnMut(&[u8], &[u8])) -> Step<()> {
    let mut t = skip_ws(lx);
    loop {
        match t {
            Token::BraceClose => return Ok(()),
            Token::LName => {}
            t => return Err(fail(lx, t, "expected label name")),
        }
        let name = lx.buf();
        let t2 = skip_ws(lx);
        if t2 != Token::Equal {
            return Err(fail(lx, t2, "expected equal sign after label name"));
        }
        let t3 = skip_ws(lx);
        if t3 != Token::LValue {
            return Err(fail(lx, t3, "expected label value"));
        }
        sink(name, label_value(lx)?);
        t = skip_ws(lx);
        if t == Token::Comma {
            t = skip_ws(lx);
        }
    }
}

/// OpenMetrics label block (or exemplar label block) after its opening brace: commas between
/// pairs, none before the first or after the last.
fn om_lvals(lx: &mut Lexer<'_>, sink: &mut dyn FnMut(&[u8], &[u8])) -> Step<()> {
    let mut first = true;
    loop {
        match lx.lex() {
            Token::BraceClose => return Ok(()),
            Token::Comma if !first => {
                let t = lx.lex();
                if t != Token::LName {
                    return Err(fail(lx, t, "expected label name"));
                }
            }
            Token::LName if first => {}
            t if first => return Err(fail(lx, t, "expected label name or right brace")),
            t => return Err(fail(lx, t, "expected comma or right brace")),
        }
        first = false;
        let name = lx.buf();
        let t = lx.lex();
        if t != Token::Equal {
            return Err(fail(lx, t, "expected equal sign after label name"));
        }
        let t = lx.lex();
        if t != Token::LValue {
            return Err(fail(lx, t, "expected label value"));
        }
        sink(name, label_value(lx)?);
    }
}

/// The current label-value token without its first and last byte (the quotes, unless NULs after
/// the closing quote joined the token), checked for UTF-8.
fn label_value<'a>(lx: &Lexer<'a>) -> Step<&'a [u8]> {
    let tok = lx.buf();
    if std::str::from_utf8(tok).is_err() {
        return Err(Fail {
            pos: lx.start,
            message: "expected valid UTF-8 in label value".into(),
        });
    }
    Ok(tok.get(1..tok.len().saturating_sub(1)).unwrap_or(&[]))
}

fn value_of(text: &[u8], pos: usize) -> Step<f64> {
    float::parse_go_float(text).map_err(|e| Fail {
        pos,
        message: format!(
            "expected a float value, got \"{}\" ({})",
            escape(text),
            e.describe()
        ),
    })
}

fn om_timestamp(lx: &Lexer<'_>, what: &str) -> Step<i64> {
    let tok = lx.buf();
    let text = tok.get(1..).unwrap_or(&[]);
    let ts = float::parse_go_float(text).map_err(|e| Fail {
        pos: lx.start + 1,
        message: format!(
            "expected a float {what}, got \"{}\" ({})",
            escape(text),
            e.describe()
        ),
    })?;
    if !ts.is_finite() {
        return Err(Fail {
            pos: lx.start + 1,
            message: format!("expected a finite {what}, got \"{}\"", escape(text)),
        });
    }
    Ok(float::go_seconds_to_millis(ts))
}

fn missing_eof(lx: &Lexer<'_>) -> Fail {
    Fail {
        pos: lx.b.len(),
        message: "expected # EOF at end of input, got end of input".into(),
    }
}

/// An "expected ..., got <token>" failure at the current token; an invalid token is placed where
/// the lexer stopped matching.
fn fail(lx: &Lexer<'_>, t: Token, expected: &str) -> Fail {
    let pos = if t == Token::Invalid { lx.i } else { lx.start };
    Fail {
        pos,
        message: format!("{expected}, got {}", got(lx, t)),
    }
}

fn got(lx: &Lexer<'_>, t: Token) -> String {
    match t {
        Token::Eof => "end of input".into(),
        Token::Linebreak => "end of line".into(),
        Token::Invalid => match lx.b.get(lx.i) {
            None => "end of input".into(),
            Some(b'\n') => "end of line".into(),
            Some(&c) => format!("\"{}\"", escape(&[c])),
        },
        t => {
            let tok = lx.buf();
            let shown = &tok[..tok.len().min(40)];
            format!("{} \"{}\"", t.name(), escape(shown))
        }
    }
}

/// Bytes for an error message: printable ASCII as is, the rest escaped.
fn escape(b: &[u8]) -> String {
    let mut out = String::with_capacity(b.len());
    for &c in b {
        match c {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\t' => out.push_str("\\t"),
            b'\r' => out.push_str("\\r"),
            0x20..=0x7e => out.push(char::from(c)),
            _ => out.push_str(&format!("\\x{c:02x}")),
        }
    }
    out
}

fn utf8(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn count_newlines(b: &[u8], from: usize, to: usize) -> u64 {
    let to = to.min(b.len());
    if from >= to {
        return 0;
    }
    b[from..to].iter().filter(|&&c| c == b'\n').count() as u64
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`, Prometheus' `model.IsValidMetricName`.
fn is_valid_metric_name(n: &[u8]) -> bool {
    match n.split_first() {
        Some((&c, rest)) => lex::is_m(c) && rest.iter().all(|&c| lex::is_md(c)),
        None => false,
    }
}

fn duplicate_name(labels: &[Label]) -> Option<&str> {
    let mut names: Vec<&str> = labels.iter().map(|l| l.name.as_str()).collect();
    names.sort_unstable();
    names.windows(2).find(|w| w[0] == w[1]).map(|w| w[0])
}

/// Left-to-right replacement of two-byte escapes, as Go's `strings.Replacer`: unknown escapes
/// stay as written.
fn unescape(b: &[u8], quote: bool) -> Cow<'_, [u8]> {
    if !b.contains(&b'\\') {
        return Cow::Borrowed(b);
    }
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'\\' {
            match b.get(i + 1) {
                Some(b'\\') => {
                    out.push(b'\\');
                    i += 2;
                    continue;
                }
                Some(b'n') => {
                    out.push(b'\n');
                    i += 2;
                    continue;
                }
                Some(b'"') if quote => {
                    out.push(b'"');
                    i += 2;
                    continue;
                }
                _ => {}
            }
        }
        out.push(c);
        i += 1;
    }
    Cow::Owned(out)
}

/// Unescapes a label value: `\\`, `\"` and `\n`; other backslashes stay.
pub fn unescape_label_value(value: &[u8]) -> Cow<'_, [u8]> {
    unescape(value, true)
}

/// Unescapes HELP text as Prometheus does: `\\` and `\n` in 0.0.4, also `\"` in OpenMetrics.
pub fn unescape_help(text: &[u8], format: Format) -> Cow<'_, [u8]> {
    unescape(text, format == Format::OpenMetrics)
}

/// Fuzz body: parses `data` in both formats, with and without fast paths, and checks that the
/// two agree entry by entry (labels included), that nothing panics and that every error has a line.
#[doc(hidden)]
pub fn fuzz_parse(data: &[u8]) {
    let _ = detect_format(data);
    for format in [Format::Prometheus, Format::OpenMetrics] {
        let mut fast = Parser::new(data, format);
        let mut slow = Parser::reference(data, format);
        let (mut lf, mut ls) = (Vec::new(), Vec::new());
        // Series texts seen, guessed back as a scrape cache would (the previous two).
        let mut seen: Vec<Vec<u8>> = Vec::new();
        for round in 0..=data.len() + 1 {
            let guess = seen.iter().rev().nth(round % 2).cloned();
            let a = match guess.and_then(|g| fast.next_sample_for(&g)) {
                Some(e) => Ok(Some(e)),
                None => fast.next_entry(),
            };
            if let Ok(Some(Entry::Sample { series, .. })) = &a {
                seen.push(series.to_vec());
            }
            let b = slow.next_entry();
            assert_eq!(
                comparable(&a),
                comparable(&b),
                "fast and reference paths differ ({format:?})"
            );
            assert_eq!(fast.line(), slow.line(), "line of entry differs");
            match a {
                Ok(Some(Entry::Sample { .. })) => {
                    let ra = fast.labels(&mut lf);
                    let rb = slow.labels(&mut ls);
                    assert_eq!(ra, rb);
                    assert_eq!(lf, ls);
                    if let Err(e) = ra {
                        assert!(e.line >= 1 && e.column >= 1, "{e}");
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => {
                    assert!(e.line >= 1 && e.column >= 1, "{e}");
                    break;
                }
            }
        }
        assert_eq!(fast.truncated_at(), slow.truncated_at());
    }
}

/// An entry result with values as bits, so NaN compares equal to itself.
fn comparable(r: &Result<Option<Entry<'_>>, ParseError>) -> String {
    match r {
        Ok(Some(Entry::Sample {
            series,
            value,
            timestamp_ms,
        })) => format!("sample {series:?} {:x} {timestamp_ms:?}", value.to_bits()),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests;
