//! TEMPORARY stand-in for `crate::relabel`'s engine (branch `config`), with its API, until that
//! branch is merged: no rule is supported (compiling one fails), so a configuration without
//! relabeling works and one with relabeling is refused instead of ignored.

use crate::labels::{Label, Labels};
use crate::relabel::RelabelConfig;

#[derive(Debug)]
pub struct Rule;

#[derive(Debug, thiserror::Error)]
#[error("relabeling is not available in this build")]
pub struct RelabelError;

pub fn compile(cfgs: &[RelabelConfig]) -> Result<Vec<Rule>, RelabelError> {
    if cfgs.is_empty() {
        Ok(Vec::new())
    } else {
        Err(RelabelError)
    }
}

pub fn process(_rules: &[Rule], labels: &Labels) -> Option<Labels> {
    Some(labels.clone())
}

pub fn process_vec(_rules: &[Rule], labels: &mut Vec<Label>) -> bool {
    let l = Labels::new(std::mem::take(labels));
    *labels = l.into_vec();
    true
}
