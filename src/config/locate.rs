//! Finds the line of a key in YAML text, for errors found after parsing.
//!
//! The YAML decoder knows positions only while it decodes; a check made afterwards (a timeout
//! greater than its interval, a duplicate job name, a bad relabel regex) still has to name the
//! line. This is a small indentation-based scan of block-style YAML, the style `prometheus.yml`
//! files are written in: it follows a path such as `scrape_configs[2].scrape_timeout` and answers
//! the 1-based line of the deepest part it can find. Flow-style collections (`[a, b]`,
//! `{k: v}`) are not entered: their key's line is the answer.

/// One step of a path: a mapping key or a sequence index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seg {
    Key(String),
    Idx(usize),
}

impl Seg {
    pub fn key(k: &str) -> Seg {
        Seg::Key(k.to_string())
    }
}

/// A non-blank, non-comment line: where its text starts, and where its sequence dash is.
#[derive(Debug)]
struct Tok<'a> {
    line: usize,
    /// Column of the text after any `- ` markers.
    col: usize,
    /// Column of the first `-` marker, if the line starts a sequence item.
    dash: Option<usize>,
    text: &'a str,
}

fn tokens(text: &str) -> Vec<Tok<'_>> {
    let mut out = Vec::new();
    let mut in_block_scalar: Option<usize> = None;
    for (i, raw) in text.lines().enumerate() {
        let indent = raw.len() - raw.trim_start_matches(' ').len();
        let body = &raw[indent..];
        if body.trim().is_empty() || body.starts_with('#') {
            continue;
        }
        // Lines of a `|` or `>` block scalar belong to its key; skip them.
        if let Some(key_col) = in_block_scalar {
            if indent > key_col {
                continue;
            }
            in_block_scalar = None;
        }
        let mut col = indent;
        let mut dash = None;
        let mut t = body;
        while t == "-" || t.starts_with("- ") {
            if dash.is_none() {
                dash = Some(col);
            }
            let rest = t[1..].trim_start_matches(' ');
            col += t.len() - rest.len();
            t = rest;
        }
        let trimmed = t.trim_end();
        let value = trimmed.split_once(": ").map(|(_, v)| v.trim());
        if matches!(value, Some(v) if v.starts_with('|') || v.starts_with('>')) {
            in_block_scalar = Some(col);
        }
        out.push(Tok {
            line: i + 1,
            col,
            dash,
            text: t,
        });
    }
    out
}

/// The key a line starts with, if it is a `key:` entry (plain or quoted key).
fn line_key(text: &str) -> Option<&str> {
    let (k, rest) = if let Some(r) = text.strip_prefix('"') {
        let end = r.find('"')?;
        (&r[..end], &r[end + 1..])
    } else if let Some(r) = text.strip_prefix('\'') {
        let end = r.find('\'')?;
        (&r[..end], &r[end + 1..])
    } else {
        let end = text.find(':')?;
        (text[..end].trim_end(), &text[end..])
    };
    let rest = rest.trim_start();
    let after = rest.strip_prefix(':')?;
    (after.is_empty() || after.starts_with(' ') || after.starts_with('\t')).then_some(k)
}

/// The 1-based line of the deepest part of `path` found in `text` (None if not even the first).
pub fn line_of(text: &str, path: &[Seg]) -> Option<usize> {
    find(text, path).map(|(line, _)| line)
}

/// Whether the whole of `path` is written in `text` (block style), and on which line.
pub fn line_of_exact(text: &str, path: &[Seg]) -> Option<usize> {
    find(text, path).and_then(|(line, depth)| (depth == path.len()).then_some(line))
}

/// The line of the deepest part of `path` found, and how many segments were found.
fn find(text: &str, path: &[Seg]) -> Option<(usize, usize)> {
    let toks = tokens(text);
    find_tok(&toks, path).map(|f| (toks[f.tok].line, f.depth))
}

/// Where a path search ended: the token of its deepest segment, how many segments were found,
/// and the end of that segment's token range (its value's tokens are `tok + 1 .. end`).
struct Found {
    tok: usize,
    depth: usize,
    end: usize,
}

