//! `tsdbctl check config FILE...`: validates `prometheus.yml` files and the rule files they name
//! without starting anything, with `promtool check config`'s output and exit codes (Prometheus
//! 2.42): `Checking FILE`, ` SUCCESS: ...` on stdout, `  FAILED: ...` on stderr, exit 1 when any
//! file fails. The checks are the library's (`tsdb::config`).

use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tsdb::config::{Config, ConfigError, RuleFile};

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
}

pub fn check(args: CheckArgs) -> Result<ExitCode, String> {
    match args.what {
        CheckCmd::Config { files } => Ok(check_config(&files)),
    }
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
                    match e {
                        ConfigError::RuleFile { file, errors } => {
                            for err in errors {
                                eprintln!("     {}: {err}", file.display());
                            }
                        }
                        e => eprintln!("     {e}"),
                    }
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
