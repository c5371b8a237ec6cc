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

/// PromQL's keywords: Prometheus' lexer describes them as `<word>` in "unexpected" messages.
const KEYWORDS: &[&str] = &[
    "and",
    "or",
    "unless",
    "atan2",
    "offset",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "start",
    "end",
];
/// Aggregation operators: `<aggr:sum>`.
const AGGREGATORS: &[&str] = &[
    "sum",
    "avg",
    "count",
    "min",
    "max",
    "group",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "count_values",
    "quantile",
    "limitk",
    "limit_ratio",
];
/// Binary and matching operators: `<op:+>`.
const OPERATORS: &[&str] = &[
    "+", "-", "*", "/", "%", "^", "==", "!=", ">", "<", ">=", "<=", "=", "=~", "!~", "@",
];

/// A token as Prometheus' parser names it after "unexpected": `identifier "foo"`,
/// `metric identifier "a:b"`, `number "5"`, `duration "5m"`, `string "\"x\""`, `<by>`,
/// `<aggr:sum>`, `<op:+>`, or the quoted text of punctuation (`")"`).
fn token_desc(tok: &str) -> String {
    let lower = tok.to_ascii_lowercase();
    // Go's `%.10q...` for the text of tokens other than names, keywords and operators.
    let quoted = if tok.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_' || c == ':') {
        crate::gostr::quote(tok)
    } else {
        crate::gostr::quote_trunc(tok, 10)
    };
    let first = tok.chars().next().unwrap_or(' ');
    if KEYWORDS.contains(&lower.as_str()) {
        format!("<{tok}>")
    } else if AGGREGATORS.contains(&lower.as_str()) {
        format!("<aggr:{tok}>")
    } else if OPERATORS.contains(&tok) {
        format!("<op:{tok}>")
    } else if matches!(first, '"' | '\'' | '`') {
        format!("string {quoted}")
    } else if first.is_ascii_digit() || first == '.' {
        let is_duration = tok.ends_with(['s', 'm', 'h', 'd', 'w', 'y']) && !lower.starts_with("0x");
        let is_number = tok.parse::<f64>().is_ok() || lower.starts_with("0x");
        if is_duration && !is_number {
            format!("duration {quoted}")
        } else {
            format!("number {quoted}")
        }
    } else if first.is_ascii_alphabetic() || first == '_' || first == ':' {
        let lowers = ["inf", "nan"];
        if lowers.contains(&lower.as_str()) {
            format!("number {quoted}")
        } else if tok.contains(':') {
            format!("metric identifier {quoted}")
        } else {
            format!("identifier {quoted}")
        }
    } else {
        quoted
    }
}

/// `promql-parser`'s wording where it differs from Prometheus' for the same error: function names
/// in Go's double quotes, and the lexer's messages.
fn prometheus_wording(msg: &str) -> String {
    let msg = match msg {
        "unexpected end of input inside brackets" => "unclosed left bracket",
        m if m.starts_with("unterminated quoted string") => "unterminated quoted string",
        m => m,
    };
    // `call to 'abs'`, `with name 'nofunc'`: Go's %q.
    let mut out = String::with_capacity(msg.len());
    let mut rest = msg;
    while let Some(open) = rest.find(" '") {
        let after = &rest[open + 2..];
        match after.find('\'') {
            Some(close)
                if !after[..close].is_empty()
                    && after[..close]
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') =>
            {
                out.push_str(&rest[..open + 1]);
                out.push('"');
                out.push_str(&after[..close]);
                out.push('"');
                rest = &after[close + 1..];
            }
            _ => {
                out.push_str(&rest[..open + 2]);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Prometheus-style message: `line:col: parse error: what`, with "unexpected <token>" where the
/// parser said nothing more useful. The column is that of the first token after which the input
/// cannot be completed; Prometheus places errors about a whole node (a function's arity, an
/// empty selector) at the node's start instead, so those columns can differ, and its context
/// suffixes ("in grouping opts, expected \"(\"") are not reproduced.
pub(crate) fn describe(input: &str, msg: &str) -> String {
    let toks = tokens(input);
    let mut at = None;
    for (k, &(st, en)) in toks.iter().enumerate() {
        if !viable(&input[..en], &toks[..=k]) {
            at = Some((st, en));
            break;
        }
    }
    let generic = msg == "invalid promql query";
    // Errors about a whole call or aggregation name the node's start, as Prometheus does: the
    // name before the innermost parenthesis still open at the failing token.
    let whole_call = [
        "in call to",
        "unknown function with name",
        "aggregate expression",
    ]
    .iter()
    .any(|m| msg.contains(m));
    if let (true, Some((st, _))) = (whole_call, at) {
        let mut depth = 0usize;
        let before: Vec<&(usize, usize)> = toks.iter().take_while(|t| t.0 <= st).collect();
        for (k, &&(ts, te)) in before.iter().enumerate().rev() {
            match &input[ts..te] {
                ")" => depth += 1,
                "(" if depth > 0 => depth -= 1,
                "(" => {
                    if let Some(&&(ns, ne)) = k.checked_sub(1).and_then(|j| before.get(j)) {
                        at = Some((ns, ne));
                    }
                    break;
                }
                _ => {}
            }
        }
    }
    if msg.starts_with("unterminated quoted string") {
        if let Some(&t) = toks
            .iter()
            .rev()
            .find(|&&(ts, _)| matches!(input.as_bytes().get(ts), Some(b'"' | b'\'' | b'`')))
        {
            at = Some(t);
        }
    }
    match at {
        Some((st, en)) => {
            let (l, c) = line_col(input, st);
            if generic {
                format!(
                    "{l}:{c}: parse error: unexpected {}",
                    token_desc(&input[st..en])
                )
            } else {
                format!("{l}:{c}: parse error: {}", prometheus_wording(msg))
            }
        }
        None => {
            let (l, c) = line_col(input, input.len());
            if generic {
                format!("{l}:{c}: parse error: unexpected end of input")
            } else {
                format!("{l}:{c}: parse error: {}", prometheus_wording(msg))
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
            "1:11: parse error: unexpected identifier \"b\""
        );
        assert_eq!(
            describe("foo bar", "invalid promql query"),
            "1:5: parse error: unexpected identifier \"bar\""
        );
        assert_eq!(
            describe("1 +", "invalid promql query"),
            "1:4: parse error: unexpected end of input"
        );
        assert_eq!(
            describe(
                "abs(x) + abs(x, y)",
                "expected 1 argument(s) in call to 'abs', got 2"
            ),
            "1:10: parse error: expected 1 argument(s) in call to \"abs\", got 2"
        );
        assert_eq!(
            describe(
                "x offset 5m == 'abcdefghijklmnop",
                "unterminated quoted string '"
            ),
            "1:16: parse error: unterminated quoted string"
        );
        assert_eq!(
            describe("x \"abcdefghijklmn\"", "invalid promql query"),
            "1:3: parse error: unexpected string \"\\\"abcdefghi\"..."
        );
        assert_eq!(
            describe("x by", "invalid promql query"),
            "1:3: parse error: unexpected <by>"
        );
        assert_eq!(
            describe("x sum", "invalid promql query"),
            "1:3: parse error: unexpected <aggr:sum>"
        );
        assert_eq!(
            describe("x 1.5e3 5m a:b", "invalid promql query"),
            "1:3: parse error: unexpected number \"1.5e3\""
        );
        assert_eq!(
            describe("sum(rate(x[5m])", "unclosed left parenthesis"),
            "1:16: parse error: unclosed left parenthesis"
        );
    }
}
