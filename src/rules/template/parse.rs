//! Lexer and parser of Go's `text/template` syntax (Go's `text/template/parse`): text and
//! `{{ }}` actions with `{{-`/`-}}` trim markers and comments, pipelines, variables
//! (`:=`/`=`), fields, parenthesized pipelines, literals, `if`/`else if`/`else`, `range`
//! (with `else`, `break`, `continue`), `with`, `define`/`template`/`block`. Errors carry the
//! template name and line as Go's do (`template: NAME:LINE: message`).

use std::collections::HashMap;

/// Nesting deeper than this (parentheses, control structures) is refused: recursion in the
/// parser and executor must stay far from the stack's end on a 2 MiB tokio worker thread.
/// Go's limit is 10000; real templates nest a handful of levels.
pub const MAX_DEPTH: usize = 100;

#[derive(Clone, Debug, PartialEq)]
pub enum Arg {
    /// `.` (possibly followed by fields: `.Labels.job` is `Field`).
    Dot,
    /// `.A.B` on dot.
    Field(Vec<String>),
    /// `$x.A.B` (`$` alone is the data root).
    Var(String, Vec<String>),
    /// A function name.
    Ident(String),
    /// `(pipeline).A.B`.
    Pipe(Box<Pipe>, Vec<String>),
    Str(String),
    Int(i64, String),
    Float(f64, String),
    Bool(bool),
    Nil,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Cmd {
    /// Byte offset of the command in the template text (for exec errors).
    pub pos: usize,
    pub args: Vec<Arg>,
    /// Where each argument is, as Go places its node: a chain of fields (`$x.a.b`,
    /// `.a.b`) sits at its first chained field.
    pub arg_pos: Vec<usize>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Pipe {
    pub pos: usize,
    /// Declared or assigned variables (`$x :=`, `$i, $e :=`).
    pub decl: Vec<String>,
    pub is_assign: bool,
    pub cmds: Vec<Cmd>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Node {
    Text(String),
    Action(Pipe),
    If(Pipe, Vec<Node>, Option<Vec<Node>>),
    Range(Pipe, Vec<Node>, Option<Vec<Node>>),
    With(Pipe, Vec<Node>, Option<Vec<Node>>),
    Template(usize, String, Option<Pipe>),
    Break(usize),
    Continue(usize),
}

/// A parsed template: the main body and the `define`d templates.
#[derive(Clone, Debug, Default)]
pub struct Tree {
    pub root: Vec<Node>,
    pub defines: HashMap<String, Vec<Node>>,
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Text(String),
    /// `{{` (the trim marker is handled by the lexer).
    Left,
    Right,
    Space,
    Ident(String),
    Keyword(&'static str),
    Field(String),
    Var(String),
    Dot,
    Str(String),
    Char(i64, String),
    Number(String),
    Bool(bool),
    Nil,
    Declare,
    Assign,
    Pipe,
    LParen,
    RParen,
    Comma,
    Eof,
    /// A lexical error (always the last token).
    Error(String),
}

impl Tok {
    fn describe(&self) -> String {
        match self {
            Tok::Eof => "EOF".into(),
            Tok::Error(m) => m.clone(),
            Tok::Keyword(k) => format!("<{k}>"),
            Tok::Left => "\"{{\"".into(),
            Tok::Right => "\"}}\"".into(),
            Tok::Space => "space".into(),
            Tok::Ident(s) | Tok::Number(s) => super::gofmt::quote(s),
            Tok::Field(s) => super::gofmt::quote(&format!(".{s}")),
            Tok::Var(s) => super::gofmt::quote(s),
            // Go lists `.` and `nil` among its keywords: they print as <.> and <nil>.
            Tok::Dot => "<.>".into(),
            Tok::Str(s) => super::gofmt::quote(&super::gofmt::quote(s)),
            Tok::Char(_, s) => super::gofmt::quote(s),
            Tok::Bool(b) => format!("\"{b}\""),
            Tok::Nil => "<nil>".into(),
            Tok::Declare => "\":=\"".into(),
            Tok::Assign => "\"=\"".into(),
            Tok::Pipe => "\"|\"".into(),
            Tok::LParen => "\"(\"".into(),
            Tok::RParen => "\")\"".into(),
            Tok::Comma => "\",\"".into(),
            Tok::Text(t) => {
                let q = super::gofmt::quote(t);
                if q.chars().count() > 10 {
                    format!("{}...", q.chars().take(10).collect::<String>())
                } else {
                    q
                }
            }
        }
    }
}

const KEYWORDS: &[&str] = &[
    "block", "break", "continue", "define", "else", "end", "if", "range", "template", "with",
];

/// A parse or lex error: byte offset and message (the caller adds name and line).
#[derive(Debug)]
pub struct SyntaxError {
    pub pos: usize,
    pub msg: String,
}

fn err<T>(pos: usize, msg: impl Into<String>) -> Result<T, SyntaxError> {
    Err(SyntaxError {
        pos,
        msg: msg.into(),
    })
}

fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_alnum(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

/// Go's lexer, run to completion (templates are small). A lexical error ends the tokens with
/// `Tok::Error`: as with Go's lazy lexer, a parse error met before it wins.
fn lex(src: &str) -> Vec<(usize, Tok)> {
    let mut toks = Vec::new();
    if let Err(e) = lex_into(src, &mut toks) {
        toks.push((e.pos, Tok::Error(e.msg)));
    }
    toks
}

fn lex_into(src: &str, toks: &mut Vec<(usize, Tok)>) -> Result<(), SyntaxError> {
    let b = src.as_bytes();
    let mut i = 0;
    while i < b.len() {
        // Text up to the next "{{".
        let start = i;
        let next = src[i..].find("{{").map_or(b.len(), |n| i + n);
        let mut text_end = next;
        let mut trim_left = false;
        if next < b.len()
            && b.get(next + 2) == Some(&b'-')
            && b.get(next + 3).is_some_and(|&c| is_space(c))
        {
            trim_left = true;
            while text_end > start && is_space(b[text_end - 1]) {
                text_end -= 1;
            }
        }
        if text_end > start {
            toks.push((start, Tok::Text(src[start..text_end].to_string())));
        }
        if next >= b.len() {
            break;
        }
        i = next + 2;
        if trim_left {
            i += 2;
        }
        // Comment.
        if src[i..].starts_with("/*") {
            let Some(end) = src[i + 2..].find("*/") else {
                return err(next, "unclosed comment");
            };
            i = i + 2 + end + 2;
            let rest = &src[i..];
            let trim_right = rest.len() >= 4 && is_space(b[i]) && rest[1..].starts_with("-}}");
            if trim_right {
                i += 4;
            } else if rest.starts_with("}}") {
                i += 2;
            } else {
                return err(next, "comment ends before closing delimiter");
            }
            if trim_right {
                while i < b.len() && is_space(b[i]) {
                    i += 1;
                }
            }
            continue;
        }
        toks.push((next, Tok::Left));
        i = lex_action(src, i, toks)?;
    }
    toks.push((src.len(), Tok::Eof));
    Ok(())
}

/// Lexes inside an action from `i`; returns the offset after the closing delimiter (and any
/// whitespace a right trim marker removes).
fn lex_action(src: &str, mut i: usize, toks: &mut Vec<(usize, Tok)>) -> Result<usize, SyntaxError> {
    let b = src.as_bytes();
    let mut parens = 0usize;
    loop {
        let rest = &src[i..];
        if rest.is_empty() {
            return err(i, "unclosed action");
        }
        // Right delimiter, possibly with trim marker.
        if is_space(b[i]) && rest[1..].starts_with("-}}") {
            if parens > 0 {
                return err(i, "unclosed left paren");
            }
            toks.push((i, Tok::Right));
            i += 4;
            while i < b.len() && is_space(b[i]) {
                i += 1;
            }
            return Ok(i);
        }
        if rest.starts_with("}}") {
            if parens > 0 {
                return err(i, "unclosed left paren");
            }
            toks.push((i, Tok::Right));
            return Ok(i + 2);
        }
        let c = rest.chars().next().unwrap_or(' ');
        match c {
            ' ' | '\t' | '\r' | '\n' => {
                let start = i;
                // Stops before a space that starts a ` -}}` trim marker.
                while i < b.len() && is_space(b[i]) && !src[i + 1..].starts_with("-}}") {
                    i += 1;
                }
                toks.push((start, Tok::Space));
                if i == start {
                    return err(i, "unclosed action");
                }
            }
            '=' => {
                toks.push((i, Tok::Assign));
                i += 1;
            }
            ':' => {
                if rest.starts_with(":=") {
                    toks.push((i, Tok::Declare));
                    i += 2;
                } else {
                    return err(i, "expected :=");
                }
            }
            '|' => {
                toks.push((i, Tok::Pipe));
                i += 1;
            }
            ',' => {
                toks.push((i, Tok::Comma));
                i += 1;
            }
            '(' => {
                parens += 1;
                if parens > MAX_DEPTH {
                    return err(i, "max parenthesis depth exceeded");
                }
                toks.push((i, Tok::LParen));
                i += 1;
            }
            ')' => {
                // Go emits the paren before the error, so a parse error may come first.
                toks.push((i, Tok::RParen));
                if parens == 0 {
                    return err(i, "unexpected right paren U+0029 ')'");
                }
                parens -= 1;
                i += 1;
            }
            '"' => {
                let (s, n) = lex_quote(src, i)?;
                toks.push((i, Tok::Str(s)));
                i += n;
            }
            '`' => {
                let Some(end) = rest[1..].find('`') else {
                    return err(i, "unterminated raw quoted string");
                };
                toks.push((i, Tok::Str(rest[1..1 + end].to_string())));
                i += end + 2;
            }
            '\'' => {
                let (v, n) = lex_char(src, i)?;
                toks.push((i, Tok::Char(v, rest[..n].to_string())));
                i += n;
            }
            '$' => {
                let n = 1 + rest[1..]
                    .find(|c: char| !is_alnum(c))
                    .unwrap_or(rest.len() - 1);
                toks.push((i, Tok::Var(rest[..n].to_string())));
                i += n;
                check_terminator(src, i)?;
            }
            '.' => {
                let next = rest[1..].chars().next();
                if next.is_some_and(|c| c.is_ascii_digit()) {
                    i = lex_number(src, i, toks)?;
                } else if next.is_some_and(is_alnum) {
                    let n = 1 + rest[1..]
                        .find(|c: char| !is_alnum(c))
                        .unwrap_or(rest.len() - 1);
                    toks.push((i, Tok::Field(rest[1..n].to_string())));
                    i += n;
                    check_terminator(src, i)?;
                } else {
                    toks.push((i, Tok::Dot));
                    i += 1;
                }
            }
            '+' | '-' | '0'..='9' => {
                i = lex_number(src, i, toks)?;
            }
            c if is_alnum(c) => {
                let n = rest.find(|c: char| !is_alnum(c)).unwrap_or(rest.len());
                let word = &rest[..n];
                let tok = if let Some(k) = KEYWORDS.iter().find(|k| **k == word) {
                    Tok::Keyword(k)
                } else {
                    match word {
                        "true" => Tok::Bool(true),
                        "false" => Tok::Bool(false),
                        "nil" => Tok::Nil,
                        _ => Tok::Ident(word.to_string()),
                    }
                };
                toks.push((i, tok));
                i += n;
                check_terminator(src, i)?;
            }
            c => {
                return err(
                    i,
                    format!("unrecognized character in action: {}", go_char(c)),
                );
            }
        }
    }
}

/// Go's `%#U`.
fn go_char(c: char) -> String {
    // Go's strconv.IsPrint: graphic characters and the ASCII space only.
    if c.is_control() || (c.is_whitespace() && c != ' ') {
        format!("U+{:04X}", c as u32)
    } else {
        format!("U+{:04X} '{c}'", c as u32)
    }
}

fn check_terminator(src: &str, i: usize) -> Result<(), SyntaxError> {
    let rest = &src[i..];
    match rest.chars().next() {
        None => Ok(()),
        Some(' ' | '\t' | '\r' | '\n' | '.' | ',' | '|' | ':' | ')' | '(') => Ok(()),
        Some(_) if rest.starts_with("}}") => Ok(()),
        Some(c) => err(i, format!("bad character {}", go_char(c))),
    }
}

fn lex_number(src: &str, start: usize, toks: &mut Vec<(usize, Tok)>) -> Result<usize, SyntaxError> {
    let b = src.as_bytes();
    let at = |i: usize| b.get(i).copied().unwrap_or(0);
    let mut i = start;
    if matches!(at(i), b'+' | b'-') {
        i += 1;
    }
    let (is_digit, exp): (fn(u8) -> bool, &[u8]) =
        if at(i) == b'0' && matches!(at(i + 1), b'x' | b'X') {
            i += 2;
            (|c: u8| c.is_ascii_hexdigit() || c == b'_', b"pP")
        } else if at(i) == b'0' && matches!(at(i + 1), b'o' | b'O') {
            i += 2;
            (|c: u8| (b'0'..=b'7').contains(&c) || c == b'_', b"eE")
        } else if at(i) == b'0' && matches!(at(i + 1), b'b' | b'B') {
            i += 2;
            (|c: u8| c == b'0' || c == b'1' || c == b'_', b"eE")
        } else {
            (|c: u8| c.is_ascii_digit() || c == b'_', b"eE")
        };
    while is_digit(at(i)) {
        i += 1;
    }
    if at(i) == b'.' {
        i += 1;
        while is_digit(at(i)) {
            i += 1;
        }
    }
    if exp.contains(&at(i)) {
        i += 1;
        if matches!(at(i), b'+' | b'-') {
            i += 1;
        }
        while at(i).is_ascii_digit() || at(i) == b'_' {
            i += 1;
        }
    }
    let mut end = i;
    if src[i..].chars().next().is_some_and(is_alnum) {
        end += src[i..]
            .find(|c: char| !is_alnum(c))
            .unwrap_or(src.len() - i);
    }
    let text = &src[start..end];
    if end != i {
        return err(
            start,
            format!("bad number syntax: {}", super::gofmt::quote(text)),
        );
    }
    toks.push((start, Tok::Number(text.to_string())));
    Ok(end)
}

/// A Go number literal as a template constant: an int unless written with `.`, `e` or `p`
/// (then float64), as Go's `idealConstant` decides.
pub fn parse_number(text: &str) -> Result<Arg, String> {
    let q = super::gofmt::quote(text);
    let clean: String = text.chars().filter(|&c| c != '_').collect();
    let (neg, body) = match clean.as_bytes().first() {
        Some(b'-') => (true, &clean[1..]),
        Some(b'+') => (false, &clean[1..]),
        _ => (false, clean.as_str()),
    };
    let lower = body.to_ascii_lowercase();
    let int_form = if let Some(h) = lower.strip_prefix("0x") {
        Some((16, h))
    } else if let Some(o) = lower.strip_prefix("0o") {
        Some((8, o))
    } else if let Some(bn) = lower.strip_prefix("0b") {
        Some((2, bn))
    } else if !lower.is_empty() && lower.bytes().all(|c| c.is_ascii_digit()) {
        if lower.len() > 1 && lower.starts_with('0') {
            Some((8, &lower[1..]))
        } else {
            Some((10, lower.as_str()))
        }
    } else {
        None
    };
    if let Some((radix, digits)) = int_form {
        if !digits.is_empty() && digits.chars().all(|c| c.is_digit(radix)) {
            let Ok(v) = u128::from_str_radix(digits, radix) else {
                return Err(format!("integer overflow: {q}"));
            };
            let signed = if neg { -(v as i128) } else { v as i128 };
            if let Ok(i) = i64::try_from(signed) {
                return Ok(Arg::Int(i, text.to_string()));
            }
            if let (false, Ok(u)) = (neg, u64::try_from(v)) {
                // Go keeps this a uint64; as a float64 it prints in exponent form.
                return Ok(Arg::Float(u as f64, text.to_string()));
            }
            return Err(format!("integer overflow: {q}"));
        }
    }
    let decimal = !lower.is_empty()
        && !lower.starts_with("0x")
        && lower
            .bytes()
            .all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'+' | b'-'));
    match lower.parse::<f64>() {
        Ok(f) if decimal => {
            // Go: a float that looks like an integer is one too large for an int.
            if !lower.contains(['.', 'e']) {
                return Err(format!("integer overflow: {q}"));
            }
            Ok(Arg::Float(if neg { -f } else { f }, text.to_string()))
        }
        _ => Err(format!("illegal number syntax: {q}")),
    }
}

/// An interpreted string literal with Go's escapes; returns the value and its length in bytes.
fn lex_quote(src: &str, start: usize) -> Result<(String, usize), SyntaxError> {
    let rest = &src[start + 1..];
    let mut out = String::new();
    let mut it = rest.char_indices();
    while let Some((j, c)) = it.next() {
        match c {
            '"' => return Ok((out, j + 2)),
            '\n' => return err(start, "unterminated quoted string"),
            '\\' => {
                let Some((_, e)) = it.next() else {
                    return err(start, "unterminated quoted string");
                };
                unescape(e, &mut it, &mut out, '"').ok_or(SyntaxError {
                    pos: start,
                    msg: "invalid syntax".into(),
                })?;
            }
            c => out.push(c),
        }
    }
    err(start, "unterminated quoted string")
}

/// One escape after a backslash, as Go's `strconv.Unquote` accepts it.
fn unescape(
    e: char,
    it: &mut std::str::CharIndices<'_>,
    out: &mut String,
    quote: char,
) -> Option<()> {
    let hex = |n: usize, it: &mut std::str::CharIndices<'_>| -> Option<u32> {
        let mut v = 0u32;
        for _ in 0..n {
            v = v * 16 + it.next()?.1.to_digit(16)?;
        }
        Some(v)
    };
    match e {
        'a' => out.push('\x07'),
        'b' => out.push('\x08'),
        'f' => out.push('\x0c'),
        'n' => out.push('\n'),
        'r' => out.push('\r'),
        't' => out.push('\t'),
        'v' => out.push('\x0b'),
        '\\' => out.push('\\'),
        c if c == quote => out.push(c),
        'x' => {
            let v = hex(2, it)?;
            // \xNN is a byte; only ASCII bytes keep the string valid UTF-8 here.
            out.push(
                char::from_u32(v)
                    .filter(|c| c.is_ascii())
                    .unwrap_or('\u{FFFD}'),
            );
        }
        'u' => out.push(char::from_u32(hex(4, it)?)?),
        'U' => out.push(char::from_u32(hex(8, it)?)?),
        '0'..='7' => {
            let mut v = e.to_digit(8)?;
            for _ in 0..2 {
                v = v * 8 + it.next()?.1.to_digit(8)?;
            }
            if v > 255 {
                return None;
            }
            out.push(
                char::from_u32(v)
                    .filter(|c| c.is_ascii())
                    .unwrap_or('\u{FFFD}'),
            );
        }
        _ => return None,
    }
    Some(())
}

fn lex_char(src: &str, start: usize) -> Result<(i64, usize), SyntaxError> {
    let rest = &src[start + 1..];
    let mut it = rest.char_indices();
    let mut out = String::new();
    let bad = || SyntaxError {
        pos: start,
        msg: "unterminated character constant".into(),
    };
    match it.next() {
        Some((_, '\\')) => {
            let (_, e) = it.next().ok_or_else(bad)?;
            unescape(e, &mut it, &mut out, '\'').ok_or(SyntaxError {
                pos: start,
                msg: format!("malformed character constant: {}", &src[start..]),
            })?;
        }
        Some((_, '\'')) | Some((_, '\n')) | None => return Err(bad()),
        Some((_, c)) => out.push(c),
    }
    match it.next() {
        Some((j, '\'')) => {
            let mut cs = out.chars();
            let c = cs.next().ok_or_else(bad)?;
            Ok((i64::from(c as u32), j + 2))
        }
        _ => Err(bad()),
    }
}

struct Parser {
    toks: Vec<(usize, Tok)>,
    i: usize,
    /// Declared variables in scope (parse-time check, as Go's parser does).
    vars: Vec<String>,
    range_depth: usize,
    depth: usize,
    funcs: fn(&str) -> bool,
    defines: HashMap<String, Vec<Node>>,
    /// Set when the parser reached the lexer's error token: that error is the one reported.
    lex_error_seen: std::cell::Cell<bool>,
}

/// What ended a list.
enum ListEnd {
    End,
    Else,
    ElseIf(usize),
    Eof,
}

impl Parser {
    fn peek(&self) -> &Tok {
        let t = self.toks.get(self.i).map_or(&Tok::Eof, |t| &t.1);
        if matches!(t, Tok::Error(_)) {
            self.lex_error_seen.set(true);
        }
        t
    }

    fn pos(&self) -> usize {
        self.toks.get(self.i).map_or(0, |t| t.0)
    }

    fn next(&mut self) -> (usize, Tok) {
        let t = self.toks.get(self.i).cloned().unwrap_or((0, Tok::Eof));
        if matches!(t.1, Tok::Error(_)) {
            self.lex_error_seen.set(true);
        }
        if self.i < self.toks.len() {
            self.i += 1;
        }
        t
    }

    fn skip_space(&mut self) {
        while *self.peek() == Tok::Space {
            self.i += 1;
        }
    }

    fn next_non_space(&mut self) -> (usize, Tok) {
        self.skip_space();
        self.next()
    }

    fn expect_right(&mut self, context: &str) -> Result<(), SyntaxError> {
        let (p, t) = self.next_non_space();
        if t != Tok::Right {
            return err(p, format!("unexpected {} in {context}", t.describe()));
        }
        Ok(())
    }

    /// Parses nodes until `{{end}}`, `{{else}}` or EOF.
    fn list(&mut self, top: bool) -> Result<(Vec<Node>, ListEnd), SyntaxError> {
        let mut nodes = Vec::new();
        loop {
            let (p, t) = self.next();
            match t {
                Tok::Eof => return Ok((nodes, ListEnd::Eof)),
                Tok::Text(s) => nodes.push(Node::Text(s)),
                Tok::Left => {
                    self.skip_space();
                    let kp = self.pos();
                    match self.peek().clone() {
                        Tok::Keyword("end") => {
                            self.next();
                            self.expect_right("end")?;
                            if top {
                                return err(kp, "unexpected {{end}}");
                            }
                            return Ok((nodes, ListEnd::End));
                        }
                        Tok::Keyword("else") => {
                            self.next();
                            if top {
                                return err(kp, "unexpected {{else}}");
                            }
                            self.skip_space();
                            if *self.peek() == Tok::Keyword("if") {
                                self.next();
                                return Ok((nodes, ListEnd::ElseIf(kp)));
                            }
                            self.expect_right("else")?;
                            return Ok((nodes, ListEnd::Else));
                        }
                        Tok::Keyword("define") if top => {
                            self.next();
                            self.define(kp)?;
                        }
                        _ => nodes.push(self.action()?),
                    }
                }
                other => return err(p, format!("unexpected {}", other.describe())),
            }
        }
    }

    fn enter(&mut self, pos: usize) -> Result<(), SyntaxError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return err(pos, "max nesting depth exceeded");
        }
        Ok(())
    }

