//! The guard: a small process (`faseng-guard`, a binary of its own next to faseng's;
//! `faseng guard` or `chima guard`, a re-exec of the binary itself, where it is not
//! installed) between faseng and each provider, so that a deploy stops when its lease can no
//! longer be trusted, whether or not faseng is alive or scheduled.
//!
//! Why a separate process: a faseng that is frozen (SIGSTOP, a paused VM, a stall)
//! or killed (SIGKILL, the OOM killer) cannot kill its children, and another faseng
//! reaps its lease and starts the next deployment of the same environment. The guard
//! owns the provider's process group and holds a deadline; faseng moves the deadline
//! forward after every lease renewal that reached the database (a line on the
//! guard's stdin). When the deadline passes without one, or when stdin closes
//! (faseng died), the guard kills the whole group, reaps every descendant (it is
//! their subreaper) and records what it did in its status file.
//!
//! The invariant (see `Store::renew_lease`): the deadline is always earlier than the
//! moment another process may reap the lease. faseng measures both from the instant
//! *before* it sent the renewal, which is no later than the database's
//! `clock_timestamp()` the new expiry is computed from, and sets the deadline a
//! margin (a tenth of the lease) before that expiry.
//!
//! The protocol on stdin, one line each: `deadline <ms>` (the deadline is now `ms`
//! from now) and `stop` (a cancel or a timeout: SIGTERM, a grace period, SIGKILL).
//! The guard uses no async runtime: a blocking loop that wakes every 20 ms.

use std::io::{BufRead, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

pub mod priority;

use crate::priority::Priority;

/// The guard's own binary, looked for next to faseng's (and chima's). One is
/// started per deploy: this one links the standard library, serde and libc only
/// (a tenth of faseng's size), where re-executing faseng (relocated by the
/// dynamic loader at every start) cost more CPU per deploy (BENCHMARKS.md).
pub const BINARY: &str = "faseng-guard";

/// How long a stopped provider gets between SIGTERM and SIGKILL, in the guard
/// and in faseng's unguarded runs alike.
pub const KILL_GRACE: Duration = Duration::from_secs(5);

/// The first argument that turns faseng's (or chima's) binary into a guard.
pub const SUBCOMMAND: &str = "guard";

/// How often the guard looks at its deadline, its stdin and its child.
const TICK: Duration = Duration::from_millis(20);

/// The longest the guard waits for killed processes to be gone.
const REAP_LIMIT: Duration = Duration::from_secs(10);

/// What the guard writes to its status file: at start (who it is) and at the end
/// (how the provider ended). faseng reads it when the guard exits; a restarted
/// faseng reads the ones left by a dead predecessor.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct GuardStatus {
    /// The guard's pid and its start time (clock ticks since boot, `/proc/<pid>/stat`).
    pub guard_pid: u32,
    /// The guard's start time: with it, a pid reused since is not taken for the guard.
    pub guard_start: u64,
    /// The faseng that started it (pid and start time).
    pub parent_pid: u32,
    /// The faseng's start time, for the same reason.
    pub parent_start: u64,
    /// The provider's process group (its leader's pid), once started.
    pub pgid: Option<u32>,
    /// Set at the end.
    pub ended: bool,
    /// The provider's exit code, when it exited by itself.
    pub exit_code: Option<i32>,
    /// The signal that ended it, when one did.
    pub signal: Option<i32>,
    /// Why the guard killed the group on its own: the lease deadline passed, or
    /// faseng went away. `None` when it did not.
    pub fenced: Option<String>,
    /// The provider could not be started.
    pub spawn_error: Option<String>,
}

impl GuardStatus {
    /// Reads a status file; `None` when it is missing or unreadable. Between
    /// two versions the newer one may for a moment be only at
    /// [`GuardStatus::tmp_path`] ([`GuardStatus::write`]): read there too.
    pub fn read(path: &Path) -> Option<GuardStatus> {
        let parse = |p: &Path| -> Option<GuardStatus> {
            let text = std::fs::read(p).ok()?;
            serde_json::from_slice(&text).ok()
        };
        // The third read: the rename may land between the first two.
        parse(path)
            .or_else(|| parse(&Self::tmp_path(path)))
            .or_else(|| parse(path))
    }

