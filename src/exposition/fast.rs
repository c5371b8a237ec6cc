//! Fast paths for the common sample-line shapes, `name{l="v",...} value [timestamp]\n`.
//!
//! A fast path either recognises a whole line and returns exactly what the reference path (the
//! lexer rules in `lex.rs`) would, or gives up and lets the reference path read the same line: it
//! never reports an error itself. Anything unusual (NUL bytes, newlines inside label values,
//! whitespace inside braces, exemplars, unparsable numbers, ...) makes it give up. The fuzz body
//! checks the two paths agree on arbitrary input.

use super::float::{go_seconds_to_millis, parse_digits_i64, parse_go_float};
use super::lex::{is_l, is_ld, is_m, is_md, is_oval, is_pval};

/// A recognised sample line; positions are absolute offsets in the input.
pub(super) struct FastSample {
    pub name_end: usize,
    pub series_end: usize,
    pub value: f64,
    pub timestamp_ms: Option<i64>,
    /// Where the next line starts (one past the end of input when the line had no newline).
    pub next: usize,
}

#[inline]
fn at(b: &[u8], i: usize) -> u8 {
    // NUL is in no class the fast paths accept, so it doubles as "end of input".
    b.get(i).copied().unwrap_or(0)
}

/// Reads `name` then, if present, a `{...}` label block with 0.0.4 (`trailing_comma`) or
/// OpenMetrics rules. Returns (name_end, series_end).
#[inline(always)]
fn series(b: &[u8], pos: usize, trailing_comma: bool) -> Option<(usize, usize)> {
    let mut i = pos;
    if !is_m(at(b, i)) {
        return None;
    }
    i += 1;
    while is_md(at(b, i)) {
        i += 1;
    }
    let name_end = i;
    if at(b, i) != b'{' {
        return Some((name_end, name_end));
    }
    i += 1;
    let mut high = 0u8;
    let mut may_close = true;
    loop {
        let c = at(b, i);
        if c == b'}' && may_close {
            i += 1;
            break;
        }
        if !is_l(c) {
            return None;
        }
        i += 1;
        while is_ld(at(b, i)) {
            i += 1;
        }
        if at(b, i) != b'=' || at(b, i + 1) != b'"' {
            return None;
        }
        i += 2;
        loop {
            let c = at(b, i);
            match c {
                b'"' => break,
                b'\\' => {
                    let e = at(b, i + 1);
                    if e == 0 || e == b'\n' {
                        return None;
                    }
                    high |= e;
                    i += 2;
                }
                0 | b'\n' => return None,
                _ => {
                    high |= c;
                    i += 1;
                }
            }
        }
        i += 1;
        match at(b, i) {
            b',' => {
                i += 1;
                may_close = trailing_comma;
            }
            b'}' => {
                i += 1;
                break;
            }
            _ => return None,
        }
    }
    // Label values must be UTF-8; every other byte of the series text is ASCII.
    if high & 0x80 != 0 && std::str::from_utf8(b.get(pos..i)?).is_err() {
        return None;
    }
    Some((name_end, i))
}

/// A 0.0.4 sample line starting at `pos`.
#[inline]
pub(super) fn prom_sample(b: &[u8], pos: usize) -> Option<FastSample> {
    let (name_end, series_end) = series(b, pos, true)?;
    let mut i = series_end;
    while matches!(at(b, i), b' ' | b'\t') {
        i += 1;
    }
    let v_start = i;
    while is_pval(at(b, i)) {
        i += 1;
    }
    if i == v_start {
        return None;
    }
    let value = parse_go_float(b.get(v_start..i)?).ok()?;
    while matches!(at(b, i), b' ' | b'\t') {
        i += 1;
    }
    let mut timestamp_ms = None;
    if at(b, i).is_ascii_digit() {
        let t_start = i;
        while at(b, i).is_ascii_digit() {
            i += 1;
        }
        timestamp_ms = Some(parse_digits_i64(b.get(t_start..i)?)?);
        while matches!(at(b, i), b' ' | b'\t') {
            i += 1;
        }
    }
    // The end of input counts as a newline: Prometheus appends one.
    if i < b.len() && b[i] != b'\n' {
        return None;
    }
    Some(FastSample {
        name_end,
        series_end,
        value,
        timestamp_ms,
        next: i + 1,
    })
}

/// An OpenMetrics sample line starting at `pos`, without exemplar.
#[inline]
pub(super) fn om_sample(b: &[u8], pos: usize) -> Option<FastSample> {
    let (name_end, series_end) = series(b, pos, false)?;
    let mut i = series_end;
    if at(b, i) != b' ' {
        return None;
    }
    i += 1;
    let v_start = i;
    while is_oval(at(b, i)) {
        i += 1;
    }
    if i == v_start {
        return None;
    }
    let value = parse_go_float(b.get(v_start..i)?).ok()?;
    let mut timestamp_ms = None;
    if at(b, i) == b' ' {
        i += 1;
        let t_start = i;
        if at(b, i) == b'#' {
            return None;
        }
        while is_oval(at(b, i)) {
            i += 1;
        }
        if i == t_start {
            return None;
        }
        let ts = parse_go_float(b.get(t_start..i)?).ok()?;
        if !ts.is_finite() {
            return None;
        }
        timestamp_ms = Some(go_seconds_to_millis(ts));
    }
    if at(b, i) != b'\n' {
        return None;
    }
    Some(FastSample {
        name_end,
        series_end,
        value,
        timestamp_ms,
        next: i + 1,
    })
}
