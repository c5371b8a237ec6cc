//! `write_relabel_configs` applied to what a queue sends: Prometheus 2.42's
//! `model/relabel/relabel.go` (`Process`), every action, rules applied in order, each seeing the
//! labels the previous one left.
//!
//! This is the remote writer's own copy of the engine so the component stands alone. Its two
//! entry points have the signatures of the crate-wide engine (`crate::relabel::compile` and
//! `crate::relabel::process_vec` on the `config` branch): once that is merged, importing
//! `crate::relabel` instead of this module is the whole switch.

use crate::labels::Label;
use crate::relabel::{Action, RelabelConfig};
use regex::Regex;

/// A rule with its regex compiled (anchored at both ends, as Prometheus does).
#[derive(Clone, Debug)]
pub(crate) struct Rule {
    cfg: RelabelConfig,
    regex: Regex,
}

/// Compiles `cfgs`; an invalid regex or a rule missing what its action needs is an error naming
/// the rule's position.
pub(crate) fn compile(cfgs: &[RelabelConfig]) -> Result<Vec<Rule>, String> {
    cfgs.iter()
        .enumerate()
        .map(|(i, c)| {
            let regex = Regex::new(&format!("^(?:{})$", c.regex))
                .map_err(|e| format!("rule {i}: invalid regex: {e}"))?;
            let needs_target = matches!(
                c.action,
                Action::Replace
                    | Action::HashMod
                    | Action::Lowercase
                    | Action::Uppercase
                    | Action::KeepEqual
                    | Action::DropEqual
            );
            if needs_target && c.target_label.is_none() {
                return Err(format!(
                    "rule {i}: relabel configuration for {:?} action requires 'target_label' value",
                    c.action
                ));
            }
            if c.action == Action::HashMod && c.modulus.unwrap_or(0) == 0 {
                return Err(format!(
                    "rule {i}: relabel configuration for hashmod requires non-zero modulus"
                ));
            }
            Ok(Rule {
                cfg: c.clone(),
                regex,
            })
        })
        .collect()
}

fn valid_label_name(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

fn get<'a>(ls: &'a [Label], name: &str) -> &'a str {
    ls.iter()
        .find(|l| l.name == name)
        .map_or("", |l| l.value.as_str())
}

fn set(ls: &mut Vec<Label>, name: &str, value: String) {
    if value.is_empty() {
        ls.retain(|l| l.name != name);
        return;
    }
    match ls.iter_mut().find(|l| l.name == name) {
        Some(l) => l.value = value,
        None => ls.push(Label::new(name, value)),
    }
}

/// Applies `rules` to `labels` (any order; empty values dropped, of duplicate names the last
/// kept; sorted by name on return); `false` when a rule drops the series.
pub(crate) fn process_vec(rules: &[Rule], labels: &mut Vec<Label>) -> bool {
    let normalized = crate::labels::Labels::new(std::mem::take(labels));
    *labels = normalized.into_vec();
    for r in rules {
        if !apply(labels, r) {
            return false;
        }
    }
    labels.retain(|l| !l.value.is_empty());
    labels.sort_by(|a, b| a.name.cmp(&b.name));
    true
}

fn apply(ls: &mut Vec<Label>, r: &Rule) -> bool {
    let c = &r.cfg;
    let val = c
        .source_labels
        .iter()
        .map(|n| get(ls, n))
        .collect::<Vec<_>>()
        .join(&c.separator);
    let target = c.target_label.as_deref().unwrap_or("");
    match c.action {
        Action::Drop => return !r.regex.is_match(&val),
        Action::Keep => return r.regex.is_match(&val),
        Action::DropEqual => return get(ls, target) != val,
        Action::KeepEqual => return get(ls, target) == val,
        Action::Replace => {
            let Some(caps) = r.regex.captures(&val) else {
                return true;
            };
            let mut name = String::new();
            caps.expand(target, &mut name);
            if !valid_label_name(&name) {
                return true;
            }
            let mut res = String::new();
            caps.expand(&c.replacement, &mut res);
            set(ls, &name, res);
        }
        Action::Lowercase => set(ls, target, val.to_lowercase()),
        Action::Uppercase => set(ls, target, val.to_uppercase()),
        Action::HashMod => {
            let h = md5(val.as_bytes());
            let mut tail = [0u8; 8];
            tail.copy_from_slice(&h[8..]);
            let m = u64::from_be_bytes(tail) % c.modulus.unwrap_or(1).max(1);
            set(ls, target, m.to_string());
        }
        Action::LabelMap => {
            let snapshot = ls.clone();
            for l in &snapshot {
                if r.regex.is_match(&l.name) {
                    let new = r
                        .regex
                        .replace_all(&l.name, c.replacement.as_str())
                        .into_owned();
                    set(ls, &new, l.value.clone());
                }
            }
        }
        Action::LabelDrop => ls.retain(|l| !r.regex.is_match(&l.name)),
        Action::LabelKeep => ls.retain(|l| r.regex.is_match(&l.name)),
    }
    true
}