    fn define(&mut self, pos: usize) -> Result<(), SyntaxError> {
        let name = self.template_name("define clause")?;
        self.expect_right("define clause")?;
        let saved = std::mem::replace(&mut self.vars, vec!["$".into()]);
        let (body, end) = self.list(false)?;
        self.vars = saved;
        match end {
            ListEnd::End => {}
            ListEnd::Eof => return err(pos, "unexpected EOF"),
            _ => return err(pos, "unexpected {{else}} in define clause"),
        }
        self.add_define(pos, name, body)
    }

    fn add_define(&mut self, pos: usize, name: String, body: Vec<Node>) -> Result<(), SyntaxError> {
        if let Some(old) = self.defines.get(&name) {
            if !is_empty(old) && !is_empty(&body) {
                return err(
                    pos,
                    format!(
                        "template: multiple definition of template {}",
                        super::gofmt::quote(&name)
                    ),
                );
            }
            if is_empty(&body) {
                return Ok(());
            }
        }
        self.defines.insert(name, body);
        Ok(())
    }

    fn template_name(&mut self, context: &str) -> Result<String, SyntaxError> {
        let (p, t) = self.next_non_space();
        match t {
            Tok::Str(s) => Ok(s),
            t => err(p, format!("unexpected {} in {context}", t.describe())),
        }
    }

