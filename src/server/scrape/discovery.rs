//! Target discovery: `static_configs` and `file_sd_configs` (`discovery/file/file.go` of
//! Prometheus 2.42).
//!
//! File SD: each pattern is a path whose last element may hold a `*` (`targets/*.json`); the
//! files are YAML or JSON lists of target groups (by extension), each group getting the label
//! `__meta_filepath`. Files are checked for changes (modification time and size) every
//! [`POLL_INTERVAL`] — Prometheus uses inotify; we poll, so a change is seen within a second —
//! and re-read in full every `refresh_interval`. A file that fails to read keeps the target
//! groups it gave last time; a file that disappears takes its groups away.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use crate::config::{read_file_sd, ConfigError, FileSdConfig, StaticConfig};

use super::metrics::{l1, Metrics};
use super::target::Group;

/// How often file SD looks at its files' modification times.
pub const POLL_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Reads one file SD file ([`crate::config::read_file_sd`]): its target groups, each with
/// `__meta_filepath`, named `<path>:<index>` as Prometheus names their source.
pub fn read_file(path: &Path) -> Result<Vec<Group>, ConfigError> {
    let p = path.display().to_string();
    Ok(read_file_sd(path)?
        .iter()
        .enumerate()
        .map(|(i, sc)| Group::from_static(format!("{p}:{i}"), sc))
        .collect())
}

/// The groups of `static_configs`.
pub fn static_groups(job: &str, configs: &[StaticConfig]) -> Vec<Group> {
    configs
        .iter()
        .enumerate()
        .map(|(i, sc)| Group::from_static(format!("{job}/static/{i}"), sc))
        .collect()
}

/// The files a pattern names now: the pattern itself, or with a `*` in its last element, the
/// matching files of its directory, sorted.
pub fn list_files(pattern: &str) -> Vec<PathBuf> {
    let path = Path::new(pattern);
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if !name.contains('*') {
        return if path.is_file() {
            vec![path.to_path_buf()]
        } else {
            Vec::new()
        };
    }
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = rd
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|f| glob_match(name.as_bytes(), f.as_bytes()))
        })
        .map(|e| dir.join(e.file_name()))
        .collect();
    out.sort();
    out
}

/// `*` matches any run of characters; everything else itself.
fn glob_match(pat: &[u8], s: &[u8]) -> bool {
    match pat.split_first() {
        None => s.is_empty(),
        Some((b'*', rest)) => (0..=s.len()).any(|i| glob_match(rest, &s[i..])),
        Some((c, rest)) => s.first() == Some(c) && glob_match(rest, &s[1..]),
    }
}

/// A file's modification time and size: a change of either means a re-read.
type Stamp = (SystemTime, u64);

/// One `file_sd_configs` entry being watched.
pub struct FileSd {
    cfg: FileSdConfig,
    /// Per file: its (mtime, size) when read, and the groups it gave.
    files: BTreeMap<PathBuf, (Option<Stamp>, Vec<Group>)>,
    last_full: Option<Instant>,
}

impl FileSd {
    pub fn new(cfg: FileSdConfig) -> FileSd {
        FileSd {
            cfg,
            files: BTreeMap::new(),
            last_full: None,
        }
    }

    /// Looks at the files: re-reads those that changed (all of them once per refresh interval),
    /// forgets those gone. Returns the groups of all files when anything changed.
    pub fn refresh(&mut self, metrics: &Metrics) -> Option<Vec<Group>> {
        let started = Instant::now();
        let full = self
            .last_full
            .is_none_or(|t| t.elapsed() >= self.cfg.refresh_interval.to_std());
        if full {
            self.last_full = Some(started);
        }
        let mut current: Vec<PathBuf> = Vec::new();
        for pat in &self.cfg.files {
            current.extend(list_files(pat));
        }
        let mut changed = false;
        let before = self.files.len();
        self.files.retain(|p, _| current.contains(p));
        if self.files.len() != before {
            changed = true;
        }
        for p in current {
            let stamp = std::fs::metadata(&p)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len())));
            let known = self.files.get(&p).map(|(s, _)| *s);
            if !full && known.is_some() && known == Some(stamp) {
                continue;
            }
            match read_file(&p) {
                Ok(groups) => {
                    if let Some((t, _)) = stamp {
                        let secs = t
                            .duration_since(SystemTime::UNIX_EPOCH)
                            .map_or(0.0, |d| d.as_secs_f64());
                        metrics
                            .sd_file_mtime
                            .get_or_create(&l1("filename", &p.display().to_string()))
                            .set(secs);
                    }
                    let old = self.files.insert(p, (stamp, groups.clone()));
                    if old.map(|(_, g)| g) != Some(groups) {
                        changed = true;
                    }
                }
                Err(_) => {
                    // Keeps what the file gave last time (Prometheus: "prevent deletion").
                    metrics.sd_file_read_errors.inc();
                    self.files.entry(p).or_insert((stamp, Vec::new())).0 = stamp;
                }
            }
        }
        metrics
            .sd_file_scan_duration
            .observe(started.elapsed().as_secs_f64());
        changed.then(|| self.groups())
    }

    pub fn groups(&self) -> Vec<Group> {
        self.files
            .values()
            .flat_map(|(_, g)| g.iter().cloned())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::FILE_SD_PATH_LABEL;

    #[test]
    fn globs() {
        assert!(glob_match(b"*.json", b"a.json"));
        assert!(glob_match(b"t-*-x.yml", b"t-1-x.yml"));
        assert!(!glob_match(b"*.json", b"a.yml"));
    }

    #[test]
    fn reads_json_and_yaml_and_keeps_groups_on_error() {
        let dir = tempfile::tempdir().unwrap();
        let j = dir.path().join("a.json");
        std::fs::write(
            &j,
            r#"[{"targets": ["h:1", "h:2"], "labels": {"env": "x"}}]"#,
        )
        .unwrap();
        let y = dir.path().join("b.yml");
        std::fs::write(&y, "- targets: ['h:3']\n").unwrap();
        let m = Metrics::unregistered();
        let mut sd = FileSd::new(FileSdConfig {
            files: vec![
                format!("{}/*.json", dir.path().display()),
                y.display().to_string(),
            ],
            refresh_interval: crate::config::Duration::from_secs(300),
        });
        let g = sd.refresh(&m).unwrap();
        assert_eq!(g.len(), 2);
        assert_eq!(g[0].targets, vec!["h:1", "h:2"]);
        assert_eq!(g[0].labels.get("env").map(String::as_str), Some("x"));
        assert_eq!(
            g[0].labels.get(FILE_SD_PATH_LABEL),
            Some(&j.display().to_string())
        );
        assert!(sd.refresh(&m).is_none(), "unchanged files");
        // A broken file keeps its last groups.
        std::fs::write(&j, "[{").unwrap();
        assert!(sd.refresh(&m).is_none());
        assert_eq!(sd.groups().len(), 2);
        assert_eq!(m.sd_file_read_errors.get(), 1);
        std::fs::remove_file(&y).unwrap();
        assert_eq!(sd.refresh(&m).unwrap().len(), 1);
    }
}