    /// Where the next version is written before it takes the status file's name.
    pub fn tmp_path(path: &Path) -> PathBuf {
        path.with_extension("tmp")
    }

    /// Writes the file whole, so a reader never sees half of it: the new version
    /// is written to [`GuardStatus::tmp_path`], the old one removed, and the new one
    /// renamed into place. Removed first, not renamed over: ext4 (`auto_da_alloc`)
    /// starts writing a file's data to disk when it is renamed over another, which
    /// put two disk writes per deploy next to PostgreSQL's commits (`perf`, BENCHMARKS.md);
    /// a status file is read by processes of this machine only and needs none.
    fn write(&self, path: &Path) {
        let tmp = Self::tmp_path(path);
        let written = serde_json::to_vec(self)
            .map_err(std::io::Error::other)
            .and_then(|body| std::fs::write(&tmp, body))
            .and_then(|()| match std::fs::remove_file(path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            })
            .and_then(|()| std::fs::rename(&tmp, path));
        if let Err(e) = written {
            eprintln!("faseng guard: cannot write {}: {e}", path.to_string_lossy());
        }
    }
}

/// The guard's command line: `guard --status FILE --deadline-ms MS [--uid U --gid G]
/// [--nice N] [--io CLASS] -- ARGV...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardArgs {
    /// `--status`: the status file the guard writes.
    pub status: PathBuf,
    /// `--deadline-ms`: the first deadline, in milliseconds from the guard's start;
    /// faseng moves it on stdin.
    pub deadline_ms: u64,
    /// `--uid`: the user the provider runs as (faseng's `FASENG_RUN_AS`), when not faseng's.
    pub uid: Option<u32>,
    /// `--gid`: the provider's group, with `uid`.
    pub gid: Option<u32>,
    /// `--nice`, `--io`: the provider's priority (the guard keeps faseng's).
    pub priority: Priority,
    /// The provider's command line, after `--`.
    pub argv: Vec<String>,
}

impl GuardArgs {
    /// The arguments after the subcommand, as faseng writes them.
    pub fn to_args(&self) -> Vec<String> {
        let mut out = vec![
            "--status".to_string(),
            self.status.to_string_lossy().into_owned(),
            "--deadline-ms".to_string(),
            self.deadline_ms.to_string(),
        ];
        if let (Some(uid), Some(gid)) = (self.uid, self.gid) {
            out.extend([
                "--uid".into(),
                uid.to_string(),
                "--gid".into(),
                gid.to_string(),
            ]);
        }
        out.extend(self.priority.to_args());
        out.push("--".into());
        out.extend(self.argv.iter().cloned());
        out
    }

    /// Parses what [`GuardArgs::to_args`] wrote.
    pub fn parse(args: &[String]) -> Result<GuardArgs, String> {
        let mut status = None;
        let mut deadline_ms = None;
        let (mut uid, mut gid) = (None, None);
        let mut priority = Priority::UNCHANGED;
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut value = |name: &str| {
                it.next()
                    .cloned()
                    .ok_or_else(|| format!("{name} needs a value"))
            };
            match a.as_str() {
                "--status" => status = Some(PathBuf::from(value("--status")?)),
                "--deadline-ms" => {
                    deadline_ms = Some(
                        value("--deadline-ms")?
                            .parse()
                            .map_err(|_| "--deadline-ms takes milliseconds".to_string())?,
                    )
                }
                "--uid" => uid = Some(value("--uid")?.parse().map_err(|_| "bad --uid")?),
                "--gid" => gid = Some(value("--gid")?.parse().map_err(|_| "bad --gid")?),
                "--nice" => priority.nice = Priority::parse_nice(&value("--nice")?)?,
                "--io" => priority.io = value("--io")?.parse()?,
                "--" => {
                    let argv: Vec<String> = it.cloned().collect();
                    if argv.is_empty() {
                        return Err("no command after --".into());
                    }
                    return Ok(GuardArgs {
                        status: status.ok_or("--status is required")?,
                        deadline_ms: deadline_ms.ok_or("--deadline-ms is required")?,
                        uid,
                        gid,
                        priority,
                        argv,
                    });
                }
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        Err("no command after --".into())
    }
}

/// When the binary was started as `<binary> guard ...`: runs the guard and returns
/// its exit code. Call first thing in `main`, before any setting is read.
pub fn main_if_guard() -> Option<ExitCode> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) != Some(SUBCOMMAND) {
        return None;
    }
    Some(parse_and_run(&args[2..], "faseng guard"))
}