    fn action(&mut self) -> Result<Node, SyntaxError> {
        let (p, t) = self.next();
        match t {
            Tok::Keyword("if") => self.control(p, "if"),
            Tok::Keyword("range") => self.control(p, "range"),
            Tok::Keyword("with") => self.control(p, "with"),
            Tok::Keyword("template") => {
                let name = self.template_name("template clause")?;
                self.skip_space();
                let pipe = if *self.peek() == Tok::Right {
                    self.next();
                    None
                } else {
                    Some(self.pipeline("template clause", false)?)
                };
                Ok(Node::Template(p, name, pipe))
            }
            Tok::Keyword("block") => {
                let name = self.template_name("block clause")?;
                let pipe = self.pipeline("block clause", false)?;
                self.enter(p)?;
                let saved = std::mem::replace(&mut self.vars, vec!["$".into()]);
                let (body, end) = self.list(false)?;
                self.vars = saved;
                self.depth -= 1;
                match end {
                    ListEnd::End => {}
                    ListEnd::Eof => return err(p, "unexpected EOF"),
                    _ => return err(p, "unexpected {{else}} in block clause"),
                }
                self.add_define(p, name.clone(), body)?;
                Ok(Node::Template(p, name, Some(pipe)))
            }
            Tok::Keyword("break") | Tok::Keyword("continue") => {
                let is_break = t == Tok::Keyword("break");
                let word = if is_break { "break" } else { "continue" };
                if self.range_depth == 0 {
                    return err(p, format!("{{{{{word}}}}} outside {{{{range}}}}"));
                }
                let (q, t2) = self.next_non_space();
                if t2 != Tok::Right {
                    return err(q, format!("unexpected {} in {{{{{word}}}}}", t2.describe()));
                }
                Ok(if is_break {
                    Node::Break(p)
                } else {
                    Node::Continue(p)
                })
            }
            Tok::Keyword(k) => err(p, format!("unexpected <{k}> in command")),
            _ => {
                self.i -= 1;
                Ok(Node::Action(self.pipeline("command", false)?))
            }
        }
    }

