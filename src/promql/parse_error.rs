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
            .any(|t| match parse(&format!("{prefix}{m}{closers}{t}")) {
                Ok(_) => true,
                // The completion is well formed but checks fail (types, arity, an empty
                // selector): the prefix itself is not where the syntax goes wrong.
                Err(e) => is_semantic(&e),
            })
    })
}

/// Whether `promql-parser`'s message is about types, argument counts or matchers rather than
/// syntax.
fn is_semantic(msg: &str) -> bool {
    const SEMANTIC: &[&str] = &[
        "expected type",
        "expected at least",
        "expected at most",
        "binary expression",
        "ranges only allowed",
        "subquery is only allowed",
        "bool modifier",
        "vector matching",
        "set operator",
        "no arguments for aggregate",
        "wrong number of arguments",
        "vector selector must contain",
        "@ modifier must be",
        "comparison operator",
    ];
    SEMANTIC.iter().any(|p| msg.starts_with(p))
        || (msg.starts_with("expected ") && msg.contains("argument(s) in call to"))
}

/// `line:column` (1-based, columns in characters) of byte offset `at`.
fn line_col(s: &str, at: usize) -> (usize, usize) {
    let before = &s[..at.min(s.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// Words of Prometheus 2.42's lexer, as its "unexpected" messages describe them (`Item.desc`):
/// operators spelled as words (`<op:and>`),
pub(crate) const OPERATOR_KEYWORDS: &[&str] = &["and", "or", "unless", "atan2"];
/// aggregation operators (`<aggr:sum>`),
pub(crate) const AGGREGATORS: &[&str] = &[
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
];
/// and the other keywords (`<by>`): the grouping modifiers, which the error contexts also need
/// on their own, and the rest.
const GROUPING_KEYWORDS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];
const OTHER_KEYWORDS: &[&str] = &["offset", "bool", "start", "end"];

/// Whether the lower-cased word `w` is one of the lexer's other keywords (`<by>`, `<offset>`...).
pub(crate) fn is_keyword(w: &str) -> bool {
    GROUPING_KEYWORDS.contains(&w) || OTHER_KEYWORDS.contains(&w)
}
/// Aggregations Prometheus 3 added (experimental there); they open an aggregation like the others
/// but 2.42's lexer, whose wording the messages follow, calls them identifiers.
const AGGREGATORS_3: &[&str] = &["limitk", "limit_ratio"];

/// Whether `word` opens an aggregation.
fn is_aggregator(word: &str) -> bool {
    let lower = word.to_ascii_lowercase();
    AGGREGATORS.contains(&lower.as_str()) || AGGREGATORS_3.contains(&lower.as_str())
}

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
    if OPERATOR_KEYWORDS.contains(&lower.as_str()) {
        format!("<op:{tok}>")
    } else if is_keyword(&lower) {
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

/// Where Prometheus' grammar was when it met the unexpected token after `before` (the tokens
/// before it), as its error messages say: ` in grouping opts, expected "("` and the like; empty
/// where no rule here knows.
fn context(input: &str, before: &[(usize, usize)]) -> String {
    let text = |t: &(usize, usize)| &input[t.0..t.1];
    let prev = before.last().map(text).unwrap_or("");
    let prev2 = before.len().checked_sub(2).map_or("", |i| text(&before[i]));
    let is_grouping = |w: &str| GROUPING_KEYWORDS.contains(&w.to_ascii_lowercase().as_str());
    if prev.eq_ignore_ascii_case("offset") || (prev == "-" && prev2.eq_ignore_ascii_case("offset"))
    {
        return " in offset, expected duration".into();
    }
    if is_grouping(prev)
        && !matches!(
            prev.to_ascii_lowercase().as_str(),
            "group_left" | "group_right"
        )
    {
        return " in grouping opts, expected \"(\"".into();
    }
    // The innermost bracket still open, and what stands before it.
    let mut depth = 0usize;
    let mut open = None;
    for (i, t) in before.iter().enumerate().rev() {
        match text(t) {
            ")" | "]" | "}" => depth += 1,
            "(" | "[" | "{" if depth > 0 => depth -= 1,
            "(" | "[" | "{" => {
                open = Some(i);
                break;
            }
            _ => {}
        }
    }
    let Some(o) = open else {
        return String::new();
    };
    let opener = text(&before[o]);
    let inside = &before[o + 1..];
    match opener {
        "[" => {
            if inside.iter().any(|t| text(t).contains(':')) {
                " in subquery selector, expected \"]\"".into()
            } else if inside.is_empty() {
                String::new()
            } else {
                " in subquery or range, expected \":\" or \"]\"".into()
            }
        }
        "{" => {
            let is_op = matches!(prev, "=" | "!=" | "=~" | "!~");
            if is_op {
                " in label matching, expected string".into()
            } else if !inside.is_empty() && prev != "," {
                " in label matching, expected label matching operator".into()
            } else {
                String::new()
            }
        }
        _ => {
            let name = o.checked_sub(1).map_or("", |i| text(&before[i]));
            if is_grouping(name) {
                if prev == "(" || prev == "," {
                    " in grouping opts, expected label".into()
                } else {
                    " in grouping opts, expected \",\" or \")\"".into()
                }
            } else if is_aggregator(name)
                || (name == ")" && aggregation_with_grouping(input, &before[..o]))
            {
                " in aggregation".into()
            } else {
                String::new()
            }
        }
    }
}

/// Top-level arguments of the call whose `(` is token `open`.
fn call_args(input: &str, toks: &[(usize, usize)], open: usize) -> usize {
    let mut depth = 0usize;
    let mut args = 0;
    let mut any = false;
    for t in &toks[open..] {
        match &input[t.0..t.1] {
            "(" | "[" | "{" => {
                depth += 1;
                if depth > 1 {
                    any = true;
                }
            }
            ")" | "]" | "}" => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    break;
                }
            }
            "," if depth == 1 => args += 1,
            _ => any = true,
        }
    }
    if any {
        args + 1
    } else {
        args
    }
}

/// Whether a `(` of `input` is still open at its end.
fn has_open_paren(input: &str, toks: &[(usize, usize)]) -> bool {
    let mut depth = 0i64;
    for t in toks {
        match &input[t.0..t.1] {
            "(" => depth += 1,
            ")" => depth -= 1,
            _ => {}
        }
    }
    depth > 0
}

/// Whether `before` ends with `<aggregator> by|without (labels)`.
fn aggregation_with_grouping(input: &str, before: &[(usize, usize)]) -> bool {
    let text = |t: &(usize, usize)| &input[t.0..t.1];
    let Some(open) = before.iter().rposition(|t| text(t) == "(") else {
        return false;
    };
    let kw = open.checked_sub(1).map(|i| text(&before[i]));
    let agg = open.checked_sub(2).map(|i| text(&before[i]));
    matches!(
        kw.map(str::to_ascii_lowercase).as_deref(),
        Some("by" | "without")
    ) && agg.is_some_and(is_aggregator)
}

/// The first name in single quotes in `promql-parser`'s message (`call to 'abs'`).
fn quoted_name(msg: &str) -> Option<&str> {
    let start = msg.find('\'')? + 1;
    let len = msg[start..].find('\'')?;
    Some(&msg[start..start + len])
}

/// `promql-parser`'s wording where it differs from Prometheus' for the same error: function names
/// in Go's double quotes, value types as Prometheus names them, and the lexer's messages.
fn prometheus_wording(msg: &str) -> String {
    let typed;
    let msg = if msg.starts_with("expected type") {
        typed = msg
            .replace("type vector", "type instant vector")
            .replace("type matrix", "type range vector")
            .replace("got vector", "got instant vector")
            .replace("got matrix", "got range vector");
        typed.as_str()
    } else if msg.starts_with("no arguments for aggregate expression") {
        "no arguments for aggregate expression provided"
    } else {
        msg
    };
    let relabelled;
    let msg = match msg.strip_prefix("unexpected '") {
        Some(rest) if rest.len() > 1 && rest.chars().nth(1) == Some('\'') => {
            let c = rest.chars().next().unwrap_or(' ');
            relabelled = format!(
                "unexpected {}{}",
                crate::gostr::quote(&c.to_string()),
                &rest[c.len_utf8() + 1..]
            );
            relabelled.as_str()
        }
        _ => msg,
    };
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
    // Lexer messages that Prometheus words as the parser's "unexpected <token>".
    let lexer_generic = msg.starts_with("unexpected character inside brackets")
        || msg == "unexpected left brace '{' inside braces";
    // "unclosed left parenthesis" at a token that is not the end: the parser stopped there.
    let stopped_early = msg == "unclosed left parenthesis" && at.is_some();
    let generic = msg == "invalid promql query" || lexer_generic || stopped_early;
    // Right after `[`, anything but a duration: Prometheus' lexer wants a unit.
    let after_bracket = at.is_some_and(|(st, _)| {
        toks.iter()
            .rposition(|t| t.0 < st)
            .is_some_and(|i| &input[toks[i].0..toks[i].1] == "[")
            && !input[st..].starts_with(|c: char| c.is_ascii_digit())
    });
    let msg = if after_bracket {
        "missing unit character in duration"
    } else {
        msg
    };
    let generic = generic && !after_bracket;
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
    // A call or aggregation whose checks failed, written out in full (so every prefix was
    // viable): Prometheus points at its name, or for a type error at its first argument. The
    // call is the one the message names, with as many arguments as it says it got.
    if at.is_none() && (whole_call || msg.starts_with("expected type")) {
        let name = quoted_name(msg);
        let got: Option<usize> = msg
            .rsplit("got ")
            .next()
            .and_then(|n| n.trim().parse().ok());
        let calls: Vec<usize> = (0..toks.len().saturating_sub(1))
            .filter(|&i| {
                let t = &input[toks[i].0..toks[i].1];
                &input[toks[i + 1].0..toks[i + 1].1] == "("
                    && match name {
                        Some(n) => t.eq_ignore_ascii_case(n),
                        None => is_aggregator(t),
                    }
            })
            .collect();
        let pick = calls
            .iter()
            .rev()
            .find(|&&i| got.is_none_or(|n| call_args(input, &toks, i + 1) == n))
            .or(calls.last());
        if let Some(&i) = pick {
            at = Some(toks[i]);
            if msg.starts_with("expected type") {
                at = toks.get(i + 2).copied().or(at);
            }
        }
    }
    if at.is_none() && msg.starts_with("vector selector must contain") {
        if let Some(b) = toks.iter().position(|t| &input[t.0..t.1] == "{") {
            let named = b > 0 && toks[b - 1].1 == toks[b].0;
            at = Some(toks[if named { b - 1 } else { b }]);
        }
    }
    // The lexer reports a `)` without its `(` after consuming it; and a trailing comma at the
    // comma before the missing argument.
    let mut shift = 0;
    let mut msg = msg;
    let mut generic = generic;
    // A `)` with no `(` open is the lexer's error, whatever the parser was in.
    if let Some((st, en)) = at {
        if &input[st..en] == ")" {
            let open = has_open_paren(
                input,
                &toks
                    .iter()
                    .copied()
                    .filter(|t| t.0 < st)
                    .collect::<Vec<_>>(),
            );
            if !open {
                msg = "unexpected right parenthesis ')'";
                generic = false;
            }
        }
    }
    if msg.starts_with("unexpected right parenthesis") {
        shift = 1;
    }
    if msg.starts_with("trailing commas not allowed") {
        if let Some((st, _)) = at {
            if let Some(&c) = toks
                .iter()
                .rev()
                .find(|t| t.0 < st && &input[t.0..t.1] == ",")
            {
                at = Some(c);
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
            let c = c + shift;
            if msg == "unexpected right brace '}'" {
                format!("{l}:{c}: parse error: unexpected character: '}}'")
            } else if msg == "unexpected left brace '{' inside braces" {
                format!("{l}:{c}: parse error: unexpected left brace '{{'")
            } else if generic {
                let k = toks.iter().position(|t| t.0 == st).unwrap_or(toks.len());
                format!(
                    "{l}:{c}: parse error: unexpected {}{}",
                    token_desc(&input[st..en]),
                    context(input, &toks[..k])
                )
            } else {
                format!("{l}:{c}: parse error: {}", prometheus_wording(msg))
            }
        }
        None => {
            let (l, c) = line_col(input, input.len());
            // The end inside `[`: the open parenthesis is reported first, and an empty bracket
            // lacks its duration.
            let msg = if msg == "unexpected end of input inside brackets" {
                if toks.last().is_some_and(|t| &input[t.0..t.1] == "[") {
                    "missing unit character in duration"
                } else if has_open_paren(input, &toks) {
                    "unclosed left parenthesis"
                } else {
                    msg
                }
            } else {
                msg
            };
            if generic {
                format!(
                    "{l}:{c}: parse error: unexpected end of input{}",
                    context(input, &toks)
                )
            } else {
                format!("{l}:{c}: parse error: {}", prometheus_wording(msg))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every truncation and every one-token deletion of some awkward expressions gets a message
    /// (no panic on any slicing of the error path) with a position inside the input.
    #[test]
    fn mutations_never_panic() {
        let exprs = [
            r#"sum by (job) (rate(x{a=~"b|c", d!="é"}[5m] offset -1m @ start())) > bool 1"#,
            r#"histogram_quantile(0.9, sum without (i) (rate(h_bucket[5m:30s])))"#,
            r#"label_replace(up, "a", "$1", "b", "(.*)") or on (a) group_left (b) vector(1)"#,
            r#"topk(3, x) + ignoring (a) -y ^ 2 unless {__name__=~"x.+"}"#,
            r#"count_values("v", x) / 'unterminated"#,
        ];
        for e in exprs {
            let toks = tokens(e);
            let mut inputs: Vec<String> = toks.iter().map(|t| e[..t.0].to_string()).collect();
            for t in &toks {
                inputs.push(format!("{}{}", &e[..t.0], &e[t.1..]));
                inputs.push(format!("{}{}", &e[..t.1], &e[t.0..]));
            }
            for i in inputs {
                if let Err(m) = super::super::parse_expr(&i) {
                    let (pos, _) = m.split_once(": parse error: ").expect(&m);
                    let (l, c) = pos.split_once(':').unwrap();
                    assert_eq!(l, "1", "{i}: {m}");
                    assert!(
                        c.parse::<usize>().unwrap() <= i.chars().count() + 2,
                        "{i}: {m}"
                    );
                }
            }
        }
    }

    #[test]
    fn positions() {
        assert_eq!(
            describe("sum by (a b) (x)", "invalid promql query"),
            "1:11: parse error: unexpected identifier \"b\" in grouping opts, expected \",\" or \")\""
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
