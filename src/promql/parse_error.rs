//! Positions for parse errors. `promql-parser` 0.11.1 drops its parser's error spans and often
//! says only "invalid promql query", so the position is found here: the first token after which
//! no completion from a small set makes the input parse is where the query goes wrong. This runs
//! only on the error path and queries are short.

use promql_parser::parser::{self, Expr};

/// `promql-parser`'s `parse`, with its panics turned into errors: 0.11.1 converts a number used as
/// a duration with `Duration::from_secs_f64`, which panics on negative, NaN or huge values
/// (`x offset Inf`, `x[1e300]`).
pub(crate) fn parse(input: &str) -> Result<Expr, String> {
    std::panic::catch_unwind(|| parser::parse(input))
        .unwrap_or_else(|_| Err("invalid duration (negative, not a number, or too large)".into()))
}

/// What may stand before the closing brackets of a prefix, and after them.
const MIDDLES: &[&str] = &[
    "", " 1", "1", "x", " x", " (x)", "1m", " 1m", "x[1m]", "=\"\"", "\"\"", "\"", "x=\"\"",
];
const TAILS: &[&str] = &["", " (x)", "(x)", " x", " 1"];

/// Byte spans of the tokens of `s`: words (names, numbers, durations), quoted strings, and
/// operators (two-character ones kept together).
pub(crate) fn tokens(s: &str) -> Vec<(usize, usize)> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        if c == b'#' {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        if c == b'"' || c == b'\'' || c == b'`' {
            i += 1;
            while i < b.len() && b[i] != c {
                if b[i] == b'\\' && c != b'`' {
                    i += 1;
                }
                i += 1;
            }
            i = (i + 1).min(b.len());
        } else if c.is_ascii_alphanumeric() || c == b'_' || c == b':' || c == b'.' {
            while i < b.len()
                && (b[i].is_ascii_alphanumeric() || matches!(b[i], b'_' | b':' | b'.'))
            {
                i += 1;
            }
        } else {
            let two = s.get(i..i + 2).unwrap_or("");
            i += if matches!(two, "==" | "!=" | "=~" | "!~" | ">=" | "<=") {
                2
            } else {
                s[i..].chars().next().map_or(1, |ch| ch.len_utf8())
            };
        }
        out.push((start, i));
    }
    out
}

fn viable(prefix: &str, toks: &[(usize, usize)]) -> bool {
    // Close what the prefix left open, innermost first.
    let mut stack = Vec::new();
    for &(st, en) in toks {
        match &prefix[st..en] {
            "(" | "[" | "{" => stack.push(&prefix[st..en]),
            ")" | "]" | "}" => {
                stack.pop();
            }
            _ => {}
        }
    }
    let closers: String = stack
        .iter()
        .rev()
        .map(|o| match *o {
            "(" => ')',
            "[" => ']',
            _ => '}',
        })
        .collect();
    MIDDLES.iter().any(|m| {
        TAILS
            .iter()
            .any(|t| parse(&format!("{prefix}{m}{closers}{t}")).is_ok())
    })
}

/// `line:column` (1-based, columns in characters) of byte offset `at`.
fn line_col(s: &str, at: usize) -> (usize, usize) {
    let before = &s[..at.min(s.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// Prometheus-style message: `line:col: parse error: what`, with "unexpected <token>" where the
/// parser said nothing more useful.
pub(crate) fn describe(input: &str, msg: &str) -> String {
    let toks = tokens(input);
    let mut at = None;
    for (k, &(st, en)) in toks.iter().enumerate() {
        if !viable(&input[..en], &toks[..=k]) {
            at = Some((st, en));
            break;
        }
    }
    match at {
        Some((st, en)) => {
            let (l, c) = line_col(input, st);
            let tok = &input[st..en];
            if msg == "invalid promql query" {
                format!("{l}:{c}: parse error: unexpected {tok:?}")
            } else {
                format!("{l}:{c}: parse error: {msg} (at {tok:?})")
            }
        }
        None => {
            let (l, c) = line_col(input, input.len());
            if msg == "invalid promql query" {
                format!("{l}:{c}: parse error: unexpected end of input")
            } else {
                format!("{l}:{c}: parse error: {msg}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions() {
        assert_eq!(
            describe("sum by (a b) (x)", "invalid promql query"),
            "1:11: parse error: unexpected \"b\""
        );
        assert_eq!(
            describe("foo bar", "invalid promql query"),
            "1:5: parse error: unexpected \"bar\""
        );
        assert_eq!(
            describe("1 +", "invalid promql query"),
            "1:4: parse error: unexpected end of input"
        );
        assert_eq!(
            describe("sum(rate(x[5m])", "unclosed left parenthesis"),
            "1:16: parse error: unclosed left parenthesis"
        );
    }
}
