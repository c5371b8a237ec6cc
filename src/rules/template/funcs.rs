//! Template functions: Go's builtins (`len`, `index`, `slice`, `print*`, comparisons, `html`,
//! `js`, `urlquery`; `and`/`or` short-circuit in the executor) and Prometheus 2.42's
//! (`template.NewTemplateExpander`: `query`, `first`, `label`, `value`, `humanize*`, ...).
//! Errors are the text Go's function returns; the executor adds `error calling NAME: `.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::rc::Rc;

use super::gofmt::{format_g, sprint, sprintf, sprintln};
use super::value::Value;
use super::{QueryFn, QuerySample};

/// Every function name a template may call (Go refuses other names at parse time).
pub const NAMES: &[&str] = &[
    // Go builtins.
    "and",
    "call",
    "eq",
    "ge",
    "gt",
    "html",
    "index",
    "js",
    "le",
    "len",
    "lt",
    "ne",
    "not",
    "or",
    "print",
    "printf",
    "println",
    "slice",
    "urlquery",
    // Prometheus.
    "args",
    "externalURL",
    "first",
    "graphLink",
    "humanize",
    "humanize1024",
    "humanizeDuration",
    "humanizePercentage",
    "humanizeTimestamp",
    "label",
    "match",
    "parseDuration",
    "pathPrefix",
    "query",
    "reReplaceAll",
    "safeHtml",
    "sortByLabel",
    "stripDomain",
    "stripPort",
    "strvalue",
    "tableLink",
    "title",
    "toLower",
    "toTime",
    "toUpper",
    "value",
];

pub fn exists(name: &str) -> bool {
    NAMES.contains(&name)
}

/// What functions see of the expansion: the query runner and the external URL.
pub struct Ctx<'q> {
    pub query: &'q dyn QueryFn,
    pub external_url: &'q str,
    pub regexes: &'q super::RegexCache,
}

/// Why a call failed: Go checks arity and argument types before calling (the executor words
/// those from the argument nodes); the rest is the function's own error.
#[derive(Debug)]
pub enum FuncErr {
    Arity(String),
    Type {
        idx: usize,
        expected: &'static str,
        got: &'static str,
    },
    Call(String),
}

impl From<String> for FuncErr {
    fn from(s: String) -> FuncErr {
        FuncErr::Call(s)
    }
}

impl From<&str> for FuncErr {
    fn from(s: &str) -> FuncErr {
        FuncErr::Call(s.to_string())
    }
}