    fn control(&mut self, pos: usize, kind: &str) -> Result<Node, SyntaxError> {
        self.enter(pos)?;
        let mark = self.vars.len();
        let pipe = self.pipeline(kind, kind == "range")?;
        if kind == "range" {
            self.range_depth += 1;
        }
        let (body, end) = self.list(false)?;
        if kind == "range" {
            self.range_depth -= 1;
        }
        let else_list = match end {
            ListEnd::End => None,
            ListEnd::Eof => return err(pos, "unexpected EOF"),
            ListEnd::Else => {
                let (l, end2) = self.list(false)?;
                match end2 {
                    ListEnd::End => Some(l),
                    ListEnd::Eof => return err(pos, "unexpected EOF"),
                    _ => return err(pos, "expected end; found {{else}}".to_string()),
                }
            }
            ListEnd::ElseIf(p) => {
                if kind == "range" {
                    // Go allows `else if` only after if and with... and range too; the
                    // nested if ends at the same {{end}}.
                }
                // `{{else if x}}` is `{{else}}{{if x}}...{{end}}` sharing the final end.
                let nested = self.control(p, "if")?;
                Some(vec![nested])
            }
        };
        self.vars.truncate(mark);
        self.depth -= 1;
        Ok(match kind {
            "if" => Node::If(pipe, body, else_list),
            "range" => Node::Range(pipe, body, else_list),
            _ => Node::With(pipe, body, else_list),
        })
    }

