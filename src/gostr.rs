//! Go's quoting of strings and runes (`strconv.Quote`, `%q`, `%.Nq`), for the messages that must
//! read as Prometheus words them: API errors, PromQL annotations, parse errors of the series
//! notation, template errors and `printf "%q"`. One implementation for every layer, in the core
//! so that the storage-free layers (promql) and the server's (web, rules) print alike.
//!
//! Go escapes what `unicode.IsPrint` rejects; here that is approximated by `char::is_control`
//! (the C0 and C1 controls and DEL), which covers every character a label value or an
//! expression realistically holds.

use std::fmt::Write;

/// Go's `strconv.Quote(s)` (`%q` of a string).
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        push_escaped(&mut out, c, '"');
    }
    out.push('"');
    out
}

/// Go's `%.Nq`: the first `n` characters quoted, then `...` when there were more (Prometheus'
/// `Item.String` for long tokens uses N = 10).
pub fn quote_trunc(s: &str, n: usize) -> String {
    if s.chars().count() > n {
        let head: String = s.chars().take(n).collect();
        format!("{}...", quote(&head))
    } else {
        quote(s)
    }
}

/// Go's `strconv.QuoteRune(c)` (`%q` of a rune).
pub fn quote_rune(c: char) -> String {
    let mut out = String::from("'");
    push_escaped(&mut out, c, '\'');
    out.push('\'');
    out
}

fn push_escaped(out: &mut String, c: char, quote: char) {
    match c {
        '\\' => out.push_str("\\\\"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\x07' => out.push_str("\\a"),
        '\x08' => out.push_str("\\b"),
        '\x0c' => out.push_str("\\f"),
        '\x0b' => out.push_str("\\v"),
        c if c == quote => {
            out.push('\\');
            out.push(c);
        }
        c if (c as u32) < 0x20 || c == '\x7f' => {
            let _ = write!(out, "\\x{:02x}", c as u32);
        }
        c if c.is_control() => {
            if (c as u32) < 0x10000 {
                let _ = write!(out, "\\u{:04x}", c as u32);
            } else {
                let _ = write!(out, "\\U{:08x}", c as u32);
            }
        }
        c => out.push(c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_as_go() {
        assert_eq!(quote("a\"b\n\x01"), r#""a\"b\n\x01""#);
        assert_eq!(quote("tab\there\\"), r#""tab\there\\""#);
        assert_eq!(quote("\u{85}é'"), r#""\u0085é'""#);
        assert_eq!(quote_rune('\''), r"'\''");
        assert_eq!(quote_rune('"'), "'\"'");
        assert_eq!(quote_rune('\x7f'), r"'\x7f'");
        assert_eq!(quote_trunc("abcdefghijkl", 10), r#""abcdefghij"..."#);
        assert_eq!(quote_trunc("short", 10), r#""short""#);
    }
}
