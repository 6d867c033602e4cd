//! faseng, the deploy service: takes GitHub `deployment` webhooks, queues them,
//! runs the app's provider, and reports statuses back. This file only wires
//! arguments to the crates that do the work.

use std::process::ExitCode;

use clap::{CommandFactory, Parser};

/// The deploy service behind chima: queues and runs deployments.
#[derive(Debug, Parser)]
#[command(name = "faseng", version, about, long_about = None)]
struct Args {
    /// The apps config, used for deployments whose payload carries none.
    #[arg(
        long = "apps",
        env = "APPS_JSON",
        default_value = "config/app.json",
        global = true
    )]
    apps: std::path::PathBuf,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let _ = &args.apps;
    let mut cmd = Args::command();
    eprintln!("{}", cmd.render_usage());
    ExitCode::from(2)
}
