//! The `dkms-hook` command line: parses (cli.rs, which build.rs shares for the completions and
//! the man page), validates into one mode's configuration (args.rs), dispatches to that mode
//! (the library's `commands`), and turns how it ended into cli.rs's exit codes.

use clap::FromArgMatches;
use cli::{Cli, EXIT_FAILED, EXIT_OK, EXIT_USAGE};
use dkms_hook::commands::{self, Exit};
use dkms_hook::os::interrupt;
use std::process::ExitCode;

mod args;
mod cli;

fn main() -> ExitCode {
    let cli = match cli::command()
        .try_get_matches()
        .and_then(|m| Cli::from_arg_matches(&m))
    {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { EXIT_USAGE } else { EXIT_OK });
        }
    };
    if let Err(e) = interrupt::install() {
        eprintln!("dkms-hook: error: cannot handle signals: {e}");
        return ExitCode::from(EXIT_USAGE);
    }
    let result = args::command(cli).and_then(|c| match c {
        args::Command::Run(c) => commands::run::run(&c),
        args::Command::Status(c) => commands::status::run(&c),
        args::Command::Orphans(c) => commands::orphans::run(&c),
        args::Command::Preflight(c) => commands::preflight::run(&c),
        args::Command::Prebuild(c) => commands::preflight::prebuild(&c),
        args::Command::PreflightView(request) => Ok(commands::preflight::view(&request)),
        args::Command::Lint(c) => commands::lint::run(&c),
    });
    // Stopped by a signal: the shell's status for it, whatever the mode had come to.
    if let Some(sig) = interrupt::global().signal() {
        if let Err(e) = &result {
            eprintln!("dkms-hook: error: {e:#}");
        }
        return ExitCode::from(interrupt::exit_code(sig));
    }
    match result {
        Ok(exit) => ExitCode::from(match exit {
            Exit::Ok => EXIT_OK,
            Exit::Failed => EXIT_FAILED,
            Exit::Usage => EXIT_USAGE,
        }),
        Err(e) => {
            eprintln!("dkms-hook: error: {e:#}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}