fn find_tok(toks: &[Tok<'_>], path: &[Seg]) -> Option<Found> {
    let mut lo = 0;
    let mut hi = toks.len();
    let mut found: Option<Found> = None;
    let mut depth = 0;
    for seg in path {
        if lo >= hi {
            break;
        }
        match seg {
            Seg::Key(k) => {
                let map_col = toks[lo].col;
                let Some(t) = (lo..hi).find(|&t| {
                    toks[t].col == map_col
                        && (t == lo || toks[t].dash.is_none())
                        && line_key(toks[t].text) == Some(k.as_str())
                }) else {
                    break;
                };
                depth += 1;
                // The value: following lines indented deeper than the key, or a sequence whose
                // dashes sit at the key's column.
                let mut end = t + 1;
                while end < hi
                    && (toks[end].col > map_col && toks[end].dash.is_none_or(|d| d >= map_col))
                {
                    end += 1;
                }
                found = Some(Found { tok: t, depth, end });
                lo = t + 1;
                hi = end;
            }
            Seg::Idx(i) => {
                let Some(seq_col) = toks[lo].dash else {
                    break;
                };
                let items: Vec<usize> = (lo..hi)
                    .filter(|&t| toks[t].dash == Some(seq_col))
                    .collect();
                let Some(&start) = items.get(*i) else {
                    break;
                };
                let end = items.get(i + 1).copied().unwrap_or(hi);
                depth += 1;
                found = Some(Found {
                    tok: start,
                    depth,
                    end,
                });
                lo = start;
                hi = end;
            }
        }
    }
    found
}

/// The 1-based `(line, column)` of the YAML node `path` names, as Go's yaml.v3 reports it (and
/// so promtool's messages): for a key, where its value starts (the `|` of a block scalar, or the
/// next line when the value starts there); for a sequence item, where its content starts after
/// the dash. Columns count characters. `None` unless the whole path is written in `text`.
pub fn position_of(text: &str, path: &[Seg]) -> Option<(usize, usize)> {
    let toks = tokens(text);
    let f = find_tok(&toks, path)?;
    if f.depth != path.len() {
        return None;
    }
    let t = &toks[f.tok];
    let raw = text.lines().nth(t.line - 1)?;
    let chars_to = |byte: usize| raw.get(..byte).map_or(0, |s| s.chars().count());
    if matches!(path.last(), Some(Seg::Idx(_))) {
        return Some((t.line, chars_to(t.col) + 1));
    }
    // The value after `key:` on the key's own line.
    let colon = key_colon(t.text)?;
    let after = &t.text[colon + 1..];
    let value = after.trim_start_matches([' ', '\t']);
    if !value.is_empty() && !value.starts_with('#') {
        let at = t.col + colon + 1 + (after.len() - value.len());
        return Some((t.line, chars_to(at) + 1));
    }
    // A value on the following lines: its first token (a sequence starts at its dash).
    let next = toks.get(f.tok + 1).filter(|_| f.tok + 1 < f.end)?;
    let raw = text.lines().nth(next.line - 1)?;
    let at = next.dash.unwrap_or(next.col);
    Some((
        next.line,
        raw.get(..at).map_or(0, |s| s.chars().count()) + 1,
    ))
}

/// Byte offset of the `:` that ends the key a line starts with (see [`line_key`]).
fn key_colon(text: &str) -> Option<usize> {
    let key_end = if let Some(r) = text.strip_prefix('"') {
        r.find('"')? + 2
    } else if let Some(r) = text.strip_prefix('\'') {
        r.find('\'')? + 2
    } else {
        0
    };
    let colon = key_end + text[key_end..].find(':')?;
    Some(colon)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Vec<Seg> {
        let mut out = Vec::new();
        for part in s.split('.') {
            let (k, idx) = match part.split_once('[') {
                Some((k, rest)) => (k, rest.trim_end_matches(']').parse::<usize>().ok()),
                None => (part, None),
            };
            out.push(Seg::key(k));
            if let Some(i) = idx {
                out.push(Seg::Idx(i));
            }
        }
        out
    }

    const TEXT: &str = "\
# comment
global:
  scrape_interval: 15s
  external_labels:
    a: b

rule_files:
  - r1.yml
  - r2.yml
scrape_configs:
- job_name: one
  scrape_timeout: 5s
  static_configs:
  - targets: ['a:1']
    labels:
      x: y
- job_name: two
  relabel_configs:
    - source_labels: [a]
      regex: 'x'
    - action: labeldrop
      regex: |
        scrape_timeout: fake
      target_label: t
  \"scrape_timeout\": 9s
remote_write:
  - url: http://x
";

    #[test]
    fn finds_keys_along_paths() {
        assert_eq!(line_of(TEXT, &p("global.scrape_interval")), Some(3));
        assert_eq!(line_of(TEXT, &p("global.external_labels.a")), Some(5));
        assert_eq!(line_of(TEXT, &p("rule_files[1]")), Some(9));
        assert_eq!(
            line_of(TEXT, &p("scrape_configs[0].scrape_timeout")),
            Some(12)
        );
        assert_eq!(
            line_of(TEXT, &p("scrape_configs[0].static_configs[0].labels.x")),
            Some(16)
        );
        assert_eq!(line_of(TEXT, &p("scrape_configs[1].job_name")), Some(17));
        assert_eq!(
            line_of(TEXT, &p("scrape_configs[1].relabel_configs[1].regex")),
            Some(22)
        );
        assert_eq!(
            line_of(
                TEXT,
                &p("scrape_configs[1].relabel_configs[1].target_label")
            ),
            Some(24)
        );
        assert_eq!(
            line_of(TEXT, &p("scrape_configs[1].scrape_timeout")),
            Some(25)
        );
        assert_eq!(line_of(TEXT, &p("remote_write[0].url")), Some(27));
    }

    #[test]
    fn positions_of_values_as_yaml_v3_reports_them() {
        let text = "groups:\n  - name: g\n    rules:\n      - record: r\n        expr:   up\n      - alert: A\n        expr:\n          sum(x)\n        labels:\n          - a\n  -   name: h\n      rules:\n        -   \"expr\": |\n              sum(\n";
        assert_eq!(
            position_of(text, &p("groups[0].rules[0].expr")),
            Some((5, 17))
        );
        assert_eq!(
            position_of(text, &p("groups[0].rules[0].record")),
            Some((4, 17))
        );
        assert_eq!(
            position_of(text, &p("groups[0].rules[1].expr")),
            Some((8, 11))
        );
        assert_eq!(
            position_of(text, &p("groups[0].rules[1].labels")),
            Some((10, 11))
        );
        assert_eq!(position_of(text, &p("groups[1]")), Some((11, 7)));
        assert_eq!(
            position_of(text, &p("groups[1].rules[0].expr")),
            Some((13, 21))
        );
        assert_eq!(position_of(text, &p("groups[0].rules[1].record")), None);
        assert_eq!(position_of("a: é: x\nb: 'ü'\n", &p("b")), Some((2, 4)));
    }

    #[test]
    fn falls_back_to_deepest_found() {
        // Flow collections are not entered: the key's line.
        assert_eq!(
            line_of(TEXT, &p("scrape_configs[0].static_configs[0].targets[0]")),
            Some(14)
        );
        assert_eq!(
            line_of(TEXT, &p("scrape_configs[1].metrics_path")),
            Some(17)
        );
        assert_eq!(line_of(TEXT, &p("scrape_configs[7]")), Some(10));
        assert_eq!(line_of(TEXT, &p("nothing")), None);
        assert_eq!(line_of("", &p("a")), None);
        assert_eq!(
            line_of_exact(TEXT, &p("scrape_configs[1].metrics_path")),
            None
        );
        assert_eq!(
            line_of_exact(TEXT, &p("scrape_configs[1].job_name")),
            Some(17)
        );
    }
}