    /// A pipeline up to `}}` (consumed), with an optional declaration.
    fn pipeline(&mut self, context: &str, is_range: bool) -> Result<Pipe, SyntaxError> {
        self.skip_space();
        let pos = self.pos();
        let mut decl = Vec::new();
        let mut is_assign = false;
        // Declarations: `$x :=`, `$x =`, `$i, $e :=` (range only).
        loop {
            let save = self.i;
            let Tok::Var(v) = self.peek().clone() else {
                break;
            };
            self.next();
            self.skip_space();
            match self.peek().clone() {
                Tok::Declare | Tok::Assign => {
                    is_assign = *self.peek() == Tok::Assign;
                    let p = self.pos();
                    self.next();
                    if is_assign && !self.vars.contains(&v) {
                        return err(p, format!("undefined variable {}", super::gofmt::quote(&v)));
                    }
                    decl.push(v);
                    break;
                }
                Tok::Comma if is_range && decl.is_empty() => {
                    self.next();
                    self.skip_space();
                    decl.push(v);
                    continue;
                }
                Tok::Comma => {
                    return err(self.pos(), format!("too many declarations in {context}"));
                }
                _ => {
                    if !decl.is_empty() {
                        return err(self.pos(), format!("missing := after {context} variables"));
                    }
                    self.i = save;
                    break;
                }
            }
        }
        if decl.len() == 2 && !is_range {
            return err(pos, format!("too many declarations in {context}"));
        }
        let mut cmds = Vec::new();
        loop {
            self.skip_space();
            match self.peek() {
                Tok::Right => {
                    self.next();
                    break;
                }
                Tok::RParen => {
                    return err(self.pos(), "unexpected right paren");
                }
                _ => {}
            }
            let cmd = self.command(false)?;
            cmds.push(cmd);
            match self.next_non_space() {
                (_, Tok::Pipe) => continue,
                (_, Tok::Right) => break,
                (p, t) => return err(p, format!("unexpected {} in {context}", t.describe())),
            }
        }
        if cmds.is_empty() {
            return err(pos, format!("missing value for {context}"));
        }
        check_pipeline(&cmds, pos)?;
        // Declared variables become visible after the pipeline.
        if !is_assign {
            for d in &decl {
                self.vars.push(d.clone());
            }
        }
        Ok(Pipe {
            pos,
            decl,
            is_assign,
            cmds,
        })
    }