fn want(name: &str, args: &[Value<'_>], n: usize) -> Result<(), FuncErr> {
    if args.len() != n {
        return Err(FuncErr::Arity(format!(
            "wrong number of args for {name}: want {n} got {}",
            args.len()
        )));
    }
    Ok(())
}

fn wrong_type(idx: usize, expected: &'static str, got: &Value<'_>) -> FuncErr {
    FuncErr::Type {
        idx,
        expected,
        got: got.type_name(),
    }
}

fn string_arg<'v>(args: &'v [Value<'_>], idx: usize) -> Result<&'v str, FuncErr> {
    match args.get(idx) {
        Some(Value::Str(s)) => Ok(s),
        other => Err(wrong_type(idx, "string", other.unwrap_or(&Value::Nil))),
    }
}

fn sample_arg(args: &[Value<'_>], idx: usize) -> Result<Rc<QuerySample>, FuncErr> {
    match args.get(idx) {
        Some(Value::Sample(s)) => Ok(s.clone()),
        other => Err(wrong_type(
            idx,
            "*template.sample",
            other.unwrap_or(&Value::Nil),
        )),
    }
}

fn samples_arg(args: &[Value<'_>], idx: usize) -> Result<Rc<Vec<QuerySample>>, FuncErr> {
    match args.get(idx) {
        Some(Value::Samples(s)) => Ok(s.clone()),
        Some(Value::Nil) => Ok(Rc::new(Vec::new())),
        other => Err(wrong_type(
            idx,
            "template.queryResult",
            other.unwrap_or(&Value::Nil),
        )),
    }
}

/// Prometheus' `convertToFloat`.
fn to_float(v: &Value<'_>) -> Result<f64, String> {
    match v {
        Value::Float(f) => Ok(*f),
        Value::Int(i) => Ok(*i as f64),
        Value::Str(s) => parse_float(s),
        other => Err(format!("can't convert {} to float", other.type_name())),
    }
}

/// Go's `strconv.ParseFloat(s, 64)` for decimal input.
pub fn parse_float(s: &str) -> Result<f64, String> {
    let lower = s.to_ascii_lowercase();
    let body = lower.trim_start_matches(['+', '-']);
    let ok_chars = body
        .bytes()
        .all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'+' | b'-'));
    if ok_chars || matches!(body, "inf" | "infinity" | "nan") {
        if let Ok(f) = s.parse::<f64>() {
            return Ok(f);
        }
    }
    Err(format!(
        "strconv.ParseFloat: parsing {}: invalid syntax",
        super::gofmt::quote(s)
    ))
}

fn str_val<'a>(s: String) -> Value<'a> {
    Value::Str(Cow::Owned(s))
}

/// Calls `name` (every name but `and`/`or`, which the executor evaluates lazily).
pub fn call<'a>(name: &str, args: Vec<Value<'a>>, ctx: &Ctx<'_>) -> Result<Value<'a>, FuncErr> {
    match name {
        "not" => {
            want(name, &args, 1)?;
            Ok(Value::Bool(!args[0].truth()))
        }
        "len" => {
            want(name, &args, 1)?;
            let n = match &args[0] {
                Value::Str(s) => s.len(),
                Value::Labels(l) => l.len(),
                Value::Map(m) => m.len(),
                Value::Samples(v) => v.len(),
                other => return Err(format!("len of type {}", other.type_name()).into()),
            };
            Ok(Value::Int(n as i64))
        }
        "index" => Ok(index(args)?),
        "slice" => Ok(slice(args)?),
        "print" => Ok(str_val(sprint(&args))),
        "println" => Ok(str_val(sprintln(&args))),
        "printf" => {
            if args.is_empty() {
                return Err(FuncErr::Arity(format!(
                    "wrong number of args for {name}: want at least 1 got 0"
                )));
            }
            let f = string_arg(&args, 0)?;
            Ok(str_val(sprintf(f, &args[1..])))
        }
        "eq" => {
            if args.len() < 2 {
                return Err(FuncErr::Call("missing argument for comparison".into()));
            }
            for b in &args[1..] {
                if equal(&args[0], b)? {
                    return Ok(Value::Bool(true));
                }
            }
            Ok(Value::Bool(false))
        }
        "ne" => {
            want(name, &args, 2)?;
            Ok(Value::Bool(
                compare(&args[0], &args[1])? != Some(std::cmp::Ordering::Equal),
            ))
        }
        "lt" | "le" | "gt" | "ge" => {
            want(name, &args, 2)?;
            if matches!(args[0], Value::Bool(_) | Value::Nil)
                || matches!(args[1], Value::Bool(_) | Value::Nil)
            {
                return Err(FuncErr::Call("invalid type for comparison".into()));
            }
            let Some(o) = compare(&args[0], &args[1])? else {
                // NaN compares false everywhere, as Go's < and <= on floats.
                return Ok(Value::Bool(false));
            };
            use std::cmp::Ordering::*;
            Ok(Value::Bool(match name {
                "lt" => o == Less,
                "le" => o != Greater,
                "gt" => o == Greater,
                _ => o != Less,
            }))
        }
        "html" => Ok(str_val(html_escape(&eval_args(&args)))),
        "js" => Ok(str_val(js_escape(&eval_args(&args)))),
        "urlquery" => Ok(str_val(query_escape(&eval_args(&args)))),
        "call" => match args.first() {
            None => Err(FuncErr::Arity(format!(
                "wrong number of args for {name}: want at least 1 got 0"
            ))),
            Some(Value::Nil) => Err("call of nil".into()),
            Some(v) => Err(format!("non-function of type {}", v.type_name()).into()),
        },
        "query" => {
            want(name, &args, 1)?;
            let q = string_arg(&args, 0)?;
            let r = ctx.query.query(q)?;
            Ok(Value::Samples(Rc::new(r)))
        }
        "first" => {
            want(name, &args, 1)?;
            let v = samples_arg(&args, 0)?;
            match v.first() {
                Some(s) => Ok(Value::Sample(Rc::new(s.clone()))),
                None => Err(FuncErr::Call(
                    "first() called on vector with no elements".into(),
                )),
            }
        }
        "label" => {
            want(name, &args, 2)?;
            let l = string_arg(&args, 0)?;
            let s = sample_arg(&args, 1)?;
            Ok(str_val(s.labels.get(l).unwrap_or("").to_string()))
        }
        "value" => {
            want(name, &args, 1)?;
            Ok(Value::Float(sample_arg(&args, 0)?.value))
        }
        "strvalue" => {
            want(name, &args, 1)?;
            let s = sample_arg(&args, 0)?;
            Ok(str_val(s.labels.get("__value__").unwrap_or("").to_string()))
        }
        "args" => {
            let mut m = BTreeMap::new();
            for (i, a) in args.into_iter().enumerate() {
                m.insert(format!("arg{i}"), a);
            }
            Ok(Value::Map(Rc::new(m)))
        }
        "reReplaceAll" => {
            want(name, &args, 3)?;
            let re = ctx.regexes.get(string_arg(&args, 0)?)?;
            let repl = string_arg(&args, 1)?;
            let text = string_arg(&args, 2)?;
            Ok(str_val(re.replace_all(text, repl).into_owned()))
        }
        "match" => {
            want(name, &args, 2)?;
            let re = ctx.regexes.get(string_arg(&args, 0)?)?;
            Ok(Value::Bool(re.is_match(string_arg(&args, 1)?)))
        }
        "safeHtml" => {
            want(name, &args, 1)?;
            Ok(str_val(string_arg(&args, 0)?.to_string()))
        }
        "title" => {
            want(name, &args, 1)?;
            Ok(str_val(title(string_arg(&args, 0)?)))
        }
        "toUpper" => {
            want(name, &args, 1)?;
            Ok(str_val(simple_case(string_arg(&args, 0)?, true)))
        }
        "toLower" => {
            want(name, &args, 1)?;
            Ok(str_val(simple_case(string_arg(&args, 0)?, false)))
        }
        "graphLink" | "tableLink" => {
            want(name, &args, 1)?;
            let e = query_escape(string_arg(&args, 0)?);
            let tab = if name == "graphLink" { 0 } else { 1 };
            Ok(str_val(format!("/graph?g0.expr={e}&g0.tab={tab}")))
        }
        "sortByLabel" => {
            want(name, &args, 2)?;
            let l = string_arg(&args, 0)?;
            let v = samples_arg(&args, 1)?;
            let mut sorted: Vec<QuerySample> = v.as_ref().clone();
            // Stable, by the label's value (missing sorts as "").
            sorted.sort_by(|a, b| {
                a.labels
                    .get(l)
                    .unwrap_or("")
                    .cmp(b.labels.get(l).unwrap_or(""))
            });
            Ok(Value::Samples(Rc::new(sorted)))
        }
        "stripPort" => {
            want(name, &args, 1)?;
            let hp = string_arg(&args, 0)?;
            Ok(str_val(match split_host_port(hp) {
                Some((h, _)) => h.to_string(),
                None => hp.to_string(),
            }))
        }
        "stripDomain" => {
            want(name, &args, 1)?;
            let hp = string_arg(&args, 0)?;
            Ok(str_val(strip_domain(hp)))
        }
        "humanize" => {
            want(name, &args, 1)?;
            Ok(str_val(humanize(to_float(&args[0])?)))
        }
        "humanize1024" => {
            want(name, &args, 1)?;
            Ok(str_val(humanize1024(to_float(&args[0])?)))
        }
        "humanizeDuration" => {
            want(name, &args, 1)?;
            Ok(str_val(humanize_duration(to_float(&args[0])?)))
        }
        "humanizePercentage" => {
            want(name, &args, 1)?;
            Ok(str_val(format!(
                "{}%",
                format_g(to_float(&args[0])? * 100.0, 4)
            )))
        }
        "humanizeTimestamp" => {
            want(name, &args, 1)?;
            let v = to_float(&args[0])?;
            if v.is_nan() || v.is_infinite() {
                return Ok(str_val(format_g(v, 4)));
            }
            let mut s = String::new();
            write_time(&mut s, float_to_time(v)?);
            Ok(str_val(s))
        }
        "toTime" => {
            want(name, &args, 1)?;
            let v = to_float(&args[0])?;
            if v.is_nan() || v.is_infinite() {
                return Err(FuncErr::Call("value is NaN or Inf".into()));
            }
            Ok(Value::Time(float_to_time(v)?))
        }
        "pathPrefix" => {
            want(name, &args, 0)?;
            Ok(str_val(url_path(ctx.external_url).to_string()))
        }
        "externalURL" => {
            want(name, &args, 0)?;
            Ok(str_val(ctx.external_url.to_string()))
        }
        "parseDuration" => {
            want(name, &args, 1)?;
            let s = string_arg(&args, 0)?;
            let d: crate::config::Duration = s.parse().map_err(FuncErr::Call)?;
            Ok(Value::Float(d.as_millis() as f64 / 1000.0))
        }
        _ => Err(format!("function {} not defined", super::gofmt::quote(name)).into()),
    }
}

/// Go's `evalArgs` for the escapers: a single string as is, anything else through `Sprint`.
fn eval_args(args: &[Value<'_>]) -> String {
    match args {
        [Value::Str(s)] => s.to_string(),
        _ => sprint(args),
    }
}

fn index<'a>(mut args: Vec<Value<'a>>) -> Result<Value<'a>, String> {
    if args.is_empty() {
        return Err("wrong number of args for index: want at least 1 got 0".into());
    }
    let rest = args.split_off(1);
    let mut item = args.pop().unwrap_or(Value::Nil);
    for idx in rest {
        item = match (&item, &idx) {
            (Value::Labels(l), Value::Str(k)) => l.get(k),
            (Value::Map(m), Value::Str(k)) => m.get(k.as_ref()).cloned().unwrap_or(Value::Nil),
            (Value::Labels(_) | Value::Map(_), other) => {
                return Err(format!(
                    "value has type {}; should be string",
                    other.type_name()
                ));
            }
            (Value::Samples(v), Value::Int(i)) => {
                let s = usize::try_from(*i)
                    .ok()
                    .and_then(|i| v.get(i))
                    .ok_or_else(|| format!("index out of range: {i}"))?;
                Value::Sample(Rc::new(s.clone()))
            }
            (Value::Str(s), Value::Int(i)) => {
                let b = usize::try_from(*i)
                    .ok()
                    .and_then(|i| s.as_bytes().get(i))
                    .ok_or_else(|| format!("index out of range: {i}"))?;
                Value::Int(i64::from(*b))
            }
            (Value::Samples(_) | Value::Str(_), other) => {
                return Err(format!(
                    "cannot index slice/array with type {}",
                    other.type_name()
                ));
            }
            (Value::Nil, _) => return Err("index of untyped nil".into()),
            (other, _) => return Err(format!("can't index item of type {}", other.type_name())),
        };
    }
    Ok(item)
}

fn slice<'a>(args: Vec<Value<'a>>) -> Result<Value<'a>, String> {
    let Some(item) = args.first() else {
        return Err("wrong number of args for slice: want at least 1 got 0".into());
    };
    if args.len() > 4 {
        return Err(format!("too many slice indexes: {}", args.len() - 1));
    }
    let len = match item {
        Value::Str(s) => s.len(),
        Value::Samples(v) => v.len(),
        Value::Nil => return Err("slice of untyped nil".into()),
        other => return Err(format!("can't slice item of type {}", other.type_name())),
    };
    let mut idx = [0usize, len, len];
    for (k, a) in args[1..].iter().enumerate() {
        let Value::Int(i) = a else {
            return Err(format!(
                "cannot index slice/array with type {}",
                a.type_name()
            ));
        };
        let i = usize::try_from(*i).map_err(|_| format!("index out of range: {i}"))?;
        if i > len {
            return Err(format!("index out of range: {i}"));
        }
        idx[k] = i;
    }
    if matches!(item, Value::Str(_)) && args.len() == 4 {
        return Err("cannot 3-index slice a string".into());
    }
    if idx[0] > idx[1] {
        return Err(format!("invalid slice index: {} > {}", idx[0], idx[1]));
    }
    match item {
        Value::Str(s) => s
            .get(idx[0]..idx[1])
            .map(|t| str_val(t.to_string()))
            .ok_or_else(|| "slice splits a UTF-8 sequence".to_string()),
        Value::Samples(v) => Ok(Value::Samples(Rc::new(v[idx[0]..idx[1]].to_vec()))),
        _ => Ok(Value::Nil),
    }
}

