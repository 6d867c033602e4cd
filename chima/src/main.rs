//! chima, the chat bot: reads deploy commands, checks them against app.json,
//! and has them deployed. This file only wires arguments to the modules: the
//! grammar lives in `chima-command`, the config in `chima-config`, the bot's
//! replies in `bot.rs`.

mod backend;
mod bot;
mod cli;
mod doctor;
mod faseng_api;
mod local;
mod manifest;
mod remote;
mod replies;
mod settings;
mod slack;
mod terminal;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// ChatOps deployments: `chima deploy project-x/feature to edge`.
#[derive(Debug, Parser)]
#[command(name = "chima", version, about, long_about = None)]
struct Args {
    #[command(flatten)]
    settings: settings::Settings,

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
    /// Handle one chat line on the terminal and wait for its deployment: exit
    /// 0 when it succeeded, 1 when it failed, 2 on a usage or config error.
    Run {
        /// The line, as typed in chat (`"chima deploy demo to staging"`).
        line: String,
    },
    /// Print the Slack app manifest (YAML) asking for what chima uses: paste it in
    /// api.slack.com/apps, "Create New App", "From an app manifest".
    SlackManifest {
        /// chima's public URL: the Events API at URL/slack/events (and the slash
        /// command and interactivity next to it) instead of Socket Mode.
        #[arg(long, value_name = "URL")]
        events_url: Option<String>,
    },
    /// Check the settings against Slack, GitHub and faseng: one line per check, with
    /// what to fix; exit 0 only when every configured feature's checks pass.
    Doctor,
}

fn main() -> ExitCode {
    // `chima guard ...`: the guard the embedded engine runs providers under.
    if let Some(code) = chima_engine::guard::main_if_guard() {
        return code;
    }
    let mut args = Args::parse();
    // The offline subcommands need no secret; everything else checks them first.
    if !matches!(
        args.command,
        Some(Command::Parse { .. })
            | Some(Command::Check)
            | Some(Command::SlackManifest { .. })
            // doctor reports a refused secret as one of its checks.
            | Some(Command::Doctor)
    ) && let Err(e) = args.settings.load_secrets()
    {
        eprintln!("chima: {e:#}");
        return ExitCode::from(2);
    }
    let s = &args.settings;
    match &args.command {
        Some(Command::Parse {
            line: Some(line), ..
        }) => cli::parse_one(line, &s.addressee()),
        Some(Command::Parse { line: None, .. }) => cli::parse_lines(&s.addressee()),
        Some(Command::Check) => cli::check(&s.deploy.apps),
        Some(Command::Run { line }) => terminal::main(s, Some(line)),
        Some(Command::SlackManifest { events_url }) => {
            manifest::slack_manifest(&s.name, events_url.as_deref())
        }
        Some(Command::Doctor) => doctor::main(&mut s.clone()),
        None if s.slack.bot_token().is_some() => slack::main(s),
        None => terminal::main(s, None),
    }
}
