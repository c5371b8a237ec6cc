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

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// Bytes of `w` equal to zero, as a mask of their high bits; exact up to the lowest match, which is
/// all the callers use.
#[inline(always)]
fn zero_bytes(w: u64) -> u64 {
    w.wrapping_sub(ONES) & !w & HIGHS
}

/// Per lane, high bit set iff the (7-bit) byte is >= `k`. Lanes with the high bit set must be
/// masked out by the caller. No borrow crosses lanes: every lane of `w | HIGHS` is >= 0x80 >= `k`.
#[inline(always)]
fn ge(w: u64, k: u8) -> u64 {
    (w | HIGHS).wrapping_sub(ONES * u64::from(k)) & HIGHS
}

#[inline(always)]
fn in_range(w: u64, lo: u8, hi_inclusive: u8) -> u64 {
    ge(w, lo) & !ge(w, hi_inclusive + 1)
}

/// Lanes holding `[a-zA-Z0-9_]` (plus `:` when `colon`), as high bits.
#[inline(always)]
fn name_lanes(w: u64, colon: bool) -> u64 {
    let letters = in_range(w | (ONES * 0x20), b'a', b'z');
    let digits = in_range(w, b'0', if colon { b':' } else { b'9' });
    let under = in_range(w, b'_', b'_');
    (letters | digits | under) & !w & HIGHS
}

