//! The shell adapter: a prompt in the terminal, as Hubot's shell adapter had,
//! or one line with `chima run`. Replies and notifications are plain text.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use chima_command::Addressee;

use crate::embedded::{Bot, Ending};

pub struct Options {
    pub bot: Addressee,
    pub apps: PathBuf,
    pub database_url: String,
    pub default_environment: String,
    pub workers: usize,
    pub lease: std::time::Duration,
}

pub fn main(opts: &Options, line: Option<&str>) -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("chima: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    runtime.block_on(run(opts, line))
}

async fn run(opts: &Options, line: Option<&str>) -> ExitCode {
    // In a terminal every line is for the bot, with or without its name.
    let addressee = opts.bot.clone().in_direct_message();
    let bot = match Bot::start(
        addressee,
        &opts.apps,
        &opts.database_url,
        &opts.default_environment,
        opts.workers,
        opts.lease,
    )
    .await
    {
        Ok(b) => b,
        Err(e) => {
            eprintln!("chima: {e:#}");
            return ExitCode::from(2);
        }
    };
    let mut out = std::io::stdout();
    let code = match line {
        Some(line) => match bot.handle(line, &mut out).await {
            Ok(Ending::Ok) => ExitCode::SUCCESS,
            Ok(Ending::Failed) => ExitCode::from(1),
            Ok(Ending::Usage) => ExitCode::from(2),
            Err(e) => {
                eprintln!("chima: {e:#}");
                ExitCode::from(2)
            }
        },
        None => repl(&bot, &mut out).await,
    };
    bot.stop().await;
    code
}

async fn repl(bot: &Bot, out: &mut std::io::Stdout) -> ExitCode {
    let name = bot.addressee.name.clone();
    let _ = writeln!(
        out,
        "{name} (embedded mode: deployments run here, stored in DATABASE_URL). Try `deploy demo to staging`, `help`; Ctrl-D quits."
    );
    let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(16);
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    loop {
        let _ = write!(out, "{name}> ");
        let _ = out.flush();
        let Some(line) = rx.recv().await else {
            let _ = writeln!(out);
            return ExitCode::SUCCESS;
        };
        if line.trim().is_empty() {
            continue;
        }
        if matches!(line.trim(), "exit" | "quit") {
            return ExitCode::SUCCESS;
        }
        if let Err(e) = bot.handle(&line, out).await {
            let _ = writeln!(out, "chima: {e:#}");
        }
    }
}