/// The guard's own binary ([`BINARY`]): its arguments are the guard's, without
/// the subcommand.
pub fn main_standalone() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    parse_and_run(&args, BINARY)
}

fn parse_and_run(args: &[String], name: &str) -> ExitCode {
    match GuardArgs::parse(args) {
        Ok(a) => run(&a),
        Err(e) => {
            eprintln!("{name}: {e} (it is started by faseng, not by hand)");
            ExitCode::from(2)
        }
    }
}

enum Message {
    Deadline(Duration),
    Stop,
    Closed,
    /// The provider's main process has ended (not yet reaped).
    Exited,
}

/// A deadline on two clocks: the monotonic one, and the wall clock, which jumps
/// forward after a paused VM resumes (the monotonic clock may not have counted the
/// pause, while the database's clock did).
#[derive(Clone, Copy)]
struct Deadline {
    mono: Instant,
    wall: SystemTime,
}

impl Deadline {
    fn after(d: Duration) -> Deadline {
        Deadline {
            mono: Instant::now() + d,
            wall: SystemTime::now() + d,
        }
    }
    fn passed(&self) -> bool {
        Instant::now() >= self.mono || SystemTime::now() >= self.wall
    }
}

fn run(args: &GuardArgs) -> ExitCode {
    let started = Instant::now();
    if let Err(e) = non_dumpable() {
        say(&format!(
            "faseng guard: cannot make the guard non-dumpable: {e}"
        ));
    }
    set_subreaper();
    let mut status = GuardStatus {
        guard_pid: std::process::id(),
        guard_start: start_time(std::process::id()).unwrap_or(0),
        parent_pid: parent_pid(),
        parent_start: start_time(parent_pid()).unwrap_or(0),
        ..GuardStatus::default()
    };
    status.write(&args.status);
    let mut deadline = Deadline::after(Duration::from_millis(args.deadline_ms));

    let (program, rest) = match args.argv.split_first() {
        Some(p) => p,
        None => return ExitCode::from(2),
    };
    let mut cmd = Command::new(program);
    cmd.args(rest)
        .stdin(std::process::Stdio::null())
        .process_group(0);
    if let (Some(uid), Some(gid)) = (args.uid, args.gid) {
        // Root's supplementary groups are dropped by the standard library here.
        cmd.uid(uid).gid(gid);
    }
    args.priority.set_in_std(&mut cmd);
    let child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            status.ended = true;
            status.spawn_error = Some(e.to_string());
            status.write(&args.status);
            return ExitCode::from(3);
        }
    };
    let pid = child.id();
    status.pgid = Some(pid);
    status.write(&args.status);

    let messages = read_stdin();
    watch_exit(pid, &messages.1);
    let messages = messages.0;
    let mut stop_at: Option<Instant> = None; // SIGKILL after a stop's grace
    let mut main_exit: Option<(Option<i32>, Option<i32>)> = None;
    let mut drain_until: Option<Instant> = None;
    loop {
        match messages.recv_timeout(TICK) {
            Ok(Message::Deadline(d)) => deadline = Deadline::after(d),
            Ok(Message::Stop) => {
                if stop_at.is_none() {
                    kill_group(pid, libc::SIGTERM);
                    stop_at = Some(Instant::now() + KILL_GRACE);
                }
            }
            Ok(Message::Closed) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                if main_exit.is_none() || group_alive(pid) {
                    status.fenced = Some(
                        "faseng went away (its pipe to the guard closed); the deploy was stopped"
                            .into(),
                    );
                    say(&format!(
                        "faseng guard: faseng went away; stopping the deploy (process group {pid})"
                    ));
                }
                break;
            }
            Ok(Message::Exited) | Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if deadline.passed() {
            status.fenced = Some(format!(
                "no lease renewal reached the database in time ({:.1}s after the guard started); \
                 the guard stopped the deploy before the lease could lapse",
                started.elapsed().as_secs_f64()
            ));
            say(&format!(
                "faseng guard: the lease was not renewed in time; stopping the deploy (process group {pid})"
            ));
            break;
        }
        if stop_at.is_some_and(|t| Instant::now() >= t) {
            break;
        }
        reap_children(pid, &mut main_exit);
        if main_exit.is_some() {
            // The main process is gone: what it left behind may finish writing, then
            // the group goes.
            let until = *drain_until.get_or_insert_with(|| Instant::now() + DRAIN_GRACE);
            if !group_alive(pid) || Instant::now() >= until {
                break;
            }
        }
    }
    kill_all(pid, &mut main_exit);
    if let Some((code, signal)) = main_exit {
        status.exit_code = code;
        status.signal = signal;
    } else {
        status.signal = Some(libc::SIGKILL);
    }
    status.ended = true;
    status.write(&args.status);
    ExitCode::SUCCESS
}

