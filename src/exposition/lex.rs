//! The token rules of Prometheus 2.42's two text lexers (`promlex.l`, `openmetricslex.l`), as the
//! reference from which every accept/reject decision of this module follows.
//!
//! Facts carried over from the generated lexers, beyond their regular expressions:
//! - Tokens are longest matches without backtracking: when a partial match cannot continue, the
//!   token is invalid even if a shorter prefix would have matched a rule (OpenMetrics ` # x`).
//! - Each token is recognised in a start state; the lexer reads its first byte as is, but every
//!   further advance while in a label-value, metadata-text or comment state steps over NUL bytes.
//!   So NULs inside label values and HELP text are kept, and the NULs just after a closing quote
//!   become part of the label-value token (whose first and last byte are then stripped).
//! - 0.0.4 only: the parser appends a `\n` to the input (a missing trailing newline is fine);
//!   a NUL at the start of a token in the initial state, or one met while skipping a `#` comment
//!   (other than inside a `# ` comment after its first byte), is read as the end of the input.
//!   A `#` line that is not a well-formed `# HELP`/`# TYPE` start is a comment.
//! - OpenMetrics: only single spaces separate tokens; there are no comments and no blank lines.

/// What one lexer call produced. `Invalid` is a byte sequence no rule matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Token {
    Eof,
    Linebreak,
    Whitespace,
    Help,
    Type,
    Unit,
    EofWord,
    Text,
    Comment,
    MName,
    BraceOpen,
    BraceClose,
    LName,
    LValue,
    Comma,
    Equal,
    Timestamp,
    Value,
    Invalid,
}

impl Token {
    /// Prometheus' name for the token, as it appears in its error messages.
    pub fn name(self) -> &'static str {
        match self {
            Token::Eof => "EOF",
            Token::Linebreak => "LINEBREAK",
            Token::Whitespace => "WHITESPACE",
            Token::Help => "HELP",
            Token::Type => "TYPE",
            Token::Unit => "UNIT",
            Token::EofWord => "EOFWORD",
            Token::Text => "TEXT",
            Token::Comment => "COMMENT",
            Token::MName => "MNAME",
            Token::BraceOpen => "BOPEN",
            Token::BraceClose => "BCLOSE",
            Token::LName => "LNAME",
            Token::LValue => "LVALUE",
            Token::Comma => "COMMA",
            Token::Equal => "EQUAL",
            Token::Timestamp => "TIMESTAMP",
            Token::Value => "VALUE",
            Token::Invalid => "INVALID",
        }
    }
}

/// Start states of the lexers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Init,
    Comment,
    Meta1,
    Meta2,
    Labels,
    LValue,
    Value,
    Timestamp,
    Exemplar,
    EValue,
    ETimestamp,
}

/// Byte classes of the rules. `M`: metric-name start, `L`: label-name start.
const C_M: u8 = 1;
const C_L: u8 = 2;
const C_D: u8 = 4;
/// 0.0.4 value bytes: not NUL, tab, newline, space or `{`.
const C_PVAL: u8 = 8;
/// OpenMetrics value/timestamp bytes: not NUL, newline or space.
const C_OVAL: u8 = 16;

pub(crate) static CLASS: [u8; 256] = build_classes();

const fn build_classes() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut c = 0usize;
    while c < 256 {
        let b = c as u8;
        let mut k = 0u8;
        if b.is_ascii_alphabetic() || b == b'_' {
            k |= C_M | C_L;
        }
        if b == b':' {
            k |= C_M;
        }
        if b.is_ascii_digit() {
            k |= C_D;
        }
        if !matches!(b, 0 | b'\t' | b'\n' | b' ' | b'{') {
            k |= C_PVAL;
        }
        if !matches!(b, 0 | b'\n' | b' ') {
            k |= C_OVAL;
        }
        t[c] = k;
        c += 1;
    }
    t
}

