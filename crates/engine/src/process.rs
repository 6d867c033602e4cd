//! Running one provider command: argv (never a shell), its own process group,
//! a clean environment, stdout and stderr streamed line by line as they come,
//! and a deadline or a cancel that kills the whole group (grandchildren too).

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chima_store::Stream;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// The longest log line kept; the rest of a longer line is cut, with a note.
/// A provider that prints a megabyte without a newline must not stall or
/// bloat the store.
pub const MAX_LINE_BYTES: usize = 16 * 1024;

/// How long a process group gets between SIGTERM and SIGKILL.
pub const KILL_GRACE: Duration = chima_guard::KILL_GRACE;

/// After the main process exits, how long output may still drain from
/// processes it left behind before the group is killed.
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// A line of output, as it arrives.
pub type LineSender = mpsc::Sender<(Stream, String)>;

/// What one command did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// It exited by itself with this code (`None`: killed by a signal).
    Exited(Option<i32>),
    /// The deadline passed; the group was killed.
    TimedOut,
    /// Someone cancelled; the group was killed.
    Cancelled(String),
    /// The guard killed the group on its own: the lease was not renewed in time
    /// (or faseng went away). Why, in the guard's words.
    Fenced(String),
}

/// How a command ended, and the last thing it said on stderr (the line a failure
/// reason quotes: tools print their error last).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    /// How it ended.
    pub exit: Exit,
    /// The last non-empty stderr line, as printed (not yet redacted).
    pub last_stderr: Option<String>,
}

/// One command to run.
#[derive(Debug, Clone)]
pub struct Spec<'a> {
    /// The program and its arguments; never run through a shell.
    pub argv: &'a [String],
    /// The working folder (the job's checkout).
    pub dir: &'a Path,
    /// The whole environment of the process: nothing is inherited.
    pub env: &'a [(String, String)],
    /// When the command times out and its group is killed ([`Exit::TimedOut`]).
    pub deadline: Instant,
    /// Another user to run as (faseng is root), or `None` for faseng's own user.
    pub run_as: Option<&'a crate::runas::RunAs>,
    /// How far below faseng the command runs ([`crate::priority`]).
    pub priority: crate::priority::Priority,
    /// Run under a guard that fences the command with the lease ([`crate::guard`]);
    /// `None` runs it as a direct child (the engine's own unit tests).
    pub guard: Option<&'a Guarded>,
}

/// How to put a command under a guard.
#[derive(Debug, Clone)]
pub struct Guarded {
    /// The guard's program and its first arguments (`faseng`, `guard`).
    pub program: std::path::PathBuf,
    /// The arguments before the guard's own (`["guard"]`).
    pub prefix: Vec<String>,
    /// Where the guard's status file goes: faseng's private work folder, never the
    /// checkout a provider can write to.
    pub status_dir: std::path::PathBuf,
    /// Names the status files of one job (`job-<id>-<pid>`).
    pub label: String,
    /// The deadline the lease keeper moves forward after each renewal.
    pub deadline: watch::Receiver<Instant>,
    /// Told each guard's pid and start time as it starts (recorded with the claim).
    pub started: Option<mpsc::UnboundedSender<(u32, u64)>>,
    /// Numbers the guards of one job.
    pub seq: Arc<std::sync::atomic::AtomicU32>,
}

/// Why a command could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// The argv is empty.
    #[error("no command to run")]
    Empty,
    /// The program could not be started (not found, not executable, ...).
    #[error("cannot start `{program}`: {source}")]
    Start {
        /// The program, as the argv names it (or the guard's).
        program: String,
        /// Why it could not be started.
        source: std::io::Error,
    },
}

/// Runs `spec`, sending each output line to `lines`, until it exits, the
/// deadline passes or `cancel` carries a name.
pub async fn run(
    spec: Spec<'_>,
    lines: LineSender,
    mut cancel: watch::Receiver<Option<String>>,
) -> Result<Finished, SpawnError> {
    let (program, args) = spec.argv.split_first().ok_or(SpawnError::Empty)?;
    if let Some(guard) = spec.guard {
        return run_guarded(&spec, guard, lines, cancel).await;
    }
    let mut cmd = Command::new(crate::spawn::resolve(
        program.as_ref(),
        crate::spawn::path_in(spec.env).as_deref(),
        Some(spec.dir),
    ));
    cmd.args(args)
        .current_dir(spec.dir)
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(who) = spec.run_as {
        drop_privileges(&mut cmd, who);
    }
    let mut child = crate::spawn::spawn(cmd, spec.priority)
        .await
        .map_err(|source| SpawnError::Start {
            program: program.clone(),
            source,
        })?;
    let pgid = child.id();
    let (readers, last_stderr) = read_output(&mut child, lines);

    let exit = tokio::select! {
        status = child.wait() => Exit::Exited(status.ok().and_then(|s| s.code())),
        _ = tokio::time::sleep_until(spec.deadline) => Exit::TimedOut,
        by = cancelled(&mut cancel) => Exit::Cancelled(by),
    };
    match &exit {
        Exit::Exited(_) => {
            // The main process is gone; let what it left behind finish writing,
            // then make sure nothing of the group survives the job.
            let drained = tokio::time::timeout(DRAIN_GRACE, join_all(readers)).await;
            kill_group(pgid, libc::SIGKILL);
            if drained.is_err() {
                tracing::debug!(?pgid, "output still open after exit; group killed");
            }
        }
        Exit::TimedOut | Exit::Cancelled(_) | Exit::Fenced(_) => {
            terminate(&mut child, pgid).await;
            let _ = tokio::time::timeout(DRAIN_GRACE, join_all(readers)).await;
        }
    }
    let last_stderr = last_stderr.lock().ok().and_then(|l| l.clone());
    Ok(Finished { exit, last_stderr })
}