/// Go's `eq`/`lt` on basic kinds: same kind only (int with int, float with float, string with
/// string, bool with bool); `None` when unordered (NaN).
fn compare(a: &Value<'_>, b: &Value<'_>) -> Result<Option<std::cmp::Ordering>, String> {
    match (a, b) {
        (Value::Bool(x), Value::Bool(y)) => Ok(Some(x.cmp(y))),
        (Value::Int(x), Value::Int(y)) => Ok(Some(x.cmp(y))),
        (Value::Float(x), Value::Float(y)) => Ok(x.partial_cmp(y)),
        (Value::Str(x), Value::Str(y)) => Ok(Some(x.as_ref().cmp(y.as_ref()))),
        (Value::Nil, Value::Nil) => Ok(Some(std::cmp::Ordering::Equal)),
        (Value::Nil, _) | (_, Value::Nil) => Err("invalid type for comparison".into()),
        (
            Value::Bool(_) | Value::Int(_) | Value::Float(_) | Value::Str(_),
            Value::Bool(_) | Value::Int(_) | Value::Float(_) | Value::Str(_),
        ) => Err("incompatible types for comparison".into()),
        _ => Err("invalid type for comparison".into()),
    }
}

/// Go's `eq` of two operands: basic kinds of the same kind compare; a nil never equals a
/// value (and is no error); maps and slices are not comparable.
fn equal(a: &Value<'_>, b: &Value<'_>) -> Result<bool, String> {
    match (a, b) {
        (Value::Nil, Value::Nil) => Ok(true),
        (Value::Nil, _) | (_, Value::Nil) => Ok(false),
        (Value::Sample(x), Value::Sample(y)) => Ok(Rc::ptr_eq(x, y)),
        (Value::Time(x), Value::Time(y)) => Ok(x == y),
        (
            Value::Labels(_) | Value::Map(_) | Value::Samples(_),
            Value::Labels(_) | Value::Map(_) | Value::Samples(_),
        ) => Err(format!(
            "non-comparable type {}: {}",
            sprint(std::slice::from_ref(b)),
            b.type_name()
        )),
        _ => Ok(compare(a, b)? == Some(std::cmp::Ordering::Equal)),
    }
}

