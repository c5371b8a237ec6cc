//! The values a template computes with: Go's dynamic values restricted to the types Prometheus'
//! rule templates meet (bool, int, float64, string, `map[string]string` label sets,
//! `map[string]interface{}` from `args`, query samples and results, `*time.Time`).
//! Label sets borrow the alert's labels: expanding `{{ $labels.job }}` copies no label.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::rc::Rc;

use super::{QuerySample, TemplateData};
use crate::labels::Labels;

/// A `map[string]string`: the alert's labels (borrowed) or a query sample's.
#[derive(Clone, Debug)]
pub enum LabelsRef<'a> {
    Borrowed(&'a Labels),
    Owned(Rc<QuerySample>),
}

impl<'a> LabelsRef<'a> {
    pub fn labels(&self) -> &Labels {
        match self {
            LabelsRef::Borrowed(l) => l,
            LabelsRef::Owned(s) => &s.labels,
        }
    }

    /// Go's map lookup with the zero value for a missing key (Prometheus sets
    /// `missingkey=zero`, and the zero of a string is "").
    pub fn get(&self, key: &str) -> Value<'a> {
        match self {
            LabelsRef::Borrowed(l) => Value::Str(Cow::Borrowed(l.get(key).unwrap_or(""))),
            LabelsRef::Owned(s) => {
                Value::Str(Cow::Owned(s.labels.get(key).unwrap_or("").to_string()))
            }
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.labels()
            .iter()
            .map(|l| (l.name.as_str(), l.value.as_str()))
    }

    pub fn len(&self) -> usize {
        self.labels().len()
    }
}

#[derive(Clone, Debug)]
pub enum Value<'a> {
    /// Go's untyped nil (a missing key of an `args` map, the `nil` literal).
    Nil,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Cow<'a, str>),
    Labels(LabelsRef<'a>),
    /// `map[string]interface{}` (what `args` returns).
    Map(Rc<BTreeMap<String, Value<'a>>>),
    /// `*sample` (`first`, elements of a query result).
    Sample(Rc<QuerySample>),
    /// `queryResult`.
    Samples(Rc<Vec<QuerySample>>),
    /// The rule template data (`.` at the top).
    Data(&'a TemplateData<'a>),
    /// `*time.Time` (from `toTime`), Unix nanoseconds in UTC.
    Time(i64),
}

impl<'a> Value<'a> {
    /// Go's truth: false, 0, nil and empty strings, maps and slices are false.
    pub fn truth(&self) -> bool {
        match self {
            Value::Nil => false,
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            Value::Float(f) => *f != 0.0,
            Value::Str(s) => !s.is_empty(),
            Value::Labels(l) => l.len() != 0,
            Value::Map(m) => !m.is_empty(),
            Value::Samples(v) => !v.is_empty(),
            Value::Sample(_) | Value::Data(_) | Value::Time(_) => true,
        }
    }

    /// The Go type name used in error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Nil => "nil",
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

    /// Field or map-key access (`.Labels`, `.Value`, `$labels.job`). `Ok(None)` never happens
    /// for maps: a missing key gives the map's zero value.
    pub fn field(&self, name: &str) -> Result<Value<'a>, String> {
        match self {
            Value::Data(d) => match name {
                "Labels" => Ok(Value::Labels(LabelsRef::Borrowed(d.labels))),
                "ExternalLabels" => Ok(Value::Labels(LabelsRef::Borrowed(d.external_labels))),
                "ExternalURL" => Ok(Value::Str(Cow::Borrowed(d.external_url))),
                "Value" => Ok(Value::Float(d.value)),
                _ => Err(format!("can't evaluate field {name} in type struct")),
            },
            Value::Labels(l) => Ok(l.get(name)),
            Value::Map(m) => Ok(m.get(name).cloned().unwrap_or(Value::Nil)),
            Value::Sample(s) => match name {
                "Labels" => Ok(Value::Labels(LabelsRef::Owned(s.clone()))),
                "Value" => Ok(Value::Float(s.value)),
                _ => Err(format!(
                    "can't evaluate field {name} in type *template.sample"
                )),
            },
            Value::Time(ms) => super::funcs::time_method(*ms, name, &[]).map_err(|e| match e {
                super::funcs::FuncErr::Arity(m) | super::funcs::FuncErr::Call(m) => m,
                super::funcs::FuncErr::Type { expected, got, .. } => {
                    format!("wrong type for value; expected {expected}; got {got}")
                }
            }),
            Value::Nil => Err(format!("nil pointer evaluating interface {{}}.{name}")),
            other => Err(format!(
                "can't evaluate field {name} in type {}",
                other.type_name()
            )),
        }
    }
}