#[inline]
pub(crate) fn is_m(c: u8) -> bool {
    CLASS[c as usize] & C_M != 0
}
#[inline]
pub(crate) fn is_md(c: u8) -> bool {
    CLASS[c as usize] & (C_M | C_D) != 0
}
#[inline]
pub(crate) fn is_l(c: u8) -> bool {
    CLASS[c as usize] & C_L != 0
}
#[inline]
pub(crate) fn is_ld(c: u8) -> bool {
    CLASS[c as usize] & (C_L | C_D) != 0
}
#[inline]
pub(crate) fn is_pval(c: u8) -> bool {
    CLASS[c as usize] & C_PVAL != 0
}
#[inline]
pub(crate) fn is_oval(c: u8) -> bool {
    CLASS[c as usize] & C_OVAL != 0
}
#[inline]
fn is_ws(c: u8) -> bool {
    c == b' ' || c == b'\t'
}

/// A lexer over one input. `i` is the position of the lookahead byte; a token is `b[start..i]`.
#[derive(Clone, Debug)]
pub struct Lexer<'a> {
    pub b: &'a [u8],
    /// `b.len()`, plus one for 0.0.4's appended newline (read as `\n` at index `b.len()`).
    pub eff_len: usize,
    pub i: usize,
    pub start: usize,
    pub state: State,
    pub om: bool,
}

impl<'a> Lexer<'a> {
    pub fn new(b: &'a [u8], om: bool) -> Lexer<'a> {
        Lexer {
            b,
            eff_len: if om { b.len() } else { b.len() + 1 },
            i: 0,
            start: 0,
            state: State::Init,
            om,
        }
    }

    #[inline]
    pub fn at(&self, i: usize) -> u8 {
        match self.b.get(i) {
            Some(&c) => c,
            None if i < self.eff_len => b'\n',
            None => 0,
        }
    }

    /// The current token's bytes (never including the virtual trailing newline).
    pub fn buf(&self) -> &'a [u8] {
        let end = self.i.min(self.b.len());
        self.b.get(self.start.min(end)..end).unwrap_or(&[])
    }

    /// Advances past the lookahead byte and returns the new one (0 at the end), stepping over
    /// NULs in the states where the lexers do.
    #[inline]
    fn next(&mut self) -> u8 {
        self.i += 1;
        if self.i >= self.eff_len {
            return 0;
        }
        if matches!(self.state, State::LValue | State::Meta2 | State::Comment) {
            while self.at(self.i) == 0 {
                self.i += 1;
                if self.i >= self.eff_len {
                    return 0;
                }
            }
        }
        self.at(self.i)
    }

    /// Consumes bytes while `f` holds; returns the first byte that does not.
    #[inline]
    fn run(&mut self, f: impl Fn(u8) -> bool) -> u8 {
        let mut c = self.next();
        while f(c) {
            c = self.next();
        }
        c
    }

    pub fn lex(&mut self) -> Token {
        if self.om {
            self.lex_om()
        } else {
            self.lex_prom()
        }
    }

    /// Reads a quoted label value from its opening quote; `newline_ok` is 0.0.4's rule that a raw
    /// newline may appear inside the quotes.
    fn quoted(&mut self, newline_ok: bool) -> bool {
        let mut c = self.next();
        loop {
            match c {
                b'"' => {
                    self.next();
                    return true;
                }
                b'\\' => {
                    c = self.next();
                    if c == 0 || c == b'\n' {
                        return false;
                    }
                    c = self.next();
                }
                0 => return false,
                b'\n' if !newline_ok => return false,
                _ => c = self.next(),
            }
        }
    }

    /// Matches the rest of a keyword after its first byte; `false` at the first mismatch.
    fn keyword(&mut self, rest: &[u8]) -> bool {
        for &k in rest {
            if self.next() != k {
                return false;
            }
        }
        true
    }

    fn consume_comment(&mut self) -> Token {
        let mut c = self.at(self.i);
        loop {
            match c {
                0 => return Token::Eof,
                b'\n' => {
                    self.state = State::Init;
                    return Token::Comment;
                }
                _ => c = self.next(),
            }
        }
    }