/// Runs `spec` under a guard: the guard starts the command in its own group, and
/// faseng talks to the guard only through its stdin (deadlines, `stop`). Dropping
/// this future closes that pipe, which the guard takes as "faseng went away".
async fn run_guarded(
    spec: &Spec<'_>,
    guard: &Guarded,
    lines: LineSender,
    mut cancel: watch::Receiver<Option<String>>,
) -> Result<Finished, SpawnError> {
    use std::sync::atomic::Ordering;
    use tokio::io::AsyncWriteExt;
    let program = spec.argv.first().cloned().unwrap_or_default();
    let n = guard.seq.fetch_add(1, Ordering::SeqCst);
    let status_path = guard
        .status_dir
        .join(format!("{}-guard-{n}.json", guard.label));
    let mut deadline = guard.deadline.clone();
    let remaining = deadline
        .borrow_and_update()
        .saturating_duration_since(Instant::now());
    if remaining.is_zero() {
        return Ok(Finished {
            exit: Exit::Fenced(
                "the lease deadline had passed before the command could start".into(),
            ),
            last_stderr: None,
        });
    }
    let args = crate::guard::GuardArgs {
        status: status_path.clone(),
        deadline_ms: remaining.as_millis().try_into().unwrap_or(u64::MAX),
        uid: spec.run_as.map(|w| w.uid),
        gid: spec.run_as.map(|w| w.gid),
        priority: spec.priority,
        argv: spec.argv.to_vec(),
    };
    let mut cmd = Command::new(&guard.program);
    cmd.args(&guard.prefix)
        .args(args.to_args())
        .current_dir(spec.dir)
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own group: a Ctrl-C or a signal to faseng's group does not reach it.
        .process_group(0);
    // At the worker's priority, above the provider's, to fence on time (ARCHITECTURE.md, "Priorities"); by
    // its full path, so that the standard library need not fork faseng (spawn.rs).
    let mut child = cmd.spawn().map_err(|source| SpawnError::Start {
        program: format!("the guard ({})", guard.program.display()),
        source,
    })?;
    if let (Some(tell), Some(pid)) = (&guard.started, child.id()) {
        let start = crate::guard::start_time(pid).unwrap_or(0);
        let _ = tell.send((pid, start));
    }
    let mut stdin = child.stdin.take();
    let (readers, last_stderr) = read_output(&mut child, lines);
    let mut decided: Option<Exit> = None;
    let mut deadline_open = true;
    let mut cancel_open = true;
    loop {
        let say: Option<String> = tokio::select! {
            _ = child.wait() => break,
            changed = deadline.changed(), if deadline_open => match changed {
                Ok(()) => {
                    let ms = deadline.borrow_and_update().saturating_duration_since(Instant::now()).as_millis();
                    Some(format!("deadline {ms}\n"))
                }
                Err(_) => { deadline_open = false; None }
            },
            _ = tokio::time::sleep_until(spec.deadline), if decided.is_none() => {
                decided = Some(Exit::TimedOut);
                Some("stop\n".to_string())
            }
            by = cancelled(&mut cancel), if decided.is_none() && cancel_open => {
                decided = Some(Exit::Cancelled(by));
                cancel_open = false;
                Some("stop\n".to_string())
            }
        };
        if let (Some(line), Some(pipe)) = (say, stdin.as_mut())
            && pipe.write_all(line.as_bytes()).await.is_err()
        {
            tracing::warn!("the guard stopped reading its pipe");
        }
    }
    drop(stdin);
    let _ = tokio::time::timeout(DRAIN_GRACE, join_all(readers)).await;
    let status = crate::guard::GuardStatus::read(&status_path);
    let _ = std::fs::remove_file(&status_path);
    let last_stderr = last_stderr.lock().ok().and_then(|l| l.clone());
    let Some(status) = status.filter(|s| s.ended) else {
        return Ok(Finished {
            exit: decided.unwrap_or(Exit::Exited(None)),
            last_stderr,
        });
    };
    if let Some(e) = status.spawn_error {
        return Err(SpawnError::Start {
            program,
            source: std::io::Error::other(e),
        });
    }
    let exit = match (status.fenced, decided) {
        (Some(why), _) => Exit::Fenced(why),
        (None, Some(decided)) => decided,
        (None, None) => Exit::Exited(status.exit_code),
    };
    Ok(Finished { exit, last_stderr })
}