/// The same grace as an unguarded run gives output after the main process exits.
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// A line to faseng's log of this deploy (stderr is the provider's stderr pipe).
/// When faseng is gone nobody reads it; SIGPIPE is ignored in Rust programs.
fn say(line: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{line}");
}

fn read_stdin() -> (mpsc::Receiver<Message>, mpsc::Sender<Message>) {
    let (tx, rx) = mpsc::channel();
    let exits = tx.clone();
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        let mut lines = stdin.lock().lines();
        loop {
            let msg = match lines.next() {
                Some(Ok(line)) => {
                    let line = line.trim().to_string();
                    if line == "stop" {
                        Message::Stop
                    } else if let Some(ms) = line
                        .strip_prefix("deadline ")
                        .and_then(|m| m.parse::<u64>().ok())
                    {
                        Message::Deadline(Duration::from_millis(ms))
                    } else {
                        continue;
                    }
                }
                Some(Err(_)) | None => Message::Closed,
            };
            let closed = matches!(msg, Message::Closed);
            if tx.send(msg).is_err() || closed {
                return;
            }
        }
    });
    (rx, exits)
}

/// Wakes the guard's loop as soon as the provider's main process ends (the
/// loop reaps it), rather than at its next tick: the deploy's end is reported
/// up to a tick sooner. `waitid` with `WNOWAIT` leaves the reaping to the loop.
fn watch_exit(pid: u32, tx: &mpsc::Sender<Message>) {
    let tx = tx.clone();
    let id: libc::id_t = pid;
    std::thread::spawn(move || {
        // SAFETY: an all-zero siginfo_t is a valid value for waitid to fill.
        #[allow(unsafe_code)]
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waitid writes only into `info`.
        #[allow(unsafe_code)]
        let r = unsafe { libc::waitid(libc::P_PID, id, &mut info, libc::WEXITED | libc::WNOWAIT) };
        if r == 0 {
            let _ = tx.send(Message::Exited);
        }
    });
}

