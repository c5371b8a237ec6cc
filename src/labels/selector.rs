//! Series selectors in PromQL syntax: `metric`, `metric{a="b", c=~"x|y"}`, `{__name__=~"m.*"}`.
//!
//! The selector grammar of PromQL (string literals in double, single or back quotes, Go escapes in the
//! first two), for the places that take a series selector rather than an expression: the HTTP API's
//! `match[]` and `match_target`, `tsdbctl`'s `--match`, deletion. Like Prometheus, a selector must
//! contain at least one matcher that does not match the empty string. (The web layer words its errors
//! as the PromQL parser does; see `server::web::api`.)

use super::{MatchType, Matcher, METRIC_NAME};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("selector column {column}: {message}")]
pub struct SelectorError {
    /// 1-based column (in characters) where the problem is.
    pub column: usize,
    pub message: String,
}

struct Lexer<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Lexer<'a> {
    fn err<T>(&self, message: impl Into<String>) -> Result<T, SelectorError> {
        Err(SelectorError {
            column: self.s[..self.pos].chars().count() + 1,
            message: message.into(),
        })
    }

    fn skip_ws(&mut self) {
        while let Some(c) = self.peek() {
            if c.is_whitespace() {
                self.pos += c.len_utf8();
            } else {
                break;
            }
        }
    }

    fn peek(&self) -> Option<char> {
        self.s[self.pos..].chars().next()
    }

    fn eat(&mut self, t: &str) -> bool {
        if self.s[self.pos..].starts_with(t) {
            self.pos += t.len();
            true
        } else {
            false
        }
    }

    fn ident(&mut self, metric: bool) -> Option<&'a str> {
        let start = self.pos;
        for (i, c) in self.s[start..].char_indices() {
            let ok = c == '_'
                || c.is_ascii_alphabetic()
                || (i > 0 && c.is_ascii_digit())
                || (metric && c == ':');
            if !ok {
                self.pos = start + i;
                return (i > 0).then(|| &self.s[start..start + i]);
            }
        }
        self.pos = self.s.len();
        (self.pos > start).then(|| &self.s[start..])
    }

    fn string(&mut self) -> Result<String, SelectorError> {
        let Some(q) = self.peek() else {
            return self.err("expected a quoted string, got end of input");
        };
        if q != '"' && q != '\'' && q != '`' {
            return self.err(format!("expected a quoted string, got {q:?}"));
        }
        self.pos += 1;
        let mut out = String::new();
        loop {
            let Some(c) = self.peek() else {
                return self.err("unterminated string");
            };
            self.pos += c.len_utf8();
            if c == q {
                return Ok(out);
            }
            if c == '\\' && q != '`' {
                let Some(e) = self.peek() else {
                    return self.err("unterminated escape");
                };
                self.pos += e.len_utf8();
                match e {
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    'r' => out.push('\r'),
                    'a' => out.push('\x07'),
                    'b' => out.push('\x08'),
                    'f' => out.push('\x0c'),
                    'v' => out.push('\x0b'),
                    '\\' | '"' | '\'' => out.push(e),
                    'x' | 'u' | 'U' => {
                        let n = match e {
                            'x' => 2,
                            'u' => 4,
                            _ => 8,
                        };
                        let hex = self.s.get(self.pos..self.pos + n).unwrap_or("");
                        let Some(ch) = u32::from_str_radix(hex, 16).ok().and_then(char::from_u32)
                        else {
                            return self.err(format!("invalid \\{e} escape"));
                        };
                        self.pos += n;
                        out.push(ch);
                    }
                    other => return self.err(format!("unknown escape \\{other}")),
                }
            } else {
                out.push(c);
            }
        }
    }
}

/// Parses a series selector into matchers.
///
/// ```
/// use tsdb::labels::parse_selector;
/// let m = parse_selector(r#"http_requests_total{code=~"5..", method!="GET"}"#).unwrap();
/// assert_eq!(m.len(), 3);
/// assert!(parse_selector(r#"{a=""}"#).is_err()); // matches everything: refused, as in Prometheus
/// ```
pub fn parse_selector(input: &str) -> Result<Vec<Matcher>, SelectorError> {
    let mut lx = Lexer { s: input, pos: 0 };
    let mut out = Vec::new();
    lx.skip_ws();
    if let Some(name) = lx.ident(true) {
        out.push(Matcher::equal(METRIC_NAME, name));
    }
    lx.skip_ws();
    if lx.eat("{") {
        loop {
            lx.skip_ws();
            if lx.eat("}") {
                break;
            }
            let Some(name) = lx.ident(false) else {
                return lx.err("expected a label name");
            };
            lx.skip_ws();
            let kind = if lx.eat("=~") {
                MatchType::Regexp
            } else if lx.eat("!~") {
                MatchType::NotRegexp
            } else if lx.eat("!=") {
                MatchType::NotEqual
            } else if lx.eat("=") {
                MatchType::Equal
            } else {
                return lx.err("expected one of =, !=, =~, !~");
            };
            lx.skip_ws();
            let col = lx.pos;
            let value = lx.string()?;
            let m = Matcher::new(kind, name, value).map_err(|e| SelectorError {
                column: input[..col].chars().count() + 1,
                message: e.to_string(),
            })?;
            out.push(m);
            lx.skip_ws();
            if lx.eat(",") {
                continue;
            }
            if lx.eat("}") {
                break;
            }
            return lx.err("expected , or }");
        }
    }
    lx.skip_ws();
    if lx.pos != input.len() {
        return lx.err("unexpected input after the selector (a series selector was expected)");
    }
    if out.is_empty() {
        return lx.err("expected a metric name or {");
    }
    if out.iter().all(|m| m.matches_empty()) {
        return Err(SelectorError {
            column: 1,
            message: "vector selector must contain at least one non-empty matcher".into(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_selectors() {
        let m = parse_selector(r#" up { job = "a\"b", x=~'y.*' ,} "#).unwrap();
        assert_eq!(m.len(), 3);
        assert_eq!(m[0], Matcher::equal("__name__", "up"));
        assert_eq!(m[1], Matcher::equal("job", "a\"b"));
        assert_eq!(m[2].kind, MatchType::Regexp);
        assert_eq!(parse_selector("a:b_c").unwrap().len(), 1);
        assert_eq!(parse_selector(r#"{__name__="x"}"#).unwrap().len(), 1);
    }

    #[test]
    fn errors_have_columns() {
        assert_eq!(parse_selector("up{job}").unwrap_err().column, 7);
        assert_eq!(parse_selector(r#"up{job="x""#).unwrap_err().column, 11);
        assert!(parse_selector("rate(up[1m])").is_err());
        assert!(parse_selector(r#"{job=~".*"}"#).is_err());
        assert!(parse_selector(r#"up{a=~"("}"#).is_err());
    }
}
