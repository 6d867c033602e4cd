//! The terminal adapter (hubot's `shell`): a prompt in the terminal, as Hubot's shell adapter had,
//! or one line with `chima run`. Replies and notifications are plain text.

use std::io::{BufRead, Write};
use std::process::ExitCode;
use std::sync::Arc;

use chima_config::{Apps, Requester};

use crate::backend::ChatOut;
use crate::bot::{Bot, Chat, Ending};
use crate::settings::Settings;

pub fn main(settings: &Settings, line: Option<&str>) -> ExitCode {
    chima_settings::init_tracing("warn");
    let Some(runtime) = crate::settings::runtime() else {
        return ExitCode::from(2);
    };
    runtime.block_on(run(settings, line))
}

async fn run(settings: &Settings, line: Option<&str>) -> ExitCode {
    let bot = match build(settings).await {
        Ok(b) => b,
        Err(e) => {
            eprintln!("chima: {e:#}");
            return ExitCode::from(2);
        }
    };
    let user = std::env::var("USER").unwrap_or_else(|_| "shell".to_string());
    let chat = Chat {
        requester: Requester {
            user_id: None,
            user_name: user,
            room_id: Some("shell".to_string()),
            room_name: Some("shell".to_string()),
        },
        adapter: "shell",
        room: "shell".to_string(),
        thread_ts: None,
        response_url: None,
        response_uses: Default::default(),
    };
    let code = match line {
        Some(line) => match one(&bot, line, &chat).await {
            Ending::Ok => ExitCode::SUCCESS,
            Ending::Failed => ExitCode::from(1),
            Ending::Usage => ExitCode::from(2),
        },
        None => repl(&bot, &chat).await,
    };
    bot.backend.stop().await;
    code
}

/// The bot for the terminal: GitHub when credentials are set, else the
/// local engine.
async fn build(settings: &Settings) -> anyhow::Result<Bot> {
    let apps = Arc::new(Apps::load(&settings.deploy.apps).map_err(|e| anyhow::anyhow!("{e}"))?);
    let (backend, _) = crate::backend::open(settings, apps.clone(), ChatOut::Here).await?;
    let mut addressee = settings.addressee();
    // In a terminal every line is for the bot, with or without its name.
    addressee.direct = true;
    Ok(Bot {
        addressee,
        apps,
        default_env: settings.default_environment.clone(),
        backend,
    })
}

/// Handles one line, printing replies as they come.
async fn one(bot: &Bot, line: &str, chat: &Chat) -> Ending {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let printer = tokio::spawn(async move {
        let mut out = std::io::stdout();
        while let Some(text) = rx.recv().await {
            let _ = writeln!(out, "{text}");
            let _ = out.flush();
        }
    });
    let ending = bot.handle(line, chat, &tx, true).await;
    drop(tx);
    let _ = printer.await;
    ending
}

async fn repl(bot: &Bot, chat: &Chat) -> ExitCode {
    let name = bot.addressee.name.clone();
    let mode = bot.backend.mode();
    println!("{name} ({mode}). Try `deploy demo to staging`, `help`; Ctrl-D quits.");
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
        print!("{name}> ");
        let _ = std::io::stdout().flush();
        let Some(line) = rx.recv().await else {
            println!();
            return ExitCode::SUCCESS;
        };
        if line.trim().is_empty() {
            continue;
        }
        if matches!(line.trim(), "exit" | "quit") {
            return ExitCode::SUCCESS;
        }
        one(bot, &line, chat).await;
    }
}
