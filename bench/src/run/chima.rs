//! chima's phases: the process started against fakes, its output collected, and
//! the commands timed.
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use crate::util::{self, Proc};

use super::*;

/// The output of a chima process, collected as it comes.
pub(super) struct Output {
    text: Arc<Mutex<String>>,
    changed: Arc<tokio::sync::Notify>,
}

impl Output {
    pub(super) fn follow(mut out: tokio::process::ChildStdout) -> Output {
        let text = Arc::new(Mutex::new(String::new()));
        let changed = Arc::new(tokio::sync::Notify::new());
        let (t, c) = (text.clone(), changed.clone());
        tokio::spawn(async move {
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                match out.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if let Ok(mut s) = t.lock() {
                            s.push_str(&String::from_utf8_lossy(&buf[..n]));
                        }
                        c.notify_waiters();
                    }
                }
            }
            c.notify_waiters();
        });
        Output { text, changed }
    }

    pub(super) fn count(&self, what: &str) -> usize {
        self.text
            .lock()
            .map(|s| s.matches(what).count())
            .unwrap_or(0)
    }

    pub(super) async fn wait_count(
        &self,
        what: &str,
        n: usize,
        limit: Duration,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            let notified = self.changed.notified();
            if self.count(what) >= n {
                return Ok(());
            }
            if Instant::now() > deadline {
                let text = self.text.lock().map(|s| s.clone()).unwrap_or_default();
                bail!(
                    "chima never printed {what:?} ({n} times); it printed:\n{}",
                    &text[text.len().saturating_sub(2000)..]
                );
            }
            let _ = tokio::time::timeout(Duration::from_millis(5), notified).await;
        }
    }
}

pub(super) struct Chima {
    proc: Proc,
    stdin: tokio::process::ChildStdin,
    out: Output,
}

pub(super) async fn start_chima(
    opts: &Options,
    dir: &Path,
    apps: &Path,
) -> anyhow::Result<(Chima, Duration)> {
    let log = dir.join("chima.log");
    let t0 = Instant::now();
    let mut child = tokio::process::Command::new(&opts.chima)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", std::env::var_os("HOME").unwrap_or_default())
        .env("USER", "bench")
        .env("APPS_JSON", apps)
        .env(
            "DATABASE_URL",
            format!("sqlite://{}", dir.join("chima.db").display()),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)?,
        ))
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {}", opts.chima.display()))?;
    let pid = child.id().context("chima exited at once")?;
    let out = Output::follow(child.stdout.take().context("stdout")?);
    let stdin = child.stdin.take().context("stdin")?;
    out.wait_count("chima> ", 1, Duration::from_secs(60))
        .await?;
    let took = t0.elapsed();
    Ok((
        Chima {
            proc: Proc { child, pid, log },
            stdin,
            out,
        },
        took,
    ))
}

impl Chima {
    /// Ctrl-D: chima quits.
    pub(super) async fn quit(self) {
        drop(self.stdin);
        let mut proc = self.proc;
        if tokio::time::timeout(Duration::from_secs(30), proc.child.wait())
            .await
            .is_err()
        {
            let _ = proc.child.start_kill();
        }
    }
}

pub(super) async fn chima_phases(
    opts: &Options,
    dir: &Path,
    apps: &Path,
    big_apps: &Path,
    d: &mut Details,
) -> anyhow::Result<()> {
    say("chima: --version, first start (new SQLite file), restarts, idle, deploys");
    for _ in 0..opts.starts.max(1) {
        let t0 = Instant::now();
        let status = tokio::process::Command::new(&opts.chima)
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .await?;
        d.chima_version_ms.push(t0.elapsed().as_secs_f64() * 1000.0);
        if !status.success() {
            bail!("chima --version failed");
        }
    }
    let (c, took) = start_chima(opts, dir, apps).await?;
    d.chima_first_start_ms = took.as_secs_f64() * 1000.0;
    c.quit().await;
    let mut kept = None;
    for k in 0..opts.starts.max(1) {
        let (c, took) = start_chima(opts, dir, apps).await?;
        d.chima_start_ms.push(took.as_secs_f64() * 1000.0);
        if k + 1 < opts.starts.max(1) {
            c.quit().await;
        } else {
            kept = Some(c);
        }
    }
    let mut c = kept.context("no chima")?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    d.chima_idle = c.proc.memory()?;
    say(&format!("chima: idle RSS {:.1} MB", d.chima_idle.rss_mb));
    for n in 1..=5 {
        c.stdin.write_all(b"deploy bench to staging\n").await?;
        c.stdin.flush().await?;
        c.out
            .wait_count("was successful", n, Duration::from_secs(60))
            .await
            .with_context(|| util::tail(&c.proc.log, 20))?;
    }
    d.chima_after_deploys = c.proc.memory()?;
    say(&format!(
        "chima: peak RSS {:.1} MB after 5 deploys",
        d.chima_after_deploys.peak_mb
    ));
    c.quit().await;
    let (c, _) = start_chima(opts, dir, big_apps).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    d.chima_idle_big_apps = c.proc.memory()?;
    say(&format!(
        "chima: idle RSS {:.1} MB with faseng's app.json",
        d.chima_idle_big_apps.rss_mb
    ));
    c.quit().await;
    Ok(())
}
