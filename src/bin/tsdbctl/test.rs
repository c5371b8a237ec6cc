//! `tsdbctl test rules FILE...`: runs rule unit-test files in `promtool test rules`' format
//! (Prometheus 2.42) with its output and exit status: `Unit Testing:  FILE` and `  SUCCESS` on
//! stdout, `  FAILED:` and the failures on stderr, exit 1 when any file fails. The tests run in the
//! library (`tsdb::rules::unittest`).

use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct TestArgs {
    #[command(subcommand)]
    what: TestCmd,
}

#[derive(Subcommand)]
enum TestCmd {
    /// Run rule unit tests as `promtool test rules` does.
    Rules {
        /// Test files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

pub fn test(args: TestArgs) -> Result<ExitCode, String> {
    match args.what {
        TestCmd::Rules { files } => {
            // promtool refuses to start when a named file is missing (its flag parser checks).
            if let Some(f) = files.iter().find(|f| !f.exists()) {
                return Err(format!("path '{}' does not exist", f.display()));
            }
            let stdout = std::io::stdout();
            let stderr = std::io::stderr();
            let passed =
                tsdb::rules::unittest::run_files(&files, &mut stdout.lock(), &mut stderr.lock())
                    .map_err(|e| format!("writing the report: {e}"))?;
            Ok(if passed {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}