/// Reaps every child that has ended (the provider, and orphans handed to the guard
/// as their subreaper); records the provider's own exit.
fn reap_children(main: u32, main_exit: &mut Option<(Option<i32>, Option<i32>)>) -> bool {
    loop {
        let mut st: libc::c_int = 0;
        // SAFETY: waitpid writes only into `st`.
        #[allow(unsafe_code)]
        let r = unsafe { libc::waitpid(-1, &mut st, libc::WNOHANG) };
        if r == 0 {
            return true; // children remain
        }
        if r < 0 {
            return false; // ECHILD: none left
        }
        if r as u32 == main {
            let code = libc::WIFEXITED(st).then(|| libc::WEXITSTATUS(st));
            let sig = libc::WIFSIGNALED(st).then(|| libc::WTERMSIG(st));
            *main_exit = Some((code, sig));
        }
    }
}

/// Kills the provider's group and every descendant that left it, and waits until
/// none is left (or [`REAP_LIMIT`] passed).
fn kill_all(pgid: u32, main_exit: &mut Option<(Option<i32>, Option<i32>)>) {
    let until = Instant::now() + REAP_LIMIT;
    loop {
        kill_group(pgid, libc::SIGKILL);
        // No child at all (ECHILD) means no descendant at all: the guard is the
        // subreaper, so any process left below it would be its child by now.
        // The usual end of a deploy, decided without reading every process
        // on the machine.
        if !reap_children(pgid, main_exit) && !group_alive(pgid) {
            return;
        }
        for child in children_of(std::process::id()) {
            kill_group(child, libc::SIGKILL);
            kill_pid(child, libc::SIGKILL);
        }
        if !reap_children(pgid, main_exit) && !group_alive(pgid) {
            return;
        }
        if Instant::now() >= until {
            say(&format!(
                "faseng guard: processes of group {pgid} are still there after {}s",
                REAP_LIMIT.as_secs()
            ));
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whether any process of the group is left (zombies the guard has not reaped count).
#[allow(unsafe_code)]
fn group_alive(pgid: u32) -> bool {
    let Ok(pgid) = libc::pid_t::try_from(pgid) else {
        return false;
    };
    // SAFETY: signal 0 only checks for existence.
    unsafe { libc::killpg(pgid, 0) == 0 }
}

/// `PR_SET_DUMPABLE` 0, for faseng and for the guard alike: a provider running
/// as the same (non-root) user cannot ptrace the process or read its memory or
/// environment through `/proc` (faseng's secrets; the guard, which it must not
/// keep from fencing). Children get the flag back at exec, so providers
/// themselves are unaffected.
#[allow(unsafe_code)]
pub fn non_dumpable() -> std::io::Result<()> {
    // SAFETY: prctl with PR_SET_DUMPABLE takes plain integers and touches no memory.
    let rc = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Sends `signal` to process group `pgid` (never to group 0 or 1).
#[allow(unsafe_code)]
pub fn kill_group(pgid: u32, signal: libc::c_int) {
    let Ok(pgid) = libc::pid_t::try_from(pgid) else {
        return;
    };
    if pgid <= 1 {
        return;
    }
    // SAFETY: killpg only sends a signal.
    unsafe {
        libc::killpg(pgid, signal);
    }
}

/// Sends `signal` to process `pid` (never to 0 or 1).
#[allow(unsafe_code)]
pub fn kill_pid(pid: u32, signal: libc::c_int) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    if pid <= 1 {
        return;
    }
    // SAFETY: kill only sends a signal.
    unsafe {
        libc::kill(pid, signal);
    }
}

#[allow(unsafe_code)]
fn set_subreaper() {
    // SAFETY: prctl with integer arguments.
    unsafe {
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    }
}

#[allow(unsafe_code)]
fn parent_pid() -> u32 {
    // SAFETY: getppid has no arguments.
    unsafe { libc::getppid() as u32 }
}

/// The fields of `/proc/<pid>/stat` after the command name (which may hold spaces).
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &text[text.rfind(')')? + 1..];
    Some(after.split_whitespace().map(str::to_string).collect())
}

/// A process's start time in clock ticks since boot: with the pid, it names one
/// process for good (pids are reused, start times are not).
pub fn start_time(pid: u32) -> Option<u64> {
    // Field 22 of stat; after the name, index 19 (state is index 0).
    stat_fields(pid)?.get(19)?.parse().ok()
}

/// Whether the process `pid` that started at `start` is still running (not a zombie).
pub fn alive(pid: u32, start: u64) -> bool {
    match stat_fields(pid) {
        Some(f) => {
            f.first().map(String::as_str) != Some("Z")
                && f.get(19).and_then(|s| s.parse::<u64>().ok()) == Some(start)
        }
        None => false,
    }
}

/// Pids whose parent is `parent` (a read of every process's `stat`).
pub fn children_of(parent: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            stat_fields(*pid).and_then(|f| f.get(1).and_then(|p| p.parse::<u32>().ok()))
                == Some(parent)
        })
        .collect()
}