/// Go's `template.HTMLEscapeString`.
pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("&#34;"),
            '\'' => out.push_str("&#39;"),
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\0' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// Go's `template.JSEscapeString`.
pub fn js_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '"' => out.push_str("\\\""),
            '<' => out.push_str("\\u003C"),
            '>' => out.push_str("\\u003E"),
            '&' => out.push_str("\\u0026"),
            '=' => out.push_str("\\u003D"),
            // Go escapes what unicode.IsPrint refuses (controls, U+2028, ...).
            c if c.is_control() || (c.is_whitespace() && c != ' ') => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// Go's `url.QueryEscape`.
pub fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            b => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

/// Go's `strings.ToUpper`/`ToLower`: rune by rune (simple case mapping), so `ß` stays `ß`
/// where Rust's full mapping would give `SS`.
fn simple_case(s: &str, upper: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        out.push(one_case(c, upper));
    }
    out
}

fn one_case(c: char, upper: bool) -> char {
    if upper {
        let mut m = c.to_uppercase();
        match (m.next(), m.next()) {
            (Some(u), None) => u,
            _ => c,
        }
    } else {
        c.to_lowercase().next().unwrap_or(c)
    }
}

/// Go's (deprecated) `strings.Title`: upper-cases the first letter of each word.
fn title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut prev_sep = true;
    for c in s.chars() {
        if prev_sep {
            out.push(one_case(c, true));
        } else {
            out.push(c);
        }
        prev_sep = if c.is_ascii() {
            !(c.is_ascii_alphanumeric() || c == '_')
        } else {
            !(c.is_alphabetic() || c.is_numeric()) && c.is_whitespace()
        };
    }
    out
}

