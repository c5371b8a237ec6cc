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

fn want(name: &str, args: &[Value<'_>], n: usize) -> Result<(), String> {
    if args.len() != n {
        return Err(format!(
            "wrong number of args for {name}: want {n} got {}",
            args.len()
        ));
    }
    Ok(())
}

fn wrong_type(expected: &str, got: &Value<'_>) -> String {
    format!(
        "wrong type for value; expected {expected}; got {}",
        got.type_name()
    )
}

fn string_arg<'v>(v: &'v Value<'_>) -> Result<&'v str, String> {
    v.as_str().ok_or_else(|| wrong_type("string", v))
}

fn sample_arg(v: &Value<'_>) -> Result<Rc<QuerySample>, String> {
    match v {
        Value::Sample(s) => Ok(s.clone()),
        other => Err(wrong_type("*template.sample", other)),
    }
}

fn samples_arg(v: &Value<'_>) -> Result<Rc<Vec<QuerySample>>, String> {
    match v {
        Value::Samples(s) => Ok(s.clone()),
        Value::Nil => Ok(Rc::new(Vec::new())),
        other => Err(wrong_type("template.queryResult", other)),
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
pub fn call<'a>(name: &str, args: Vec<Value<'a>>, ctx: &Ctx<'_>) -> Result<Value<'a>, String> {
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
                other => return Err(format!("len of type {}", other.type_name())),
            };
            Ok(Value::Int(n as i64))
        }
        "index" => index(args),
        "slice" => slice(args),
        "print" => Ok(str_val(sprint(&args))),
        "println" => Ok(str_val(sprintln(&args))),
        "printf" => {
            let Some(first) = args.first() else {
                return Err(format!(
                    "wrong number of args for {name}: want at least 1 got 0"
                ));
            };
            let f = string_arg(first)?;
            Ok(str_val(sprintf(f, &args[1..])))
        }
        "eq" => {
            if args.len() < 2 {
                return Err("missing argument for comparison".into());
            }
            for b in &args[1..] {
                if compare(&args[0], b)? == Some(std::cmp::Ordering::Equal) {
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
            if matches!(args[0], Value::Bool(_)) || matches!(args[1], Value::Bool(_)) {
                return Err("invalid type for comparison".into());
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
            None => Err(format!(
                "wrong number of args for {name}: want at least 1 got 0"
            )),
            Some(Value::Nil) => Err("call of nil".into()),
            Some(v) => Err(format!("non-function of type {}", v.type_name())),
        },
        "query" => {
            want(name, &args, 1)?;
            let q = string_arg(&args[0])?;
            let r = ctx.query.query(q)?;
            Ok(Value::Samples(Rc::new(r)))
        }
        "first" => {
            want(name, &args, 1)?;
            let v = samples_arg(&args[0])?;
            match v.first() {
                Some(s) => Ok(Value::Sample(Rc::new(s.clone()))),
                None => Err("first() called on vector with no elements".into()),
            }
        }
        "label" => {
            want(name, &args, 2)?;
            let l = string_arg(&args[0])?;
            let s = sample_arg(&args[1])?;
            Ok(str_val(s.labels.get(l).unwrap_or("").to_string()))
        }
        "value" => {
            want(name, &args, 1)?;
            Ok(Value::Float(sample_arg(&args[0])?.value))
        }
        "strvalue" => {
            want(name, &args, 1)?;
            let s = sample_arg(&args[0])?;
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
            let re = ctx.regexes.get(string_arg(&args[0])?)?;
            let repl = string_arg(&args[1])?;
            let text = string_arg(&args[2])?;
            Ok(str_val(re.replace_all(text, repl).into_owned()))
        }
        "match" => {
            want(name, &args, 2)?;
            let re = ctx.regexes.get(string_arg(&args[0])?)?;
            Ok(Value::Bool(re.is_match(string_arg(&args[1])?)))
        }
        "safeHtml" => {
            want(name, &args, 1)?;
            Ok(str_val(string_arg(&args[0])?.to_string()))
        }
        "title" => {
            want(name, &args, 1)?;
            Ok(str_val(title(string_arg(&args[0])?)))
        }
        "toUpper" => {
            want(name, &args, 1)?;
            Ok(str_val(string_arg(&args[0])?.to_uppercase()))
        }
        "toLower" => {
            want(name, &args, 1)?;
            Ok(str_val(string_arg(&args[0])?.to_lowercase()))
        }
        "graphLink" | "tableLink" => {
            want(name, &args, 1)?;
            let e = query_escape(string_arg(&args[0])?);
            let tab = if name == "graphLink" { 0 } else { 1 };
            Ok(str_val(format!("/graph?g0.expr={e}&g0.tab={tab}")))
        }
        "sortByLabel" => {
            want(name, &args, 2)?;
            let l = string_arg(&args[0])?;
            let v = samples_arg(&args[1])?;
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
            let hp = string_arg(&args[0])?;
            Ok(str_val(match split_host_port(hp) {
                Some((h, _)) => h.to_string(),
                None => hp.to_string(),
            }))
        }
        "stripDomain" => {
            want(name, &args, 1)?;
            let hp = string_arg(&args[0])?;
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
                return Err("value is NaN or Inf".into());
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
            let s = string_arg(&args[0])?;
            let d: crate::config::Duration = s.parse()?;
            Ok(Value::Float(d.as_millis() as f64 / 1000.0))
        }
        _ => Err(format!(
            "function {} not defined",
            super::gofmt::quote(name)
        )),
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
            c if (c as u32) < 0x20 || (!c.is_ascii() && c.is_control()) => {
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

/// Go's (deprecated) `strings.Title`: upper-cases the first letter of each word.
fn title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut prev_sep = true;
    for c in s.chars() {
        if prev_sep {
            out.extend(c.to_uppercase());
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