/// The readers of a child's stdout and stderr, and where the last stderr line is kept.
type Readers = [Option<tokio::task::JoinHandle<()>>; 2];

/// Starts forwarding the child's output line by line; `lines` is given up, so the
/// receiver ends once both pipes are closed.
fn read_output(child: &mut Child, lines: LineSender) -> (Readers, Arc<Mutex<Option<String>>>) {
    let last_stderr = Arc::new(Mutex::new(None));
    let readers = [
        child
            .stdout
            .take()
            .map(|o| tokio::spawn(pump(o, Stream::Stdout, lines.clone(), None))),
        child.stderr.take().map(|e| {
            tokio::spawn(pump(
                e,
                Stream::Stderr,
                lines.clone(),
                Some(last_stderr.clone()),
            ))
        }),
    ];
    (readers, last_stderr)
}

async fn join_all(readers: Readers) {
    for r in readers.into_iter().flatten() {
        let _ = r.await;
    }
}

/// Resolves with who cancelled when the watch carries a name; never when nobody can
/// cancel.
pub(crate) async fn cancelled(cancel: &mut watch::Receiver<Option<String>>) -> String {
    loop {
        if let Some(by) = cancel.borrow_and_update().clone() {
            return by;
        }
        if cancel.changed().await.is_err() {
            // Nobody can cancel any more: wait forever.
            std::future::pending::<()>().await;
        }
    }
}

/// SIGTERM to the group, a grace period, then SIGKILL.
async fn terminate(child: &mut Child, pgid: Option<u32>) {
    kill_group(pgid, libc::SIGTERM);
    if tokio::time::timeout(KILL_GRACE, child.wait())
        .await
        .is_err()
    {
        kill_group(pgid, libc::SIGKILL);
        let _ = child.wait().await;
    }
    // The leader may have exited on TERM while others ignored it.
    kill_group(pgid, libc::SIGKILL);
}

/// Starts the child as `who`: its uid and gid. The standard library drops every
/// supplementary group when root switches users this way (`setgroups(0)` before
/// `setuid`), so none of root's groups follows the provider.
fn drop_privileges(cmd: &mut Command, who: &crate::runas::RunAs) {
    cmd.uid(who.uid).gid(who.gid);
}

/// Signals every process of the group led by `pgid`.
#[allow(unsafe_code)]
fn kill_group(pgid: Option<u32>, signal: libc::c_int) {
    let Some(pgid) = pgid.and_then(|p| libc::pid_t::try_from(p).ok()) else {
        return;
    };
    if pgid <= 1 {
        return;
    }
    // SAFETY: killpg only sends a signal; the group was created for this child
    // (process_group(0)), so the id cannot name faseng's own group.
    unsafe {
        libc::killpg(pgid, signal);
    }
}

/// Lines tools print after their error, which say nothing about it: Rake (under
/// Capistrano) ends every failure with `Tasks: TOP => ...` and a hint about `--trace`.
fn is_trailer(line: &str) -> bool {
    let line = line.trim();
    line.starts_with("Tasks: TOP =>") || line == "(See full trace by running task with --trace)"
}

/// Reads lines from one pipe and forwards them, cutting over-long ones; keeps the
/// last non-empty one in `last`, when given.
async fn pump(
    pipe: impl AsyncRead + Unpin,
    stream: Stream,
    lines: LineSender,
    last: Option<Arc<Mutex<Option<String>>>>,
) {
    let mut reader = BufReader::with_capacity(64 * 1024, pipe);
    let mut buf = Vec::with_capacity(256);
    loop {
        buf.clear();
        let mut cut = 0usize;
        // Read one line, keeping at most MAX_LINE_BYTES of it.
        loop {
            let chunk = match reader.fill_buf().await {
                Ok(c) => c,
                Err(_) => return,
            };
            if chunk.is_empty() {
                break;
            }
            let (take, done) = match chunk.iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (chunk.len(), false),
            };
            let room = MAX_LINE_BYTES.saturating_sub(buf.len());
            let kept = take.min(room);
            buf.extend_from_slice(&chunk[..kept]);
            cut += take - kept;
            reader.consume(take);
            if done {
                break;
            }
        }
        if buf.is_empty() && cut == 0 {
            return;
        }
        while matches!(buf.last(), Some(b'\n' | b'\r')) {
            buf.pop();
        }
        let mut line = String::from_utf8_lossy(&buf).into_owned();
        if cut > 0 {
            line.push_str(&format!(" [line cut: {cut} more bytes]"));
        }
        if let Some(last) = &last
            && !line.trim().is_empty()
            && !is_trailer(&line)
            && let Ok(mut l) = last.lock()
        {
            *l = Some(line.chars().take(300).collect());
        }
        if lines.send((stream, line)).await.is_err() {
            return;
        }
    }
}