/// Go's `net.SplitHostPort`; `None` where Go returns an error.
fn split_host_port(hp: &str) -> Option<(&str, &str)> {
    if let Some(rest) = hp.strip_prefix('[') {
        let end = rest.find(']')?;
        let host = &rest[..end];
        let after = &rest[end + 1..];
        let port = after.strip_prefix(':')?;
        if port.contains([':', '[', ']']) {
            return None;
        }
        return Some((host, port));
    }
    let i = hp.rfind(':')?;
    let (host, port) = (&hp[..i], &hp[i + 1..]);
    if host.contains(':') || host.contains(['[', ']']) || port.contains(['[', ']']) {
        return None;
    }
    Some((host, port))
}

fn strip_domain(hp: &str) -> String {
    let (host, port) = split_host_port(hp).unwrap_or((hp, ""));
    if host.parse::<std::net::IpAddr>().is_ok() {
        return hp.to_string();
    }
    let host = host.split('.').next().unwrap_or("");
    if port.is_empty() {
        host.to_string()
    } else if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Prometheus' `humanize`: SI prefixes, 4 significant digits.
pub fn humanize(mut v: f64) -> String {
    if v == 0.0 || v.is_nan() || v.is_infinite() {
        return format_g(v, 4);
    }
    let mut prefix = "";
    if v.abs() >= 1.0 {
        for p in ["k", "M", "G", "T", "P", "E", "Z", "Y"] {
            if v.abs() < 1000.0 {
                break;
            }
            prefix = p;
            v /= 1000.0;
        }
    } else {
        for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
            if v.abs() >= 1.0 {
                break;
            }
            prefix = p;
            v *= 1000.0;
        }
    }
    format!("{}{prefix}", format_g(v, 4))
}