    /// A parenthesized pipeline after `(`, up to `)` (consumed).
    fn paren_pipeline(&mut self, pos: usize) -> Result<Pipe, SyntaxError> {
        self.enter(pos)?;
        let mut cmds = Vec::new();
        let mut decl = Vec::new();
        let mut is_assign = false;
        self.skip_space();
        // Go allows declarations in parenthesized pipelines too.
        if let Tok::Var(v) = self.peek().clone() {
            let save = self.i;
            self.next();
            self.skip_space();
            match self.peek() {
                Tok::Declare | Tok::Assign => {
                    is_assign = *self.peek() == Tok::Assign;
                    self.next();
                    if is_assign && !self.vars.contains(&v) {
                        return err(
                            pos,
                            format!("undefined variable {}", super::gofmt::quote(&v)),
                        );
                    }
                    decl.push(v);
                }
                _ => self.i = save,
            }
        }
        loop {
            self.skip_space();
            if *self.peek() == Tok::RParen {
                let p = self.pos();
                self.next();
                if cmds.is_empty() {
                    return err(p, "missing value for parenthesized pipeline");
                }
                break;
            }
            cmds.push(self.command(true)?);
            match self.next_non_space() {
                (_, Tok::Pipe) => continue,
                (_, Tok::RParen) => break,
                (p, t) => {
                    return err(
                        p,
                        format!("unexpected {} in parenthesized pipeline", t.describe()),
                    )
                }
            }
        }
        check_pipeline(&cmds, pos)?;
        if !is_assign {
            for d in &decl {
                self.vars.push(d.clone());
            }
        }
        self.depth -= 1;
        Ok(Pipe {
            pos,
            decl,
            is_assign,
            cmds,
        })
    }