/// MD5 (RFC 1321), for `hashmod` (Prometheus hashes the joined source values with MD5 and takes
/// the last 8 bytes big-endian modulo `modulus`).
fn md5(data: &[u8]) -> [u8; 16] {
    const S: [u32; 64] = [
        7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 5, 9, 14, 20, 5, 9, 14, 20, 5,
        9, 14, 20, 5, 9, 14, 20, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 6, 10,
        15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21,
    ];
    let k: Vec<u32> = (0..64)
        .map(|i| ((i as f64 + 1.0).sin().abs() * 4_294_967_296.0) as u32)
        .collect();
    let mut msg = data.to_vec();
    let bit_len = (data.len() as u64).wrapping_mul(8);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bit_len.to_le_bytes());
    let (mut a0, mut b0, mut c0, mut d0) =
        (0x67452301u32, 0xefcdab89u32, 0x98badcfeu32, 0x10325476u32);
    for chunk in msg.chunks_exact(64) {
        let mut m = [0u32; 16];
        for (i, w) in chunk.chunks_exact(4).enumerate() {
            m[i] = u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
        }
        let (mut a, mut b, mut c, mut d) = (a0, b0, c0, d0);
        for i in 0..64 {
            let (f, g) = match i / 16 {
                0 => ((b & c) | (!b & d), i),
                1 => ((d & b) | (!d & c), (5 * i + 1) % 16),
                2 => (b ^ c ^ d, (3 * i + 5) % 16),
                _ => (c ^ (b | !d), (7 * i) % 16),
            };
            let f = f.wrapping_add(a).wrapping_add(k[i]).wrapping_add(m[g]);
            a = d;
            d = c;
            c = b;
            b = b.wrapping_add(f.rotate_left(S[i]));
        }
        a0 = a0.wrapping_add(a);
        b0 = b0.wrapping_add(b);
        c0 = c0.wrapping_add(c);
        d0 = d0.wrapping_add(d);
    }
    let mut out = [0u8; 16];
    for (i, w) in [a0, b0, c0, d0].iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&w.to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(yaml: &str) -> Vec<Rule> {
        let cfgs: Vec<RelabelConfig> = serde_yaml::from_str(yaml).unwrap();
        compile(&cfgs).unwrap()
    }

    fn ls(pairs: &[(&str, &str)]) -> Vec<Label> {
        pairs.iter().map(|(a, b)| Label::new(*a, *b)).collect()
    }

    fn process(l: &mut Vec<Label>, r: &[Rule]) -> bool {
        process_vec(r, l)
    }

    #[test]
    fn md5_known_vectors() {
        let hex = |d: [u8; 16]| d.iter().map(|b| format!("{b:02x}")).collect::<String>();
        assert_eq!(hex(md5(b"")), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(
            hex(md5(b"The quick brown fox jumps over the lazy dog")),
            "9e107d9d372bb6826bd81d3542a419d6"
        );
    }

    #[test]
    fn actions_as_prometheus() {
        let r = rule("- {source_labels: [__name__], regex: 'go_.*', action: drop}");
        assert!(!process(&mut ls(&[("__name__", "go_gc")]), &r));
        assert!(process(&mut ls(&[("__name__", "up")]), &r));

        let r = rule(
            "- {source_labels: [a, b], separator: '-', regex: '(.*)-(.*)', target_label: 'c_${1}', replacement: '$2'}",
        );
        let mut l = ls(&[("a", "x"), ("b", "y")]);
        assert!(process(&mut l, &r));
        assert_eq!(l, ls(&[("a", "x"), ("b", "y"), ("c_x", "y")]));

        let r = rule("- {regex: 'tmp_.*', action: labeldrop}\n- {regex: '(.*)', action: labelmap, replacement: 'new_$1'}");
        let mut l = ls(&[("tmp_a", "1"), ("job", "j")]);
        assert!(process(&mut l, &r));
        assert_eq!(l, ls(&[("job", "j"), ("new_job", "j")]));

        // Prometheus 2.42 relabel_test.go: "baz" → 976, "foo\nbar" → 734 (modulus 1000).
        let r = rule("- {source_labels: [a], target_label: h, modulus: 1000, action: hashmod}");
        for (v, want) in [("baz", "976"), ("foo\nbar", "734")] {
            let mut l = ls(&[("a", v)]);
            assert!(process(&mut l, &r));
            assert_eq!(get(&l, "h"), want);
        }
    }
}