/// Prometheus' `humanize1024`: binary prefixes above 1.
pub fn humanize1024(mut v: f64) -> String {
    if v.abs() <= 1.0 || v.is_nan() || v.is_infinite() {
        return format_g(v, 4);
    }
    let mut prefix = "";
    for p in ["ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"] {
        if v.abs() < 1024.0 {
            break;
        }
        prefix = p;
        v /= 1024.0;
    }
    format!("{}{prefix}", format_g(v, 4))
}

/// Prometheus' `humanizeDuration`: `1d 2h 3m 4s` from seconds, SI prefixes below one second.
pub fn humanize_duration(mut v: f64) -> String {
    if v.is_nan() || v.is_infinite() {
        return format_g(v, 4);
    }
    if v == 0.0 {
        return format!("{}s", format_g(v, 4));
    }
    if v.abs() >= 1.0 {
        let mut sign = "";
        if v < 0.0 {
            sign = "-";
            v = -v;
        }
        // Go's int64(v) saturates nowhere: out-of-range conversions are implementation
        // defined; Rust's `as` saturates, which is the sane reading.
        let d = v as i64;
        let (seconds, minutes, hours, days) = (d % 60, (d / 60) % 60, (d / 3600) % 24, d / 86400);
        if days != 0 {
            return format!("{sign}{days}d {hours}h {minutes}m {seconds}s");
        }
        if hours != 0 {
            return format!("{sign}{hours}h {minutes}m {seconds}s");
        }
        if minutes != 0 {
            return format!("{sign}{minutes}m {seconds}s");
        }
        return format!("{sign}{}s", format_g(v, 4));
    }
    let mut prefix = "";
    for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
        if v.abs() >= 1.0 {
            break;
        }
        prefix = p;
        v *= 1000.0;
    }
    format!("{}{prefix}s", format_g(v, 4))
}