    fn lex_prom(&mut self) -> Token {
        if self.i >= self.eff_len {
            self.start = self.i;
            return Token::Eof;
        }
        self.start = self.i;
        let mut c = self.at(self.i);
        match self.state {
            State::Init => match c {
                0 => {
                    self.next();
                    Token::Eof
                }
                b'\n' => {
                    self.next();
                    Token::Linebreak
                }
                b' ' | b'\t' => {
                    self.run(is_ws);
                    Token::Whitespace
                }
                b'#' => {
                    c = self.next();
                    if !is_ws(c) {
                        return self.consume_comment();
                    }
                    c = self.run(is_ws);
                    self.state = State::Comment;
                    let (rest, tok): (&[u8], Token) = match c {
                        b'H' => (b"ELP", Token::Help),
                        b'T' => (b"YPE", Token::Type),
                        _ => return self.consume_comment(),
                    };
                    if !self.keyword(rest) || !is_ws(self.next()) {
                        return self.consume_comment();
                    }
                    self.run(is_ws);
                    self.state = State::Meta1;
                    tok
                }
                c if is_m(c) => {
                    self.run(is_md);
                    self.state = State::Value;
                    Token::MName
                }
                _ => Token::Invalid,
            },
            State::Meta1 => match c {
                b' ' | b'\t' => {
                    self.run(is_ws);
                    Token::Whitespace
                }
                c if is_m(c) => {
                    self.run(is_md);
                    self.state = State::Meta2;
                    Token::MName
                }
                _ => Token::Invalid,
            },
            State::Meta2 => {
                if is_ws(c) {
                    c = self.run(is_ws);
                    if c == 0 || c == b'\n' {
                        return Token::Whitespace;
                    }
                }
                if c != 0 && c != b'\n' {
                    self.run(|c| c != 0 && c != b'\n');
                }
                self.state = State::Init;
                Token::Text
            }
            State::Value => match c {
                b' ' | b'\t' => {
                    self.run(is_ws);
                    Token::Whitespace
                }
                b'{' => {
                    self.next();
                    self.state = State::Labels;
                    Token::BraceOpen
                }
                c if is_pval(c) => {
                    self.run(is_pval);
                    self.state = State::Timestamp;
                    Token::Value
                }
                _ => Token::Invalid,
            },
            State::Labels => match c {
                b',' => {
                    self.next();
                    Token::Comma
                }
                b'=' => {
                    self.next();
                    self.state = State::LValue;
                    Token::Equal
                }
                b' ' | b'\t' => {
                    self.run(is_ws);
                    Token::Whitespace
                }
                b'}' => {
                    self.next();
                    self.state = State::Value;
                    Token::BraceClose
                }
                c if is_l(c) => {
                    self.run(is_ld);
                    Token::LName
                }
                _ => Token::Invalid,
            },
            State::LValue => match c {
                b'"' => {
                    if self.quoted(true) {
                        self.state = State::Labels;
                        Token::LValue
                    } else {
                        Token::Invalid
                    }
                }
                b' ' | b'\t' => {
                    self.run(is_ws);
                    Token::Whitespace
                }
                _ => Token::Invalid,
            },
            State::Timestamp => match c {
                b'\n' => {
                    self.next();
                    self.state = State::Init;
                    Token::Linebreak
                }
                b' ' | b'\t' => {
                    self.run(is_ws);
                    Token::Whitespace
                }
                b'0'..=b'9' => {
                    self.run(|c| c.is_ascii_digit());
                    Token::Timestamp
                }
                _ => Token::Invalid,
            },
            // States of the OpenMetrics lexer only.
            State::Comment | State::Exemplar | State::EValue | State::ETimestamp => Token::Invalid,
        }
    }