/// Makes sure a guard left by a dead faseng is gone, with everything it ran: its
/// children's process groups first (killing the guard first would hand them to
/// init, out of reach), then the guard. Only when `pid` still is the process that
/// started at `start`.
pub fn kill_left_guard(pid: u32, start: u64) -> bool {
    if !alive(pid, start) {
        return false;
    }
    let until = Instant::now() + REAP_LIMIT;
    while alive(pid, start) && Instant::now() < until {
        kill_pid(pid, libc::SIGSTOP);
        for child in children_of(pid) {
            kill_group(child, libc::SIGKILL);
            kill_pid(child, libc::SIGKILL);
        }
        kill_pid(pid, libc::SIGKILL);
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_round_trip_and_bad_ones_are_refused() {
        let a = GuardArgs {
            status: "/w/guard-1.json".into(),
            deadline_ms: 4500,
            uid: Some(65534),
            gid: Some(65534),
            priority: Priority::default(),
            argv: vec!["./deploy".into(), "--".into(), "x y".into()],
        };
        assert_eq!(GuardArgs::parse(&a.to_args()), Ok(a.clone()));
        let unchanged = GuardArgs {
            priority: Priority::UNCHANGED,
            ..a
        };
        assert_eq!(GuardArgs::parse(&unchanged.to_args()), Ok(unchanged));
        for bad in [
            vec!["--status", "x", "--", "a"],
            vec!["--deadline-ms", "1", "--", "a"],
            vec!["--status", "x", "--deadline-ms", "soon", "--", "a"],
            vec!["--status", "x", "--deadline-ms", "1", "--"],
            vec!["--status", "x", "--deadline-ms", "1", "--evil", "--", "a"],
        ] {
            let bad: Vec<String> = bad.into_iter().map(String::from).collect();
            assert!(GuardArgs::parse(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_status_is_replaced_whole_and_read_from_either_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("job-1-2-guard-0.json");
        let mut s = GuardStatus {
            guard_pid: 7,
            ..GuardStatus::default()
        };
        s.write(&path);
        assert_eq!(GuardStatus::read(&path), Some(s.clone()));
        s.ended = true;
        s.exit_code = Some(3);
        s.write(&path);
        assert_eq!(GuardStatus::read(&path), Some(s.clone()));
        assert!(!GuardStatus::tmp_path(&path).exists());
        // Between the removal and the rename: the new version is found.
        std::fs::rename(&path, GuardStatus::tmp_path(&path)).unwrap();
        assert_eq!(GuardStatus::read(&path), Some(s));
        std::fs::write(GuardStatus::tmp_path(&path), "{\"guard_pid\": 7, \"gua").unwrap();
        assert_eq!(GuardStatus::read(&path), None, "half a file is no status");
    }

    #[test]
    fn start_times_name_processes() {
        let me = std::process::id();
        let start = start_time(me).unwrap();
        assert!(alive(me, start));
        assert!(!alive(me, start + 1));
        assert!(!alive(u32::MAX - 1, start));
    }
}