/// Prometheus' `floatToTime`: seconds to a time, kept at millisecond precision as
/// `model.TimeFromUnixNano` truncates.
fn float_to_time(v: f64) -> Result<i64, String> {
    let ns = v * 1e9;
    if ns > i64::MAX as f64 || ns < i64::MIN as f64 {
        let mut s = String::new();
        super::gofmt::write_float(&mut s, v);
        return Err(format!(
            "{s} cannot be represented as a nanoseconds timestamp since it overflows int64"
        ));
    }
    Ok((ns as i64) / 1_000_000)
}

/// Go's `time.Time.String()` of a UTC time given in Unix milliseconds:
/// `2006-01-02 15:04:05.999999999 +0000 UTC` (fraction without trailing zeros).
pub fn write_time(out: &mut String, ms: i64) {
    let secs = ms.div_euclid(1000);
    let frac = ms.rem_euclid(1000);
    let days = secs.div_euclid(86400);
    let sod = secs.rem_euclid(86400);
    let (y, m, d) = civil_from_days(days);
    let _ = write!(
        out,
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60
    );
    if frac != 0 {
        let f = format!("{frac:03}");
        out.push('.');
        out.push_str(f.trim_end_matches('0'));
    }
    out.push_str(" +0000 UTC");
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// The path of a URL (`pathPrefix`): what follows `scheme://host` up to `?` or `#`.
fn url_path(u: &str) -> &str {
    let after_scheme = u.find("://").map_or(u, |i| &u[i + 3..]);
    let path = after_scheme.find('/').map_or("", |i| &after_scheme[i..]);
    let end = path.find(['?', '#']).unwrap_or(path.len());
    &path[..end]
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

/// The calendar fields of a UTC time in Unix milliseconds.
struct Civil {
    year: i64,
    month: u32,
    day: u32,
    hour: i64,
    minute: i64,
    second: i64,
    nanos: i64,
    weekday: usize,
    yday: i64,
}

fn civil(ms: i64) -> Civil {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86400);
    let sod = secs.rem_euclid(86400);
    let (year, month, day) = civil_from_days(days);
    let jan1 = days_from_civil(year, 1, 1);
    Civil {
        year,
        month,
        day,
        hour: sod / 3600,
        minute: (sod / 60) % 60,
        second: sod % 60,
        nanos: ms.rem_euclid(1000) * 1_000_000,
        // 1970-01-01 was a Thursday.
        weekday: (days + 4).rem_euclid(7) as usize,
        yday: days - jan1 + 1,
    }
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Methods of the `*time.Time` that `toTime` returns, called as fields (`.Unix`) or with
/// arguments (`.Format "2006-01-02"`).
pub fn time_method<'a>(ms: i64, name: &str, args: &[Value<'a>]) -> Result<Value<'a>, FuncErr> {
    let arity = |n: usize| want(name, args, n);
    let c = civil(ms);
    let v = match name {
        "Format" => {
            arity(1)?;
            return Ok(str_val(go_time_format(ms, string_arg(args, 0)?)));
        }
        "String" => {
            arity(0)?;
            let mut s = String::new();
            write_time(&mut s, ms);
            return Ok(str_val(s));
        }
        "UTC" => {
            arity(0)?;
            return Ok(Value::Time(ms));
        }
        "Unix" => ms.div_euclid(1000),
        "UnixMilli" => ms,
        "UnixMicro" => ms.saturating_mul(1000),
        "UnixNano" => ms.saturating_mul(1_000_000),
        "Year" => c.year,
        "Day" => i64::from(c.day),
        "Hour" => c.hour,
        "Minute" => c.minute,
        "Second" => c.second,
        "Nanosecond" => c.nanos,
        "YearDay" => c.yday,
        "Month" => {
            arity(0)?;
            return Ok(str_val(
                MONTHS[(c.month as usize).saturating_sub(1) % 12].to_string(),
            ));
        }
        "Weekday" => {
            arity(0)?;
            return Ok(str_val(DAYS[c.weekday % 7].to_string()));
        }
        _ => {
            return Err(FuncErr::Call(format!(
                "can't evaluate field {name} in type *time.Time"
            )))
        }
    };
    arity(0)?;
    Ok(Value::Int(v))
}

