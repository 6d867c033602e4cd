//! chima, the chat bot: reads deploy commands, checks them against app.json,
//! and has them deployed. This file only wires arguments to the code in
//! `cli.rs`; the grammar lives in `chima-command`, the config in `chima-config`.

mod cli;

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
    /// Check an app.json: print each app with its environments (exit 0), or
    /// every error with file, line and column (exit 2).
    Check,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let bot = cli::addressee(&args.name, &args.aliases);
    match args.command {
        Some(Command::Parse {
            line: Some(line), ..
        }) => cli::parse_one(&line, &bot),
        Some(Command::Parse { line: None, .. }) => cli::parse_lines(&bot),
        Some(Command::Check) => cli::check(&args.apps),
        None => cli::no_command(),
    }
}