    /// Operands up to `|`, `}}` or `)` (not consumed).
    fn command(&mut self, in_paren: bool) -> Result<Cmd, SyntaxError> {
        let pos = self.pos();
        let mut args = Vec::new();
        let mut arg_pos = Vec::new();
        loop {
            self.skip_space();
            match self.peek() {
                Tok::Right | Tok::Pipe | Tok::RParen => break,
                Tok::Eof => return err(self.pos(), "unclosed action"),
                _ => {}
            }
            let (a, p) = self.operand()?;
            args.push(a);
            arg_pos.push(p);
            match self.peek() {
                Tok::Space | Tok::Right | Tok::Pipe => {}
                Tok::RParen if in_paren => {}
                t => {
                    return err(
                        self.pos(),
                        format!("unexpected {} in operand", t.describe()),
                    )
                }
            }
        }
        if args.is_empty() {
            return err(pos, "empty command");
        }
        Ok(Cmd { pos, args, arg_pos })
    }

    fn fields(&mut self) -> Vec<String> {
        let mut f = Vec::new();
        while let Tok::Field(name) = self.peek().clone() {
            self.next();
            f.push(name);
        }
        f
    }

    fn operand(&mut self) -> Result<(Arg, usize), SyntaxError> {
        let (p, t) = self.next();
        let arg = match t {
            Tok::Ident(name) => {
                if !(self.funcs)(&name) {
                    return err(
                        p,
                        format!("function {} not defined", super::gofmt::quote(&name)),
                    );
                }
                Arg::Ident(name)
            }
            Tok::Dot => Arg::Dot,
            Tok::Nil => Arg::Nil,
            Tok::Var(v) => {
                if !self.vars.contains(&v) {
                    return err(p, format!("undefined variable {}", super::gofmt::quote(&v)));
                }
                let chain = self.chain_pos(p);
                let f = self.fields();
                return Ok((Arg::Var(v, f), chain));
            }
            Tok::Field(name) => {
                let chain = self.chain_pos(p);
                let mut f = vec![name];
                f.extend(self.fields());
                return Ok((Arg::Field(f), chain));
            }
            Tok::Bool(b) => Arg::Bool(b),
            Tok::Char(v, s) => Arg::Int(v, s),
            Tok::Number(s) => parse_number(&s).map_err(|msg| SyntaxError { pos: p, msg })?,
            Tok::Str(s) => Arg::Str(s),
            Tok::LParen => {
                let pipe = self.paren_pipeline(p)?;
                let chain = self.chain_pos(p);
                let f = self.fields();
                return Ok((Arg::Pipe(Box::new(pipe), f), chain));
            }
            t => return err(p, format!("unexpected {} in operand", t.describe())),
        };
        if let Tok::Field(_) = self.peek() {
            // Fields chained on a literal or function: Go allows `(...)`/func results only.
            match &arg {
                Arg::Ident(_) => {
                    let name = match &arg {
                        Arg::Ident(n) => n.clone(),
                        _ => String::new(),
                    };
                    let chain = self.chain_pos(p);
                    let f = self.fields();
                    let pipe = Pipe {
                        pos: p,
                        decl: Vec::new(),
                        is_assign: false,
                        cmds: vec![Cmd {
                            pos: p,
                            args: vec![Arg::Ident(name)],
                            arg_pos: vec![p],
                        }],
                    };
                    return Ok((Arg::Pipe(Box::new(pipe), f), chain));
                }
                Arg::Dot => {}
                _ => return err(self.pos(), "unexpected . after term"),
            }
        }
        Ok((arg, p))
    }