/// Skips name bytes (`[a-zA-Z0-9_]`, and `:` when `colon`) from `i`, eight at a time while eight
/// bytes remain: names end at unpredictable lengths, and a byte loop paid a mispredicted exit per
/// name, the largest cost of a sample line.
#[inline(always)]
fn skip_name(b: &[u8], mut i: usize, colon: bool) -> usize {
    while let Some(chunk) = b.get(i..i + 8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let other = !name_lanes(u64::from_le_bytes(word), colon) & HIGHS;
        if other != 0 {
            return i + (other.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    let class = if colon { is_md } else { is_ld };
    while class(at(b, i)) {
        i += 1;
    }
    i
}

/// A plain number `[+-]?digits[.digits]` (at most 15 digits) ending at a byte where `end` holds,
/// scanned and converted in one pass (see `float::parse_go_float` for why the division is exact).
/// `None` when the text is anything else; the caller then takes the general route.
#[inline(always)]
fn plain_number(b: &[u8], start: usize, end: impl Fn(u8) -> bool) -> Option<(f64, usize)> {
    const POW10: [f64; 16] = [
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
    ];
    let mut i = start;
    let neg = at(b, i) == b'-';
    if neg || at(b, i) == b'+' {
        i += 1;
    }
    let digits_start = i;
    let mut m: u64 = 0;
    loop {
        let d = at(b, i).wrapping_sub(b'0');
        if d > 9 {
            break;
        }
        m = m.wrapping_mul(10).wrapping_add(u64::from(d));
        i += 1;
    }
    let int_digits = i - digits_start;
    let mut frac_digits = 0;
    if at(b, i) == b'.' {
        i += 1;
        let f_start = i;
        loop {
            let d = at(b, i).wrapping_sub(b'0');
            if d > 9 {
                break;
            }
            m = m.wrapping_mul(10).wrapping_add(u64::from(d));
            i += 1;
        }
        frac_digits = i - f_start;
    }
    let n = int_digits + frac_digits;
    if n == 0 || n > 15 || !end(at(b, i)) {
        return None;
    }
    let v = m as f64 / POW10[frac_digits];
    Some((if neg { -v } else { v }, i))
}

/// Skips label-value bytes other than `"`, `\`, newline and NUL, eight at a time; ORs every byte
/// looked at into `high` (so non-ASCII is noticed). Returns the position of the first such byte
/// or of the last partial word, where the byte loop takes over.
#[inline(always)]
fn skip_plain_value_bytes(b: &[u8], mut i: usize, high: &mut u8) -> usize {
    while let Some(chunk) = b.get(i..i + 8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let w = u64::from_le_bytes(word);
        let stop = zero_bytes(w ^ (ONES * u64::from(b'"')))
            | zero_bytes(w ^ (ONES * u64::from(b'\\')))
            | zero_bytes(w ^ (ONES * u64::from(b'\n')))
            | zero_bytes(w);
        if w & HIGHS != 0 {
            *high |= 0x80;
        }
        if stop != 0 {
            return i + (stop.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    i
}

/// Reads `name` then, if present, a `{...}` label block with 0.0.4 (`trailing_comma`) or
/// OpenMetrics rules. Returns (name_end, series_end).
#[inline(always)]
fn series(b: &[u8], pos: usize, trailing_comma: bool) -> Option<(usize, usize)> {
    let mut i = pos;
    if !is_m(at(b, i)) {
        return None;
    }
    i = skip_name(b, i + 1, true);
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
        i = skip_name(b, i + 1, false);
        if at(b, i) != b'=' || at(b, i + 1) != b'"' {
            return None;
        }
        i += 2;
        i = skip_plain_value_bytes(b, i, &mut high);
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
    prom_value(b, name_end, series_end)
}

/// A 0.0.4 sample line starting at `pos` whose series text is exactly `known`, a series text the
/// parser accepted before (a scrape cache's prediction): the series is not lexed again, only
/// compared. Gives up unless whitespace follows the text and (for a text without labels) no `{`
/// comes after it, so the line's series is exactly `known`.
#[inline]
pub(super) fn prom_sample_known(b: &[u8], pos: usize, known: &[u8]) -> Option<FastSample> {
    let series_end = pos + known.len();
    if b.get(pos..series_end)? != known || !matches!(at(b, series_end), b' ' | b'\t') {
        return None;
    }
    let name_end = skip_name(b, pos, true);
    if name_end == series_end {
        let mut i = series_end;
        while matches!(at(b, i), b' ' | b'\t') {
            i += 1;
        }
        if at(b, i) == b'{' {
            return None;
        }
    } else if at(b, series_end - 1) != b'}' {
        return None;
    }
    prom_value(b, name_end, series_end)
}

/// The rest of a 0.0.4 sample line after its series text: value, optional timestamp, newline.
#[inline]
fn prom_value(b: &[u8], name_end: usize, series_end: usize) -> Option<FastSample> {
    let mut i = series_end;
    while matches!(at(b, i), b' ' | b'\t') {
        i += 1;
    }
    let value = match plain_number(b, i, |c| !is_pval(c)) {
        Some((v, end)) => {
            i = end;
            v
        }
        None => {
            let v_start = i;
            while is_pval(at(b, i)) {
                i += 1;
            }
            if i == v_start {
                return None;
            }
            parse_go_float(b.get(v_start..i)?).ok()?
        }
    };
    while matches!(at(b, i), b' ' | b'\t') {
        i += 1;
    }
    let mut timestamp_ms = None;
    if at(b, i).is_ascii_digit() {
        let t_start = i;
        let mut t: i64 = 0;
        while at(b, i).is_ascii_digit() {
            t = t.wrapping_mul(10).wrapping_add(i64::from(at(b, i) - b'0'));
            i += 1;
        }
        // Up to 18 digits cannot overflow; longer ones take the checked route.
        timestamp_ms = Some(if i - t_start <= 18 {
            t
        } else {
            parse_digits_i64(b.get(t_start..i)?)?
        });
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
    let value = match plain_number(b, i, |c| !is_oval(c)) {
        Some((v, end)) => {
            i = end;
            v
        }
        None => {
            let v_start = i;
            while is_oval(at(b, i)) {
                i += 1;
            }
            if i == v_start {
                return None;
            }
            parse_go_float(b.get(v_start..i)?).ok()?
        }
    };
    let mut timestamp_ms = None;
    if at(b, i) == b' ' {
        i += 1;
        let t_start = i;
        if at(b, i) == b'#' {
            return None;
        }
        let ts = match plain_number(b, i, |c| !is_oval(c)) {
            Some((v, end)) => {
                i = end;
                v
            }
            None => {
                while is_oval(at(b, i)) {
                    i += 1;
                }
                if i == t_start {
                    return None;
                }
                parse_go_float(b.get(t_start..i)?).ok()?
            }
        };
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
