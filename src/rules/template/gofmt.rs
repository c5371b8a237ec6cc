//! Go's `fmt` formatting of template values: `%v` (what `{{ x }}` prints), `print`, `println`
//! and `printf` with its verbs, flags, width and precision, and `strconv`'s float formatting
//! (shortest `'g'`: `1e+06`, `0.1`, `100`). Prometheus' humanize functions are built on
//! `%.4g`, so alert texts depend on these exact digits.

use std::fmt::Write;

use super::value::Value;

/// Decimal digits of `|f|` (no leading or trailing zeros) and the decimal point position, as
/// strconv's `decimalSlice`: the value is `0.d1d2d3... × 10^dp`. Zero has no digits and dp 0.
/// `sig` rounds to that many significant digits; `None` gives the shortest round-trip digits.
fn digits(f: f64, sig: Option<usize>) -> (Vec<u8>, i32) {
    let a = f.abs();
    if a == 0.0 {
        return (Vec::new(), 0);
    }
    let s = match sig {
        None => format!("{a:e}"),
        Some(n) => format!("{:.*e}", n.saturating_sub(1), a),
    };
    let (mant, exp) = s.split_once('e').unwrap_or((s.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let mut d: Vec<u8> = mant.bytes().filter(u8::is_ascii_digit).collect();
    while d.len() > 1 && d.last() == Some(&b'0') {
        d.pop();
    }
    if d.iter().all(|&c| c == b'0') {
        return (Vec::new(), 0);
    }
    (d, exp + 1)
}

fn fmt_e(out: &mut String, d: &[u8], dp: i32, prec: usize, e: char) {
    out.push(d.first().map_or('0', |&c| c as char));
    if prec > 0 {
        out.push('.');
        for i in 1..=prec {
            out.push(d.get(i).map_or('0', |&c| c as char));
        }
    }
    let exp = if d.is_empty() { 0 } else { dp - 1 };
    out.push(e);
    out.push(if exp < 0 { '-' } else { '+' });
    let _ = write!(out, "{:02}", exp.unsigned_abs());
}

fn fmt_f(out: &mut String, d: &[u8], dp: i32, prec: usize) {
    if dp > 0 {
        for i in 0..dp as usize {
            out.push(d.get(i).map_or('0', |&c| c as char));
        }
    } else {
        out.push('0');
    }
    if prec > 0 {
        out.push('.');
        for i in 1..=prec as i64 {
            let j = i64::from(dp) + i - 1;
            let c = if j >= 0 {
                d.get(j as usize).copied()
            } else {
                None
            };
            out.push(c.map_or('0', char::from));
        }
    }
}

/// strconv.FormatFloat(f, 'g', prec, 64) without the sign (`prec` None: shortest).
fn fmt_g(out: &mut String, f: f64, prec: Option<usize>, upper: bool) {
    let shortest = prec.is_none();
    let p = prec.map(|p| p.max(1));
    let (d, dp) = digits(f, p);
    let nd = d.len() as i32;
    let mut prec = p.map_or(nd, |p| p as i32);
    let mut eprec = prec;
    if eprec > nd && nd >= dp {
        eprec = nd;
    }
    if shortest {
        eprec = 6;
    }
    let exp = dp - 1;
    if exp < -4 || exp >= eprec {
        if prec > nd {
            prec = nd;
        }
        fmt_e(
            out,
            &d,
            dp,
            (prec - 1).max(0) as usize,
            if upper { 'E' } else { 'e' },
        );
        return;
    }
    if prec > dp {
        prec = nd;
    }
    fmt_f(out, &d, dp, (prec - dp).max(0) as usize);
}

/// Special values as Go prints them for every float verb.
fn special(f: f64) -> Option<&'static str> {
    if f.is_nan() {
        Some("NaN")
    } else if f == f64::INFINITY {
        Some("+Inf")
    } else if f == f64::NEG_INFINITY {
        Some("-Inf")
    } else {
        None
    }
}

/// Go's `%v` of a float64 (strconv 'g', shortest).
pub fn write_float(out: &mut String, f: f64) {
    if let Some(s) = special(f) {
        out.push_str(s);
        return;
    }
    if f.is_sign_negative() {
        out.push('-');
    }
    fmt_g(out, f, None, false);
}

/// `fmt.Sprintf("%.<prec>g", f)` (the humanize functions' format).
pub fn format_g(f: f64, prec: usize) -> String {
    let mut s = String::new();
    if let Some(sp) = special(f) {
        s.push_str(sp);
        return s;
    }
    if f.is_sign_negative() {
        s.push('-');
    }
    fmt_g(&mut s, f, Some(prec), false);
    s
}

/// Go's `%v` of a value, as `{{ x }}` and `print` write it.
pub fn write_value(out: &mut String, v: &Value<'_>) {
    match v {
        Value::Nil => out.push_str("<nil>"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Float(f) => write_float(out, *f),
        Value::Str(s) => out.push_str(s),
        Value::Labels(l) => {
            out.push_str("map[");
            for (i, (k, v)) in l.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                out.push_str(k);
                out.push(':');
                out.push_str(v);
            }
            out.push(']');
        }
        Value::Map(m) => {
            out.push_str("map[");
            for (i, (k, v)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                out.push_str(k);
                out.push(':');
                write_value(out, v);
            }
            out.push(']');
        }
        Value::Sample(s) => {
            out.push_str("&{");
            write_value(
                out,
                &Value::Labels(super::value::LabelsRef::Owned(s.clone())),
            );
            out.push(' ');
            write_float(out, s.value);
            out.push('}');
        }
        Value::Samples(v) => {
            out.push('[');
            for i in 0..v.len() {
                if i > 0 {
                    out.push(' ');
                }
                write_value(out, &Value::Sample(std::rc::Rc::new(v[i].clone())));
            }
            out.push(']');
        }
        Value::Data(d) => {
            out.push('{');
            write_value(
                out,
                &Value::Labels(super::value::LabelsRef::Borrowed(d.labels)),
            );
            out.push(' ');
            write_value(
                out,
                &Value::Labels(super::value::LabelsRef::Borrowed(d.external_labels)),
            );
            out.push(' ');
            out.push_str(d.external_url);
            out.push(' ');
            write_float(out, d.value);
            out.push('}');
        }
        Value::Time(t) => super::funcs::write_time(out, *t),
    }
}

/// `fmt.Sprint`: operands separated by a space when neither side is a string.
pub fn sprint(args: &[Value<'_>]) -> String {
    let mut out = String::new();
    for (i, a) in args.iter().enumerate() {
        if i > 0 && !matches!(a, Value::Str(_)) && !matches!(args[i - 1], Value::Str(_)) {
            out.push(' ');
        }
        write_value(&mut out, a);
    }
    out
}

/// `fmt.Sprintln`: operands always separated by spaces, then a newline.
pub fn sprintln(args: &[Value<'_>]) -> String {
    let mut out = String::new();
    for (i, a) in args.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        write_value(&mut out, a);
    }
    out.push('\n');
    out
}

#[derive(Default, Clone, Copy)]
struct Spec {
    minus: bool,
    plus: bool,
    sharp: bool,
    space: bool,
    zero: bool,
    width: Option<usize>,
    prec: Option<usize>,
}

impl Spec {
    /// Pads `body` (already signed) to the width: left with spaces or zeros, or right.
    fn pad(&self, out: &mut String, body: &str, numeric: bool) {
        let len = body.chars().count();
        let w = self.width.unwrap_or(0);
        if len >= w {
            out.push_str(body);
            return;
        }
        let fill = w - len;
        if self.minus {
            out.push_str(body);
            out.extend(std::iter::repeat_n(' ', fill));
        } else if self.zero && numeric {
            // Zero padding goes after the sign.
            let (sign, rest) = match body.as_bytes().first() {
                Some(b'+' | b'-' | b' ') => body.split_at(1),
                _ => ("", body),
            };
            out.push_str(sign);
            out.extend(std::iter::repeat_n('0', fill));
            out.push_str(rest);
        } else {
            out.extend(std::iter::repeat_n(' ', fill));
            out.push_str(body);
        }
    }

    fn sign(&self, neg: bool, body: &mut String) {
        if neg {
            body.push('-');
        } else if self.plus {
            body.push('+');
        } else if self.space {
            body.push(' ');
        }
    }
}

fn go_type(v: &Value<'_>) -> &'static str {
    match v {
        Value::Nil => "<nil>",
        Value::Bool(_) => "bool",
        Value::Int(_) => "int",
        Value::Float(_) => "float64",
        Value::Str(_) => "string",
        Value::Labels(_) => "map[string]string",
        Value::Map(_) => "map[string]interface {}",
        Value::Sample(_) => "*template.sample",
        Value::Samples(_) => "template.queryResult",
        Value::Data(_) => "struct",
        Value::Time(_) => "*time.Time",
    }
}

/// Go's `%!verb(type=value)`, the value printed with `%v` under the same flags.
fn bad_verb(out: &mut String, spec: &Spec, verb: char, v: &Value<'_>) {
    let _ = write!(out, "%!{verb}({}=", go_type(v));
    fmt_arg(out, spec, 'v', v);
    out.push(')');
}

/// Go's `strconv.Quote`.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\x0b' => out.push_str("\\v"),
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
    out.push('"');
    out
}

fn fmt_int(out: &mut String, spec: &Spec, verb: char, i: i64) {
    let neg = i < 0;
    let mag = i.unsigned_abs();
    let digits = match verb {
        'd' | 'v' => mag.to_string(),
        'x' => format!("{mag:x}"),
        'X' => format!("{mag:X}"),
        'o' => format!("{mag:o}"),
        'O' => format!("{mag:o}"),
        'b' => format!("{mag:b}"),
        _ => mag.to_string(),
    };
    let mut body = String::new();
    spec.sign(neg, &mut body);
    if spec.sharp {
        match verb {
            'x' => body.push_str("0x"),
            'X' => body.push_str("0X"),
            'o' if !digits.starts_with('0') => body.push('0'),
            'b' => body.push_str("0b"),
            _ => {}
        }
    }
    if verb == 'O' {
        body.push_str("0o");
    }
    if let Some(p) = spec.prec {
        if p == 0 && mag == 0 {
            // Go prints nothing for %.0d of zero.
        } else {
            body.extend(std::iter::repeat_n('0', p.saturating_sub(digits.len())));
            body.push_str(&digits);
        }
        // A precision turns off zero padding.
        let mut s = *spec;
        s.zero = false;
        s.pad(out, &body, true);
        return;
    }
    body.push_str(&digits);
    spec.pad(out, &body, true);
}

fn fmt_float(out: &mut String, spec: &Spec, verb: char, f: f64) {
    let mut body = String::new();
    if let Some(s) = special(f) {
        if f.is_nan() {
            if spec.plus {
                body.push('+');
            } else if spec.space {
                body.push(' ');
            }
            body.push_str(s);
        } else if f > 0.0 && spec.space && !spec.plus {
            body.push_str(" Inf");
        } else {
            body.push_str(s);
        }
        let mut sp = *spec;
        sp.zero = false;
        sp.pad(out, &body, true);
        return;
    }
    spec.sign(f.is_sign_negative(), &mut body);
    let a = f.abs();
    let mut num = String::new();
    match verb {
        'f' | 'F' => {
            let _ = write!(num, "{:.*}", spec.prec.unwrap_or(6), a);
        }
        'e' | 'E' => {
            let p = spec.prec.unwrap_or(6);
            let (d, dp) = digits(a, Some(p + 1));
            fmt_e(&mut num, &d, dp, p, verb);
        }
        'x' | 'X' => fmt_hex_float(&mut num, a, spec.prec, verb == 'X'),
        'G' => fmt_g(&mut num, a, spec.prec, true),
        _ => fmt_g(&mut num, a, spec.prec, false),
    }
    if spec.sharp {
        sharp_float(&mut num, verb, spec.prec);
    }
    body.push_str(&num);
    spec.pad(out, &body, true);
}

/// Go's `#` flag on floats: always a decimal point, and `%#g` keeps trailing zeros up to the
/// precision (6 by default).
fn sharp_float(num: &mut String, verb: char, prec: Option<usize>) {
    let mut digits: i64 = match verb {
        'v' | 'g' | 'G' | 'x' | 'X' => prec.map_or(6, |p| p as i64),
        _ => 0,
    };
    let tail_at = num
        .char_indices()
        .find(|&(_, c)| {
            matches!(c, 'p' | 'P') || (matches!(c, 'e' | 'E') && !matches!(verb, 'x' | 'X'))
        })
        .map_or(num.len(), |(i, _)| i);
    let tail = num.split_off(tail_at);
    let mut seen_nonzero = false;
    let mut has_point = false;
    for c in num.chars() {
        match c {
            '.' => has_point = true,
            c if c.is_ascii_hexdigit() => {
                if c != '0' {
                    seen_nonzero = true;
                }
                if seen_nonzero {
                    digits -= 1;
                }
            }
            _ => {}
        }
    }
    if !has_point {
        if num == "0" {
            digits -= 1;
        }
        num.push('.');
    }
    while digits > 0 {
        num.push('0');
        digits -= 1;
    }
    num.push_str(&tail);
}

/// strconv's `'x'` format: `0x1.8p+00` (shortest mantissa; a precision pads or cuts it).
fn fmt_hex_float(out: &mut String, a: f64, prec: Option<usize>, upper: bool) {
    let bits = a.to_bits();
    let raw_exp = ((bits >> 52) & 0x7ff) as i64;
    let mut mant = bits & ((1u64 << 52) - 1);
    let (lead, exp) = if raw_exp == 0 && mant == 0 {
        (0, 0)
    } else if raw_exp == 0 {
        // Subnormal: normalize so the leading digit is 1, as Go does.
        let mut e = -1022;
        while mant & (1u64 << 52) == 0 {
            mant <<= 1;
            e -= 1;
        }
        mant &= (1u64 << 52) - 1;
        (1, e)
    } else {
        (1, raw_exp - 1023)
    };
    let mut frac = format!("{mant:013x}");
    match prec {
        None => {
            while frac.ends_with('0') {
                frac.pop();
            }
        }
        Some(p) => {
            frac.truncate(p.min(13));
            while frac.len() < p {
                frac.push('0');
            }
        }
    }
    let mut s = format!("0x{lead}");
    if !frac.is_empty() {
        s.push('.');
        s.push_str(&frac);
    }
    let _ = write!(
        s,
        "p{}{:02}",
        if exp < 0 { '-' } else { '+' },
        exp.unsigned_abs()
    );
    if upper {
        s = s.to_uppercase();
    }
    out.push_str(&s);
}

fn fmt_str(out: &mut String, spec: &Spec, verb: char, s: &str) {
    match verb {
        'v' if spec.sharp => spec.pad(out, &quote(s), false),
        's' | 'v' => {
            let s = match spec.prec {
                Some(p) => s.char_indices().nth(p).map_or(s, |(i, _)| &s[..i]),
                None => s,
            };
            spec.pad(out, s, false);
        }
        'q' => spec.pad(out, &quote(s), false),
        'x' | 'X' => {
            let mut body = String::new();
            for (i, b) in s.bytes().enumerate() {
                if spec.space && i > 0 {
                    body.push(' ');
                }
                if spec.sharp && (i == 0 || spec.space) {
                    body.push_str(if verb == 'x' { "0x" } else { "0X" });
                }
                if verb == 'x' {
                    let _ = write!(body, "{b:02x}");
                } else {
                    let _ = write!(body, "{b:02X}");
                }
            }
            spec.pad(out, &body, false);
        }
        _ => bad_verb(out, spec, verb, &Value::Str(s.into())),
    }
}

fn fmt_arg(out: &mut String, spec: &Spec, verb: char, v: &Value<'_>) {
    if verb == 'T' {
        spec.pad(out, go_type(v), false);
        return;
    }
    match v {
        Value::Bool(b) => match verb {
            't' | 'v' => spec.pad(out, if *b { "true" } else { "false" }, false),
            _ => bad_verb(out, spec, verb, v),
        },
        Value::Int(i) => match verb {
            'd' | 'v' | 'x' | 'X' | 'o' | 'O' | 'b' => fmt_int(out, spec, verb, *i),
            'U' => {
                let mut body = match u32::try_from(*i) {
                    Ok(u) => format!("U+{u:04X}"),
                    Err(_) => format!("U+{:04X}", *i as u64),
                };
                if spec.sharp {
                    if let Some(c) = u32::try_from(*i).ok().and_then(char::from_u32) {
                        body.push_str(&format!(" '{c}'"));
                    }
                }
                spec.pad(out, &body, false);
            }
            'c' => {
                let c = u32::try_from(*i)
                    .ok()
                    .and_then(char::from_u32)
                    .unwrap_or('\u{FFFD}');
                spec.pad(out, c.encode_utf8(&mut [0; 4]), false);
            }
            'q' => {
                let c = u32::try_from(*i)
                    .ok()
                    .and_then(char::from_u32)
                    .unwrap_or('\u{FFFD}');
                let q = quote(c.encode_utf8(&mut [0; 4]));
                let inner = q.get(1..q.len() - 1).unwrap_or("");
                let inner = if inner == "'" { "\\'" } else { inner };
                let inner = if inner == "\\\"" { "\"" } else { inner };
                spec.pad(out, &format!("'{inner}'"), false);
            }
            'e' | 'E' | 'f' | 'F' | 'g' | 'G' => bad_verb(out, spec, verb, v),
            _ => bad_verb(out, spec, verb, v),
        },
        Value::Float(f) => match verb {
            'v' | 'g' | 'G' | 'e' | 'E' | 'f' | 'F' | 'x' | 'X' => fmt_float(out, spec, verb, *f),
            _ => bad_verb(out, spec, verb, v),
        },
        Value::Str(s) => fmt_str(out, spec, verb, s),
        Value::Nil => match verb {
            'v' => spec.pad(out, "<nil>", false),
            _ => {
                let _ = write!(out, "%!{verb}(<nil>)");
            }
        },
        // Go formats a slice element by element; its elements are pointers, which only `%v`
        // prints (as addresses in Go, as their values here).
        Value::Samples(samples) if verb != 'v' => {
            out.push('[');
            for (i, s) in samples.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                bad_verb(out, spec, verb, &Value::Sample(std::rc::Rc::new(s.clone())));
            }
            out.push(']');
        }
        _ => match verb {
            'v' | 's' => {
                let mut s = String::new();
                write_value(&mut s, v);
                spec.pad(out, &s, false);
            }
            _ => bad_verb(out, spec, verb, v),
        },
    }
}

/// `fmt.Sprintf` over template values: flags `+-# 0`, width and precision (also `*`),
/// verbs `v s q d x X o O b c t e E f F g G %`, Go's `%!verb(type=value)`, `%!verb(MISSING)`
/// and `%!(EXTRA ...)` for mismatches.
pub fn sprintf(format: &str, args: &[Value<'_>]) -> String {
    let mut out = String::with_capacity(format.len() + 16);
    let mut argn = 0usize;
    // `%[n]d` picks the argument; Go then stops complaining about extra arguments.
    let mut reordered = false;
    let mut chars = format.char_indices().peekable();
    let mut arg_index = |chars: &mut std::iter::Peekable<std::str::CharIndices<'_>>,
                         argn: &mut usize,
                         bad: &mut bool| {
        if chars.peek().map(|c| c.1) != Some('[') {
            return;
        }
        chars.next();
        reordered = true;
        let mut n = 0usize;
        let mut digits = 0;
        while let Some(&(_, d)) = chars.peek() {
            let Some(v) = d.to_digit(10) else { break };
            n = (n * 10 + v as usize).min(1 << 16);
            digits += 1;
            chars.next();
        }
        if chars.peek().map(|c| c.1) == Some(']') && digits > 0 && n >= 1 && n <= args.len() {
            chars.next();
            *argn = n - 1;
        } else {
            // Skip to the closing bracket, as Go does, and mark the verb bad.
            for (_, c) in chars.by_ref() {
                if c == ']' {
                    break;
                }
            }
            *bad = true;
        }
    };
    while let Some((_, c)) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut spec = Spec::default();
        while let Some(&(_, f)) = chars.peek() {
            match f {
                '-' => spec.minus = true,
                '+' => spec.plus = true,
                '#' => spec.sharp = true,
                ' ' => spec.space = true,
                '0' => spec.zero = !spec.minus,
                _ => break,
            }
            chars.next();
        }
        let mut bad_index = false;
        arg_index(&mut chars, &mut argn, &mut bad_index);
        // Width.
        if let Some(&(_, '*')) = chars.peek() {
            chars.next();
            match args.get(argn) {
                Some(Value::Int(w)) => {
                    if *w < 0 {
                        spec.minus = true;
                    }
                    spec.width = Some(w.unsigned_abs().min(1 << 16) as usize);
                }
                _ => out.push_str("%!(BADWIDTH)"),
            }
            argn += 1;
        } else {
            let mut w = None::<usize>;
            while let Some(&(_, d)) = chars.peek() {
                let Some(v) = d.to_digit(10) else { break };
                w = Some((w.unwrap_or(0) * 10 + v as usize).min(1 << 16));
                chars.next();
            }
            spec.width = w;
        }
        // Precision.
        if let Some(&(_, '.')) = chars.peek() {
            chars.next();
            arg_index(&mut chars, &mut argn, &mut bad_index);
            if let Some(&(_, '*')) = chars.peek() {
                chars.next();
                match args.get(argn) {
                    Some(Value::Int(p)) if *p >= 0 => spec.prec = Some((*p).min(1 << 16) as usize),
                    _ => out.push_str("%!(BADPREC)"),
                }
                argn += 1;
            } else {
                let mut p = 0usize;
                while let Some(&(_, d)) = chars.peek() {
                    let Some(v) = d.to_digit(10) else { break };
                    p = (p * 10 + v as usize).min(1 << 16);
                    chars.next();
                }
                spec.prec = Some(p);
            }
        }
        if spec.minus {
            spec.zero = false;
        }
        arg_index(&mut chars, &mut argn, &mut bad_index);
        let Some((_, verb)) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        if bad_index {
            let _ = write!(out, "%!{verb}(BADINDEX)");
            continue;
        }
        match args.get(argn) {
            Some(a) => fmt_arg(&mut out, &spec, verb, a),
            None => {
                let _ = write!(out, "%!{verb}(MISSING)");
            }
        }
        argn += 1;
    }
    if !reordered && argn < args.len() {
        out.push_str("%!(EXTRA ");
        for (i, a) in args.iter().enumerate().skip(argn) {
            if i > argn {
                out.push_str(", ");
            }
            let _ = write!(out, "{}=", go_type(a));
            write_value(&mut out, a);
        }
        out.push(')');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(f: f64) -> String {
        let mut s = String::new();
        write_float(&mut s, f);
        s
    }

    #[test]
    fn floats_print_as_go_v() {
        assert_eq!(v(1e6), "1e+06");
        assert_eq!(v(100.0), "100");
        assert_eq!(v(0.1), "0.1");
        assert_eq!(v(123456.0), "123456");
        assert_eq!(v(1234567.0), "1.234567e+06");
        assert_eq!(v(0.0001), "0.0001");
        assert_eq!(v(0.00001), "1e-05");
        assert_eq!(v(-2.5), "-2.5");
        assert_eq!(v(0.0), "0");
        assert_eq!(v(f64::NAN), "NaN");
        assert_eq!(v(f64::INFINITY), "+Inf");
        assert_eq!(v(f64::NEG_INFINITY), "-Inf");
        assert_eq!(v(1e21), "1e+21");
        assert_eq!(v(5e-324), "5e-324");
    }

    #[test]
    fn g_with_precision_matches_go() {
        assert_eq!(format_g(1.2345678, 4), "1.235");
        assert_eq!(format_g(1234.5678, 4), "1235");
        assert_eq!(format_g(12345.678, 4), "1.235e+04");
        assert_eq!(format_g(0.0, 4), "0");
        assert_eq!(format_g(1.5, 4), "1.5");
        assert_eq!(format_g(100.0, 4), "100");
        assert_eq!(format_g(0.000012345, 4), "1.234e-05");
        assert_eq!(format_g(-3.0, 4), "-3");
    }

    #[test]
    fn printf_verbs_match_go() {
        let s = |f: &str, a: &[Value<'_>]| sprintf(f, a);
        assert_eq!(s("%d", &[Value::Int(42)]), "42");
        assert_eq!(
            s(
                "%5d|%-5d|%05d",
                &[Value::Int(42), Value::Int(42), Value::Int(-42)]
            ),
            "   42|42   |-0042"
        );
        assert_eq!(s("%.2f", &[Value::Float(2.74681)]), "2.75");
        assert_eq!(s("%5.1f", &[Value::Float(2.74681)]), "  2.7");
        assert_eq!(s("%f", &[Value::Float(1.5)]), "1.500000");
        assert_eq!(s("%e", &[Value::Float(1234.5678)]), "1.234568e+03");
        assert_eq!(s("%g", &[Value::Float(1e6)]), "1e+06");
        assert_eq!(s("%v", &[Value::Float(0.5)]), "0.5");
        assert_eq!(s("%s", &[Value::Str("x".into())]), "x");
        assert_eq!(s("%q", &[Value::Str("a\"b\n".into())]), "\"a\\\"b\\n\"");
        assert_eq!(s("%x", &[Value::Int(255)]), "ff");
        assert_eq!(s("%X", &[Value::Str("hi".into())]), "6869");
        assert_eq!(s("%t", &[Value::Bool(true)]), "true");
        assert_eq!(s("100%%", &[]), "100%");
        assert_eq!(s("%d", &[Value::Str("x".into())]), "%!d(string=x)");
        assert_eq!(s("%d", &[Value::Float(1.5)]), "%!d(float64=1.5)");
        assert_eq!(s("%d %d", &[Value::Int(1)]), "1 %!d(MISSING)");
        assert_eq!(
            s("%d", &[Value::Int(1), Value::Str("y".into())]),
            "1%!(EXTRA string=y)"
        );
        assert_eq!(s("%+.1e", &[Value::Float(-0.0)]), "-0.0e+00");
        assert_eq!(s("%f", &[Value::Float(f64::INFINITY)]), "+Inf");
        assert_eq!(s("%.3s", &[Value::Str("abcdef".into())]), "abc");
        assert_eq!(s("%c", &[Value::Int(65)]), "A");
    }

    #[test]
    fn print_spacing_matches_go() {
        assert_eq!(sprint(&[Value::Int(1), Value::Int(2)]), "1 2");
        assert_eq!(sprint(&[Value::Str("a".into()), Value::Int(2)]), "a2");
        assert_eq!(sprintln(&[Value::Str("a".into()), Value::Int(2)]), "a 2\n");
    }
}