/// Go's `time.Time.Format` for a UTC time: the reference-time layout elements (`2006 06 01 1
/// Jan January 02 2 _2 002 15 03 3 04 4 05 5 PM pm Mon Monday MST -0700 -07:00 -07 Z0700
/// Z07:00 .000 .999 ,000`); other text is copied.
fn go_time_format(ms: i64, layout: &str) -> String {
    let c = civil(ms);
    let mut out = String::with_capacity(layout.len() + 8);
    let mut rest = layout;
    let hour12 = if c.hour % 12 == 0 { 12 } else { c.hour % 12 };
    while !rest.is_empty() {
        // Longest elements first where one is a prefix of another.
        let table: [(&str, String); 33] = [
            ("January", MONTHS[(c.month as usize - 1) % 12].to_string()),
            ("Jan", MONTHS[(c.month as usize - 1) % 12][..3].to_string()),
            ("Monday", DAYS[c.weekday % 7].to_string()),
            ("Mon", DAYS[c.weekday % 7][..3].to_string()),
            ("MST", "UTC".to_string()),
            ("2006", format!("{:04}", c.year)),
            ("002", format!("{:03}", c.yday)),
            ("01", format!("{:02}", c.month)),
            ("02", format!("{:02}", c.day)),
            ("03", format!("{hour12:02}")),
            ("04", format!("{:02}", c.minute)),
            ("05", format!("{:02}", c.second)),
            ("06", format!("{:02}", c.year.rem_euclid(100))),
            ("_2", format!("{:>2}", c.day)),
            ("15", format!("{:02}", c.hour)),
            ("1", c.month.to_string()),
            ("2", c.day.to_string()),
            ("3", hour12.to_string()),
            ("4", c.minute.to_string()),
            ("5", c.second.to_string()),
            ("PM", if c.hour >= 12 { "PM" } else { "AM" }.to_string()),
            ("pm", if c.hour >= 12 { "pm" } else { "am" }.to_string()),
            ("-07:00:00", "+00:00:00".to_string()),
            ("-0700", "+0000".to_string()),
            ("-07:00", "+00:00".to_string()),
            ("-07", "+00".to_string()),
            ("Z07:00:00", "Z".to_string()),
            ("Z0700", "Z".to_string()),
            ("Z07:00", "Z".to_string()),
            ("Z07", "Z".to_string()),
            (".000", String::new()),
            (".999", String::new()),
            (",000", String::new()),
        ];
        // Fractional seconds: `.000…` (fixed) or `.999…` (trailing zeros trimmed), any length.
        if let Some(sep) = rest.chars().next().filter(|c| *c == '.' || *c == ',') {
            let digits = rest[1..]
                .bytes()
                .take_while(|b| *b == b'0' || *b == b'9')
                .count();
            let all_same =
                digits > 0 && rest[1..1 + digits].bytes().all(|b| b == rest.as_bytes()[1]);
            let next_is_digit = rest[1 + digits..]
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_digit());
            if all_same && !next_is_digit {
                let frac = format!("{:09}", c.nanos);
                let n = digits.min(9);
                if rest.as_bytes()[1] == b'0' {
                    out.push(sep);
                    out.push_str(&frac[..n]);
                } else {
                    let t = frac[..n].trim_end_matches('0');
                    if !t.is_empty() {
                        out.push(sep);
                        out.push_str(t);
                    }
                }
                rest = &rest[1 + digits..];
                continue;
            }
        }
        match table
            .iter()
            .find(|(k, _)| rest.starts_with(k) && !k.starts_with(['.', ',']))
        {
            Some((k, v)) => {
                out.push_str(v);
                rest = &rest[k.len()..];
            }
            None => {
                let ch = rest.chars().next().unwrap_or(' ');
                out.push(ch);
                rest = &rest[ch.len_utf8()..];
            }
        }
    }
    out
}