    /// Go's position of a field chain: its first chained field (`term` when there is none).
    fn chain_pos(&self, term: usize) -> usize {
        match self.peek() {
            Tok::Field(_) => self.pos(),
            _ => term,
        }
    }
}

fn is_empty(nodes: &[Node]) -> bool {
    nodes
        .iter()
        .all(|n| matches!(n, Node::Text(t) if t.trim().is_empty()))
}

/// Go: stages after the first must be callable (function, field or method).
fn check_pipeline(cmds: &[Cmd], pos: usize) -> Result<(), SyntaxError> {
    for (i, c) in cmds.iter().enumerate().skip(1) {
        match c.args.first() {
            Some(Arg::Ident(_) | Arg::Field(_) | Arg::Var(..) | Arg::Pipe(..)) => {}
            Some(Arg::Dot) => {}
            _ => {
                return err(
                    pos,
                    format!("non executable command in pipeline stage {}", i + 1),
                )
            }
        }
    }
    Ok(())
}

/// Parses `src`; `funcs` says which function names exist (Go refuses unknown ones at parse time).
pub fn parse(src: &str, funcs: fn(&str) -> bool) -> Result<Tree, SyntaxError> {
    let toks = lex(src);
    let lex_error = match toks.last() {
        Some((pos, Tok::Error(msg))) => Some(SyntaxError {
            pos: *pos,
            msg: msg.clone(),
        }),
        _ => None,
    };
    let mut p = Parser {
        toks,
        i: 0,
        vars: vec!["$".into()],
        range_depth: 0,
        depth: 0,
        funcs,
        defines: HashMap::new(),
        lex_error_seen: std::cell::Cell::new(false),
    };
    let parsed = p.list(true).and_then(|(root, end)| match end {
        ListEnd::Eof => Ok(root),
        _ => err(p.pos(), "unexpected {{end}}"),
    });
    let root = match (parsed, lex_error) {
        (Ok(root), None) => root,
        (Err(_), Some(le)) if p.lex_error_seen.get() => return Err(le),
        (Err(e), _) => return Err(e),
        // The parser cannot accept an error token.
        (Ok(_), Some(le)) => return Err(le),
    };
    Ok(Tree {
        root,
        defines: p.defines,
    })
}

/// Go's `String()` of a command, for exec error context (`at <humanize "x">`).
pub fn cmd_string(c: &Cmd) -> String {
    let mut s = String::new();
    for (i, a) in c.args.iter().enumerate() {
        if i > 0 {
            s.push(' ');
        }
        arg_string(&mut s, a);
    }
    s
}

fn arg_string(s: &mut String, a: &Arg) {
    match a {
        Arg::Dot => s.push('.'),
        Arg::Field(f) => {
            for x in f {
                s.push('.');
                s.push_str(x);
            }
        }
        Arg::Var(v, f) => {
            s.push_str(v);
            for x in f {
                s.push('.');
                s.push_str(x);
            }
        }
        Arg::Ident(n) => s.push_str(n),
        Arg::Pipe(p, f) => {
            s.push('(');
            for (i, c) in p.cmds.iter().enumerate() {
                if i > 0 {
                    s.push_str(" | ");
                }
                s.push_str(&cmd_string(c));
            }
            s.push(')');
            for x in f {
                s.push('.');
                s.push_str(x);
            }
        }
        Arg::Str(v) => s.push_str(&super::gofmt::quote(v)),
        Arg::Int(_, t) | Arg::Float(_, t) => s.push_str(t),
        Arg::Bool(b) => s.push_str(if *b { "true" } else { "false" }),
        Arg::Nil => s.push_str("nil"),
    }
}
