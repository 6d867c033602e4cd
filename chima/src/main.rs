//! chima, the chat bot: reads deploy commands, checks them against app.json,
//! and has them deployed. This file only wires arguments to the code in
//! `cli.rs`; the grammar lives in `chima-command`, the config in `chima-config`.

mod cli;
mod embedded;
mod shell;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// ChatOps deployments: `chima deploy project-x/feature to edge`.
#[derive(Debug, Parser)]
#[command(name = "chima", version, about, long_about = None)]
struct Args {
    /// The name the bot answers to in chat.
    #[arg(long, env = "CHIMA_NAME", default_value = "chima", global = true)]
    name: String,

    /// Other names the bot answers to, comma-separated (none by default).
    #[arg(long, env = "CHIMA_ALIASES", value_delimiter = ',', global = true)]
    aliases: Vec<String>,

    /// The apps config (hubot-deploy apps.json format).
    #[arg(
        long = "apps",
        env = "APPS_JSON",
        default_value = "config/app.json",
        global = true
    )]
    apps: PathBuf,

    /// Where deployments are stored in the embedded mode.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://faseng.db",
        global = true
    )]
    database_url: String,

    /// The environment used when neither the command nor the app names one.
    #[arg(
        long,
        env = "CHIMA_DEFAULT_ENVIRONMENT",
        default_value = "production",
        global = true
    )]
    default_environment: String,

    /// Deployments run at once by the embedded engine.
    #[arg(long, env = "FASENG_WORKERS", default_value_t = 2, global = true)]
    workers: usize,

    /// How long a deployment's claim lasts without renewal (seconds); a
    /// process that dies mid-deploy has its deployment declared lost after it.
    #[arg(
        long,
        env = "FASENG_LEASE_SECS",
        default_value_t = 30,
        hide = true,
        global = true
    )]
    lease_secs: u64,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Parse one chat line and print the command as JSON (exit 0), or why it
    /// is not a command (exit 1).
    Parse {
        /// The line, as typed in chat (`"chima deploy app to prod"`).
        #[arg(required_unless_present = "lines")]
        line: Option<String>,
        /// Read lines from standard input instead; print one JSON line per
        /// input line (the command, or `{"error": ...}`).
        #[arg(long, conflicts_with = "line")]
        lines: bool,
    },
    /// Handle one chat line in the embedded mode and wait for its deployment:
    /// exit 0 when it succeeded, 1 when it failed, 2 on a usage or config error.
    Run {
        /// The line, as typed in chat (`"chima deploy demo to staging"`).
        line: String,
    },
    /// Check an app.json: print each app with its environments (exit 0), or
    /// every error with file, line and column (exit 2).
    Check,
}

impl Args {
    fn embedded(&self, bot: chima_command::Addressee) -> shell::Options {
        shell::Options {
            bot,
            apps: self.apps.clone(),
            database_url: self.database_url.clone(),
            default_environment: self.default_environment.clone(),
            workers: self.workers,
            lease: std::time::Duration::from_secs(self.lease_secs.max(1)),
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let bot = cli::addressee(&args.name, &args.aliases);
    match &args.command {
        Some(Command::Parse {
            line: Some(line), ..
        }) => cli::parse_one(line, &bot),
        Some(Command::Parse { line: None, .. }) => cli::parse_lines(&bot),
        Some(Command::Check) => cli::check(&args.apps),
        Some(Command::Run { line }) => shell::main(&args.embedded(bot), Some(line)),
        None => shell::main(&args.embedded(bot), None),
    }
}
