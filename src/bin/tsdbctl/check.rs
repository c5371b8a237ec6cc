//! `tsdbctl check config FILE...` and `tsdbctl check rules FILE...`: validate `prometheus.yml`
//! files (and the rule files they name) or rule files without starting anything, with
//! `promtool check config|rules`' output and exit codes (Prometheus 2.42): `Checking FILE`,
//! ` SUCCESS: ...` on stdout, `  FAILED: ...` and the problems on stderr, exit 1 when any file
//! fails. `check rules` also has promtool's duplicate-rule lint (reported, exit 3 only with
//! `--lint-fatal`). The checks are the library's (`tsdb::config`).

use clap::{Args, Subcommand, ValueEnum};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tsdb::config::{Config, ConfigError, RuleFile, RuleKind};

#[derive(Args)]
pub struct CheckArgs {
    #[command(subcommand)]
    what: CheckCmd,
}

#[derive(Subcommand)]
enum CheckCmd {
    /// Check prometheus.yml files (and their rule and file_sd files) as `promtool check config`.
    Config {
        /// Configuration files to check.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Check rule files as `promtool check rules`.
    Rules {
        /// Linting checks: duplicate-rules (rules with the same name and labels), all, none.
        #[arg(long, value_enum, default_value = "duplicate-rules")]
        lint: Lint,
        /// Make lint problems exit with status 3.
        #[arg(long = "lint-fatal")]
        lint_fatal: bool,
        /// Rule files to check.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Lint {
    All,
    DuplicateRules,
    None,
}

pub fn check(args: CheckArgs) -> Result<ExitCode, String> {
    match args.what {
        CheckCmd::Config { files } => Ok(check_config(&files)),
        CheckCmd::Rules {
            lint,
            lint_fatal,
            files,
        } => {
            // promtool refuses a missing file before checking any.
            if let Some(f) = files.iter().find(|f| !f.exists()) {
                return Err(format!("path '{}' does not exist", f.display()));
            }
            Ok(check_rules(&files, !matches!(lint, Lint::None), lint_fatal))
        }
    }
}

/// promtool's exit status for lint problems under `--lint-fatal`.
const LINT_EXIT: u8 = 3;

fn check_rules(files: &[PathBuf], lint: bool, lint_fatal: bool) -> ExitCode {
    let (mut failed, mut errors) = (false, false);
    for f in files {
        outln!("Checking {}", f.display());
        match RuleFile::load(f) {
            Ok(r) => match duplicates(&r).filter(|_| lint) {
                Some(msg) => {
                    eprintln!("  FAILED:");
                    eprintln!("{msg}");
                    failed = true;
                }
                None => outln!("  SUCCESS: {} rules found", r.rule_count()),
            },
            Err(e) => {
                eprintln!("  FAILED:");
                print_rule_errors(e, "");
                failed = true;
                errors = true;
            }
        }
        outln!("");
    }
    if errors {
        ExitCode::FAILURE
    } else if failed && lint_fatal {
        ExitCode::from(LINT_EXIT)
    } else {
        ExitCode::SUCCESS
    }
}

/// A rule file's problems on stderr, one a line, each prefixed with the file.
fn print_rule_errors(e: ConfigError, indent: &str) {
    match e {
        ConfigError::RuleFile { file, errors } => {
            for err in errors {
                eprintln!("{indent}{}: {err}", file.display());
            }
        }
        e => eprintln!("{indent}{e}"),
    }
}

/// promtool's duplicate-rules lint: rules of the file with the same name and labels.
fn duplicates(f: &RuleFile) -> Option<String> {
    let mut rules: Vec<(&str, Vec<(&str, &str)>)> = f
        .groups
        .iter()
        .flat_map(|g| g.rules.iter())
        .map(|r| {
            let name = match &r.kind {
                RuleKind::Record(n) | RuleKind::Alert(n) => n.as_str(),
            };
            let labels = r
                .labels
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            (name, labels)
        })
        .collect();
    rules.sort();
    let mut dups: Vec<&(&str, Vec<(&str, &str)>)> = Vec::new();
    for w in rules.windows(2) {
        if w[0] == w[1] && dups.last().is_none_or(|d| **d != w[1]) {
            dups.push(&w[1]);
        }
    }
    if dups.is_empty() {
        return None;
    }
    let mut msg = format!("lint error {} duplicate rule(s) found.\n", dups.len());
    for (metric, labels) in dups {
        msg.push_str(&format!("Metric: {metric}\nLabel(s):\n"));
        for (k, v) in labels {
            msg.push_str(&format!("\t{k}: {v}\n"));
        }
    }
    msg.push_str("Might cause inconsistency while recording expressions");
    Some(msg)
}

fn check_config(files: &[PathBuf]) -> ExitCode {
    let mut failed = false;
    for f in files {
        outln!("Checking {}", f.display());
        let rule_files = match check_one(f) {
            Ok((rule_files, warnings)) => {
                for w in warnings {
                    outln!("  WARNING: {w}");
                }
                if !rule_files.is_empty() {
                    outln!("  SUCCESS: {} rule files found", rule_files.len());
                }
                outln!(
                    " SUCCESS: {} is valid prometheus config file syntax",
                    f.display()
                );
                rule_files
            }
            Err(e) => {
                eprintln!("  FAILED: {e}");
                failed = true;
                Vec::new()
            }
        };
        outln!("");
        for rf in rule_files {
            outln!("Checking {rf}");
            match RuleFile::load(Path::new(&rf)) {
                Ok(r) => outln!("  SUCCESS: {} rules found", r.rule_count()),
                Err(e) => {
                    eprintln!("  FAILED:");
                    print_rule_errors(e, "     ");
                    failed = true;
                }
            }
            outln!("");
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// The configuration's own checks; its rule files (expanded) and warnings.
fn check_one(f: &Path) -> Result<(Vec<String>, Vec<String>), ConfigError> {
    let text = std::fs::read_to_string(f).map_err(|source| ConfigError::Io {
        path: f.to_path_buf(),
        source,
    })?;
    let mut cfg = Config::parse_unchecked_files(&text, f)?;
    cfg.expand_rule_files(&text, f)?;
    let warnings = cfg.check_referenced_files(&text, f)?;
    Ok((cfg.rule_files, warnings))
}
