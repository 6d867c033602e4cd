//! faseng, the deploy service: takes GitHub `deployment` webhooks, queues them,
//! runs the app's provider, and reports statuses back. This file only reads the
//! settings and hands them to the library (`serve`, `doctor`, the manifests).

use std::process::ExitCode;

use clap::Parser;
use faseng::{Args, Command, doctor, manifest, serve};

fn main() -> ExitCode {
    // Before anything else: no core dumps and no ptrace or /proc/<pid>/environ for
    // other processes of the same user, such as the deploy scripts faseng runs.
    if let Err(e) = chima_engine::guard::non_dumpable() {
        eprintln!("faseng: warning: cannot make the process non-dumpable: {e}");
    }
    // `faseng guard ...`: the process each provider runs under (crates/engine/src/guard.rs).
    if let Some(code) = chima_engine::guard::main_if_guard() {
        return code;
    }
    let args = Args::parse();
    if let Some(Command::GithubAppManifest(m)) = &args.command {
        return manifest::main(m, &args.github.github_api_url);
    }
    // doctor says what it found on stdout; the clients' retries are noise.
    chima_settings::init_tracing(match args.command {
        Some(Command::Doctor) => "off",
        _ => "info",
    });
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("faseng: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(Command::Doctor) = &args.command {
        return runtime.block_on(doctor::run(args));
    }
    match runtime.block_on(serve::run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("faseng: {e:#}");
            ExitCode::from(2)
        }
    }
}
