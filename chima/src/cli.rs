//! The command-line subcommands that do not need a chat connection.

use std::io::{BufRead, Write};
use std::path::Path;
use std::process::ExitCode;

use chima_command::{Addressee, parse};
use chima_config::Apps;

/// `chima parse "<line>"`.
pub fn parse_one(line: &str, bot: &Addressee) -> ExitCode {
    match parse(line, bot) {
        Ok(command) => match serde_json::to_string(&command) {
            Ok(json) => {
                println!("{json}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("chima: cannot print the command: {e}");
                ExitCode::from(2)
            }
        },
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(1)
        }
    }
}

/// `chima parse --lines`: one output line per input line, for bulk checks.
pub fn parse_lines(bot: &Addressee) -> ExitCode {
    let stdin = std::io::stdin().lock();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for line in stdin.split(b'\n') {
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                eprintln!("chima: cannot read standard input: {e}");
                return ExitCode::from(2);
            }
        };
        let text = String::from_utf8_lossy(&line);
        let json = match parse(&text, bot) {
            Ok(c) => serde_json::to_value(&c),
            Err(e) => Ok(serde_json::json!({ "error": e.to_string() })),
        };
        let written = json
            .map_err(std::io::Error::other)
            .and_then(|j| writeln!(out, "{j}"));
        if let Err(e) = written {
            eprintln!("chima: cannot write standard output: {e}");
            return ExitCode::from(2);
        }
    }
    match out.flush() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chima: cannot write standard output: {e}");
            ExitCode::from(2)
        }
    }
}

/// `chima check`.
pub fn check(path: &Path) -> ExitCode {
    match Apps::load(path) {
        Ok(apps) => {
            println!("{}: {} apps, all valid", path.display(), apps.names().len());
            for app in apps.iter() {
                let envs: Vec<String> = app
                    .environments
                    .iter()
                    .map(|e| {
                        let mut s = e.name.clone();
                        if app.default_environment.as_deref() == Some(&e.name) {
                            s.push_str(" (default)");
                        }
                        if app.is_production(&e.name) {
                            s.push_str(" (production)");
                        }
                        s
                    })
                    .collect();
                println!(
                    "  {} ({} from {}): {}",
                    app.name,
                    app.provider,
                    app.repository,
                    envs.join(", ")
                );
                if !app.aliases.is_empty() {
                    let aliases: Vec<String> = app
                        .aliases
                        .iter()
                        .map(|(a, e)| format!("{a} -> {e}"))
                        .collect();
                    println!("    aliases: {}", aliases.join(", "));
                }
            }
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!(
                "{}: {} problem(s); nothing was started",
                path.display(),
                errors.0.len()
            );
            ExitCode::from(2)
        }
    }
}