    fn lex_om(&mut self) -> Token {
        if self.i >= self.eff_len {
            self.start = self.i;
            return Token::Eof;
        }
        self.start = self.i;
        let mut c = self.at(self.i);
        match self.state {
            State::Init => match c {
                b'#' => {
                    if self.next() != b' ' {
                        return Token::Invalid;
                    }
                    c = self.next();
                    self.state = State::Comment;
                    let (rest, tok): (&[u8], Token) = match c {
                        b'E' => {
                            if !self.keyword(b"OF") {
                                return Token::Invalid;
                            }
                            if self.next() == b'\n' {
                                self.next();
                            }
                            self.state = State::Init;
                            return Token::EofWord;
                        }
                        b'H' => (b"ELP ", Token::Help),
                        b'T' => (b"YPE ", Token::Type),
                        b'U' => (b"NIT ", Token::Unit),
                        _ => return Token::Invalid,
                    };
                    if !self.keyword(rest) {
                        return Token::Invalid;
                    }
                    self.next();
                    self.state = State::Meta1;
                    tok
                }
                c if is_m(c) => {
                    self.run(is_md);
                    self.state = State::Value;
                    Token::MName
                }
                _ => Token::Invalid,
            },
            State::Meta1 => {
                if is_m(c) {
                    self.run(is_md);
                    self.state = State::Meta2;
                    Token::MName
                } else {
                    Token::Invalid
                }
            }
            State::Meta2 => {
                if c != b' ' {
                    return Token::Invalid;
                }
                if self.run(|c| c != 0 && c != b'\n') != b'\n' {
                    return Token::Invalid;
                }
                self.next();
                self.state = State::Init;
                Token::Text
            }
            State::Value => match c {
                b' ' => {
                    if !is_oval(self.next()) {
                        return Token::Invalid;
                    }
                    self.run(is_oval);
                    self.state = State::Timestamp;
                    Token::Value
                }
                b'{' => {
                    self.next();
                    self.state = State::Labels;
                    Token::BraceOpen
                }
                _ => Token::Invalid,
            },
            State::Labels | State::Exemplar => {
                let exemplar = self.state == State::Exemplar;
                match c {
                    b',' => {
                        self.next();
                        Token::Comma
                    }
                    b'=' => {
                        self.next();
                        self.state = if exemplar {
                            State::EValue
                        } else {
                            State::LValue
                        };
                        Token::Equal
                    }
                    b'}' => {
                        self.next();
                        self.state = if exemplar {
                            State::EValue
                        } else {
                            State::Value
                        };
                        Token::BraceClose
                    }
                    c if is_l(c) => {
                        self.run(is_ld);
                        Token::LName
                    }
                    _ => Token::Invalid,
                }
            }
            State::LValue => {
                if c == b'"' && self.quoted(false) {
                    self.state = State::Labels;
                    Token::LValue
                } else {
                    Token::Invalid
                }
            }
            State::Timestamp => match c {
                b'\n' => {
                    self.next();
                    self.state = State::Init;
                    Token::Linebreak
                }
                b' ' => {
                    c = self.next();
                    if c == b'#' {
                        c = self.next();
                        if c == b' ' {
                            if self.next() != b'{' {
                                return Token::Invalid;
                            }
                            self.next();
                            self.state = State::Exemplar;
                            return Token::Comment;
                        }
                        if is_oval(c) {
                            self.run(is_oval);
                        }
                        return Token::Timestamp;
                    }
                    if !is_oval(c) {
                        return Token::Invalid;
                    }
                    self.run(is_oval);
                    Token::Timestamp
                }
                _ => Token::Invalid,
            },
            State::EValue => match c {
                b' ' => {
                    if !is_oval(self.next()) {
                        return Token::Invalid;
                    }
                    self.run(is_oval);
                    self.state = State::ETimestamp;
                    Token::Value
                }
                b'"' => {
                    if self.quoted(false) {
                        self.state = State::Exemplar;
                        Token::LValue
                    } else {
                        Token::Invalid
                    }
                }
                _ => Token::Invalid,
            },
            State::ETimestamp => match c {
                b' ' => {
                    if !is_oval(self.next()) {
                        return Token::Invalid;
                    }
                    self.run(is_oval);
                    Token::Timestamp
                }
                b'\n' => {
                    self.next();
                    self.state = State::Init;
                    Token::Linebreak
                }
                _ => Token::Invalid,
            },
            State::Comment => Token::Invalid,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(input: &[u8], om: bool) -> Vec<(Token, Vec<u8>)> {
        let mut lx = Lexer::new(input, om);
        let mut out = Vec::new();
        loop {
            let t = lx.lex();
            out.push((t, lx.buf().to_vec()));
            if matches!(t, Token::Eof | Token::Invalid) || out.len() > 100 {
                return out;
            }
        }
    }

    fn kinds(input: &[u8], om: bool) -> Vec<Token> {
        tokens(input, om).into_iter().map(|(t, _)| t).collect()
    }

    #[test]
    fn prom_sample_tokens() {
        use Token::*;
        assert_eq!(
            kinds(b"a{b=\"c\"} 1 2\n", false),
            vec![
                MName, BraceOpen, LName, Equal, LValue, BraceClose, Whitespace, Value, Whitespace,
                Timestamp, Linebreak, Linebreak, Eof
            ]
        );
    }

    #[test]
    fn prom_nul_after_closing_quote_joins_label_value_token() {
        let t = tokens(b"a{b=\"c\"\0\0,d=\"e\"} 1", false);
        assert_eq!(t[4], (Token::LValue, b"\"c\"\0\0".to_vec()));
        assert_eq!(t[5].0, Token::Comma);
    }

    #[test]
    fn prom_help_keyword_with_nul_inside_still_matches() {
        assert_eq!(kinds(b"# H\0ELP x y\n", false)[0], Token::Help);
        // A NUL as the first byte after "# " ends the input.
        assert_eq!(kinds(b"# \0x\n", false)[0], Token::Eof);
        assert_eq!(kinds(b"#x\0\n", false)[0], Token::Eof);
        assert_eq!(kinds(b"# x\0y\n", false)[0], Token::Comment);
    }

    #[test]
    fn prom_meta_text_rules() {
        let t = tokens(b"# HELP foo  x \n", false);
        assert_eq!(t[0].0, Token::Help);
        assert_eq!(t[1], (Token::MName, b"foo".to_vec()));
        assert_eq!(t[2], (Token::Text, b"  x ".to_vec()));
        let t = tokens(b"# HELP foo \n", false);
        assert_eq!(t[2].0, Token::Whitespace);
        assert_eq!(t[3], (Token::Text, Vec::new()));
        let t = tokens(b"# HELP foo-bar\n", false);
        assert_eq!(t[2], (Token::Text, b"-bar".to_vec()));
    }

    #[test]
    fn om_timestamp_hash_without_backtracking() {
        let t = kinds(b"a 1 # x\n", true);
        assert_eq!(t[2], Token::Invalid);
        let t = tokens(b"a 1 #\n", true);
        assert_eq!(t[2], (Token::Timestamp, b" #".to_vec()));
        let t = kinds(b"a_total 1 # {x=\"y\"} 2 3\n", true);
        use Token::*;
        assert_eq!(
            t,
            vec![
                MName, Value, Comment, LName, Equal, LValue, BraceClose, Value, Timestamp,
                Linebreak, Eof
            ]
        );
    }

    #[test]
    fn om_meta_text_includes_newline_and_following_nuls() {
        let t = tokens(b"# HELP m a\n\0\0b 1\n", true);
        assert_eq!(t[2], (Token::Text, b" a\n\0\0".to_vec()));
        assert_eq!(t[3], (Token::MName, b"b".to_vec()));
    }

    #[test]
    fn om_eof_word() {
        assert_eq!(kinds(b"# EOF", true), vec![Token::EofWord, Token::Eof]);
        assert_eq!(kinds(b"# EOF\n", true), vec![Token::EofWord, Token::Eof]);
        assert_eq!(kinds(b"# EOFa", true)[1], Token::MName);
        assert_eq!(kinds(b"# E\0OF\n", true), vec![Token::EofWord, Token::Eof]);
    }
}
