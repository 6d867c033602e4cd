//! One deployment at a time per environment, whatever happens to the faseng running
//! it: two real faseng processes on one PostgreSQL database, a deploy script that
//! beats (appends `<deployment> <n> <nanoseconds>` to a file) every 0.1 s, and the
//! owner frozen (SIGSTOP) past its lease, killed (SIGKILL), or cut off from a
//! private database cluster that is stopped for less than the lease.
//!
//! Asserted each time: no two deployments' beats interleave, the frozen or killed
//! deployment's beats stop before the next one's first, every deployment ends with
//! a final status, and no log line is lost to an outage shorter than the lease.
//! CI runs each scenario once; `CHAOS_RUNS=20` (what `bench/faults chaos` sets)
//! repeats them and prints the counts BENCHMARKS.md records.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chima_store::{Deployment, DeploymentState, Store};
use chima_testkit::github::FakeGitHub;
use chima_testkit::pgcluster::Cluster;

use crate::faults::{deliver, from_slack, until};
use crate::harness::{Faseng, Peer, repo, start_peer};

const APPS: &str = r#"{"app": {"provider": "shell", "repository": "example/app", "environments": ["production"]}}"#;

/// Short leases keep CI quick: renewals every 0.5 s, the guard's deadline 4.5 s
/// after the last one, reaping possible 5 s after it.
const LEASE: &str = "5";

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// A deploy script of `beats` beats, one every 0.1 s, each a line in `file` and
/// one in the deploy's log. It ignores SIGPIPE, as Python (Fabric) does: a tool
/// whose faseng died does not die of its closed output by itself.
fn beating(file: &Path, beats: u32) -> String {
    format!(
        "#!/bin/sh\ntrap '' PIPE\ni=0\nwhile [ $i -lt {beats} ]; do\n  i=$((i+1))\n  echo \"$DEPLOY_ID $i $(date +%s%N)\" >> '{}'\n  echo \"beat $i\"\n  sleep 0.1\ndone\n",
        file.display()
    )
}

/// Each deployment's beats: (n, nanoseconds), in file order.
fn beats(file: &Path) -> BTreeMap<i64, Vec<(u32, u128)>> {
    let mut out: BTreeMap<i64, Vec<(u32, u128)>> = BTreeMap::new();
    for line in std::fs::read_to_string(file).unwrap_or_default().lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if let [id, n, ns] = f[..]
            && let (Ok(id), Ok(n), Ok(ns)) = (id.parse(), n.parse(), ns.parse())
        {
            out.entry(id).or_default().push((n, ns));
        }
    }
    out
}

/// How many pairs of deployments' beats overlap in time: each deployment's beats
/// span [first, last]; two spans that intersect ran together.
fn overlaps(all: &BTreeMap<i64, Vec<(u32, u128)>>) -> usize {
    let spans: Vec<(i64, u128, u128)> = all
        .iter()
        .filter_map(|(id, b)| {
            let first = b.iter().map(|x| x.1).min()?;
            let last = b.iter().map(|x| x.1).max()?;
            Some((*id, first, last))
        })
        .collect();
    let mut n = 0;
    for (i, a) in spans.iter().enumerate() {
        for b in &spans[i + 1..] {
            if a.1 <= b.2 && b.1 <= a.2 {
                eprintln!("chaos: deployments {} and {} beat together", a.0, b.0);
                n += 1;
            }
        }
    }
    n
}

/// The pid in a worker id (`<instance>:<pid>:<n>`).
fn owner_pid(d: &Deployment) -> u32 {
    let w = d.worker_id.as_deref().unwrap_or_default();
    let mut parts = w.rsplit(':');
    parts.next();
    parts
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no pid in worker id {w:?}"))
}

fn signal(pid: u32, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "kill {sig} {pid} failed");
}

/// Two fasengs that run deployments (`a`, `b`) and one that only takes webhooks
/// (`f`, never frozen), all on one database.
struct Pair {
    gh: FakeGitHub,
    f: Faseng,
    peers: Vec<(String, Peer)>,
    beats: PathBuf,
    clone_url: String,
    sha: String,
    env: Vec<(String, String)>,
    next_github_id: i64,
}

impl Pair {
    async fn start(beats_per_deploy: u32, lease: &str) -> Pair {
        let gh = FakeGitHub::start().await;
        gh.add_repo("example/app", "main");
        let env: Vec<(String, String)> = vec![("FASENG_LEASE_SECS".into(), lease.into())];
        let mut f_env: Vec<(&str, &str)> =
            env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        f_env.push(("FASENG_WORKERS", "0"));
        let f = Faseng::start_with(APPS, Some((&gh.url, &gh.token())), &f_env).await;
        let beats = f.dir.path().join("beats");
        let (clone, sha) = repo(f.dir.path(), &beating(&beats, beats_per_deploy));
        let mut pair = Pair {
            gh,
            f,
            peers: Vec::new(),
            beats,
            clone_url: clone.to_string_lossy().into_owned(),
            sha,
            env,
            next_github_id: 0,
        };
        for name in ["a", "b"] {
            pair.start_peer(name).await;
        }
        pair
    }

    async fn start_peer(&mut self, name: &str) {
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let p = start_peer(&self.f, name, Some((&self.gh.url, &self.gh.token())), &env).await;
        self.peers.retain(|(n, _)| n != name);
        self.peers.push((name.to_string(), p));
    }

    /// The name of the peer whose process is `pid`.
    fn name_of(&self, pid: u32) -> String {
        self.peers
            .iter()
            .find(|(_, peer)| peer.child.id() == Some(pid))
            .map(|(n, _)| n.clone())
            .expect("the owner is one of the peers")
    }

    /// Kills peer `name` with SIGKILL, as a crash or the OOM killer would.
    async fn kill9(&mut self, name: &str) {
        if let Some((_, peer)) = self.peers.iter_mut().find(|(n, _)| n == name) {
            peer.child.start_kill().unwrap();
            let _ = peer.child.wait().await;
        }
    }

    fn store(&self) -> &dyn Store {
        self.f.store.as_ref()
    }

    /// Queues a deployment to production through `f`; its id.
    async fn deploy(&mut self) -> (i64, i64) {
        self.next_github_id += 1;
        let github_id = self
            .gh
            .seed_deployment("example/app", "main", "production", "alice");
        let thread = format!("700.{:03}", self.next_github_id);
        let (s, text) = deliver(
            &self.f.url,
            &self.clone_url,
            github_id,
            &self.sha,
            "production",
            from_slack("production", &thread),
            &format!("chaos-{github_id}"),
        )
        .await;
        assert_eq!(s, 201, "{text}");
        let id = self
            .store()
            .find_by_github_id(github_id)
            .await
            .unwrap()
            .unwrap()
            .id;
        (id, github_id)
    }

    async fn until_beating(&self, id: i64, n: usize) -> Deployment {
        let file = self.beats.clone();
        until("the deploy to beat", Duration::from_secs(60), async || {
            (beats(&file).get(&id).map_or(0, Vec::len) >= n).then_some(())
        })
        .await;
        self.store().get_deployment(id).await.unwrap().unwrap()
    }

    async fn until_ended(&self, id: i64, limit: Duration) -> Deployment {
        let store = self.f.store.clone();
        until("a deployment to end", limit, async || {
            let d = store.get_deployment(id).await.unwrap().unwrap();
            d.state.is_terminal().then_some(d)
        })
        .await
    }

    /// The GitHub status GitHub got last for the deployment, once final. A killed
    /// faseng may have taken an outbox event it never sent: other senders get it
    /// after `OUTBOX_IN_FLIGHT` (120 s), and a deployment's statuses keep their order.
    async fn final_status(&self, github_id: i64) -> String {
        let limit = chima_store::OUTBOX_IN_FLIGHT + Duration::from_secs(60);
        until("a final GitHub status", limit, async || {
            self.gh
                .status_states(github_id)
                .last()
                .filter(|s| !["queued", "in_progress", "pending"].contains(&s.as_str()))
                .cloned()
        })
        .await
    }

    fn logs(&self) -> String {
        let mut out = self.f.log();
        for (name, p) in &self.peers {
            out.push_str(&format!("\n--- {name}\n{}", p.log()));
        }
        out
    }
}

/// What one run of a scenario found.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    runs: usize,
    overlaps: usize,
    late_beats: usize,
    unfinished: usize,
    lost_lines: usize,
}

impl Counts {
    fn add(&mut self, o: Counts) {
        self.runs += o.runs;
        self.overlaps += o.overlaps;
        self.late_beats += o.late_beats;
        self.unfinished += o.unfinished;
        self.lost_lines += o.lost_lines;
    }

    fn check(&self, name: &str) {
        println!(
            "chaos {name}: runs={} overlaps={} late_beats={} unfinished={} lost_lines={}",
            self.runs, self.overlaps, self.late_beats, self.unfinished, self.lost_lines
        );
        assert_eq!(
            (
                self.overlaps,
                self.late_beats,
                self.unfinished,
                self.lost_lines
            ),
            (0, 0, 0, 0),
            "{name}: {self:?}"
        );
    }
}

fn runs() -> usize {
    std::env::var("CHAOS_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(1)
}

/// The owner frozen for several leases while the other faseng takes the next
/// deployment of the environment.
async fn freeze_once() -> Counts {
    let mut p = Pair::start(100, LEASE).await;
    let (first, first_gh) = p.deploy().await;
    let running = p.until_beating(first, 5).await;
    let owner = owner_pid(&running);
    signal(owner, "-STOP");
    let frozen_at = tokio::time::Instant::now();
    let (second, second_gh) = p.deploy().await;
    let next = p.until_ended(second, Duration::from_secs(90)).await;
    // Frozen for at least three leases in all.
    tokio::time::sleep_until(frozen_at + Duration::from_secs(15)).await;
    let resumed_ns = now_ns();
    signal(owner, "-CONT");
    let lost = p.until_ended(first, Duration::from_secs(30)).await;
    // The resumed owner learns it lost the lease; it must not write anything over it.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = p.store().get_deployment(first).await.unwrap().unwrap();
    let all = beats(&p.beats);
    let mut c = Counts {
        runs: 1,
        overlaps: overlaps(&all),
        ..Counts::default()
    };
    c.late_beats = all
        .get(&first)
        .map_or(0, |b| b.iter().filter(|x| x.1 >= resumed_ns).count());
    let first_gh_state = p.final_status(first_gh).await;
    let second_gh_state = p.final_status(second_gh).await;
    if lost.state != DeploymentState::Errored
        || after.reason != lost.reason
        || after.state != lost.state
        || !lost.reason.as_deref().unwrap_or("").contains("lease")
        || next.state != DeploymentState::Succeeded
        || first_gh_state != "error"
        || second_gh_state != "success"
    {
        eprintln!(
            "chaos freeze: first {:?} {:?} (then {:?} {:?}), GitHub {first_gh_state}; second {:?} {:?}, GitHub {second_gh_state}\n{}",
            lost.state,
            lost.reason,
            after.state,
            after.reason,
            next.state,
            next.reason,
            p.logs()
        );
        c.unfinished += 1;
    }
    c
}

/// The owner killed mid-deploy; the other faseng takes the next deployment.
async fn kill_once() -> Counts {
    let mut p = Pair::start(100, LEASE).await;
    let (first, first_gh) = p.deploy().await;
    let running = p.until_beating(first, 5).await;
    let owner = owner_pid(&running);
    let killed_ns = now_ns();
    let name = p.name_of(owner);
    p.kill9(&name).await;
    let (second, second_gh) = p.deploy().await;
    let next = p.until_ended(second, Duration::from_secs(90)).await;
    let lost = p.until_ended(first, Duration::from_secs(30)).await;
    let all = beats(&p.beats);
    let mut c = Counts {
        runs: 1,
        overlaps: overlaps(&all),
        ..Counts::default()
    };
    // The guard stops the script as soon as faseng's pipe closes: nothing beats
    // more than a beat's time after the kill.
    c.late_beats = all.get(&first).map_or(0, |b| {
        b.iter()
            .filter(|x| x.1 > killed_ns + Duration::from_millis(500).as_nanos())
            .count()
    });
    let first_gh_state = p.final_status(first_gh).await;
    let second_gh_state = p.final_status(second_gh).await;
    if lost.state != DeploymentState::Errored
        || next.state != DeploymentState::Succeeded
        || first_gh_state != "error"
        || second_gh_state != "success"
    {
        eprintln!(
            "chaos kill: first {:?} {:?}, GitHub {first_gh_state}; second {:?} {:?}, GitHub {second_gh_state}\n{}",
            lost.state,
            lost.reason,
            next.state,
            next.reason,
            p.logs()
        );
        c.unfinished += 1;
    }
    c
}

/// The database stopped for 4 s (a failover; the lease is 12 s) while a deploy
/// beats: it finishes as it would have, with every line of its log.
async fn db_pause_once() -> Counts {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::create(dir.path(), None).unwrap_or_else(|e| panic!("{e}"));
    cluster.start().unwrap_or_else(|e| panic!("{e}"));
    let url = cluster.url("postgres");
    let gh = FakeGitHub::start().await;
    gh.add_repo("example/app", "main");
    let f = Faseng::start_with(
        APPS,
        Some((&gh.url, &gh.token())),
        &[("DATABASE_URL", url.as_str()), ("FASENG_LEASE_SECS", "12")],
    )
    .await;
    let store = chima_store::open(&url).await.unwrap();
    let beats_file = f.dir.path().join("beats");
    let (clone, sha) = repo(f.dir.path(), &beating(&beats_file, 80));
    let github_id = gh.seed_deployment("example/app", "main", "production", "alice");
    let (s, text) = deliver(
        &f.url,
        &clone.to_string_lossy(),
        github_id,
        &sha,
        "production",
        from_slack("production", "800.001"),
        "pause-1",
    )
    .await;
    assert_eq!(s, 201, "{text}");
    let id = store
        .find_by_github_id(github_id)
        .await
        .unwrap()
        .unwrap()
        .id;
    until("the deploy to beat", Duration::from_secs(60), async || {
        (beats(&beats_file).get(&id).map_or(0, Vec::len) >= 10).then_some(())
    })
    .await;
    cluster.stop().unwrap_or_else(|e| panic!("{e}"));
    tokio::time::sleep(Duration::from_secs(4)).await;
    cluster.start().unwrap_or_else(|e| panic!("{e}"));
    let store2 = store.clone();
    let d = until("the deploy to end", Duration::from_secs(120), async || {
        let d = store2.get_deployment(id).await.ok()??;
        d.state.is_terminal().then_some(d)
    })
    .await;
    let lines: Vec<String> = store
        .read_logs(id, 0, 10_000)
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.line)
        .collect();
    let beat_lines: Vec<&String> = lines.iter().filter(|l| l.starts_with("beat ")).collect();
    let expected: Vec<String> = (1..=80).map(|i| format!("beat {i}")).collect();
    let lost_lines = expected
        .iter()
        .filter(|e| !beat_lines.iter().any(|l| l == e))
        .count()
        + beat_lines.len().saturating_sub(80);
    let in_order = beat_lines
        .iter()
        .map(|l| l.as_str())
        .eq(expected.iter().map(String::as_str));
    let mut c = Counts {
        runs: 1,
        lost_lines,
        ..Counts::default()
    };
    if d.state != DeploymentState::Succeeded || !in_order {
        eprintln!(
            "chaos db pause: {:?} {:?}; lines in order: {in_order}\n{}\n--- postgres\n{}",
            d.state,
            d.reason,
            f.log(),
            cluster.log()
        );
        c.unfinished += 1;
    }
    c
}

/// The pids whose parent is `pid`, with their command lines.
fn children(pid: u32) -> Vec<(u32, String)> {
    chima_engine::guard::children_of(pid)
        .into_iter()
        .map(|c| {
            let cmd = std::fs::read(format!("/proc/{c}/cmdline"))
                .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
                .unwrap_or_default();
            (c, cmd)
        })
        .collect()
}

/// A faseng killed while its guard is wedged (stopped, with its provider): the
/// guard cannot act, and the lease (60 s) is far off. The restarted faseng finds
/// them through the runner recorded with the claim, kills both, ends the
/// deployment and removes its job folder before it claims anything.
#[tokio::test]
async fn a_restarted_faseng_kills_what_its_dead_predecessor_left_before_claiming() {
    let mut p = Pair::start(300, "60").await;
    let (first, _) = p.deploy().await;
    let running = p.until_beating(first, 3).await;
    let owner = owner_pid(&running);
    let guard = children(owner)
        .into_iter()
        .find(|(_, cmd)| cmd.contains("/faseng-guard "))
        .map(|(pid, _)| pid)
        .unwrap_or_else(|| panic!("no guard under faseng {owner}: {:?}", children(owner)));
    let provider = children(guard)
        .first()
        .map(|c| c.0)
        .unwrap_or_else(|| panic!("no provider under the guard {guard}"));
    signal(guard, "-STOP");
    let ok = std::process::Command::new("kill")
        .args(["-STOP", "--", &format!("-{provider}")])
        .status()
        .unwrap();
    assert!(ok.success());
    let name = p.name_of(owner);
    let workdir = p.f.dir.path().join(format!("{name}-work"));
    let job = workdir.join(format!("job-{first}-{owner}"));
    assert!(
        job.exists(),
        "the job folder {job:?} is there while it runs"
    );
    p.kill9(&name).await;
    let started = tokio::time::Instant::now();
    assert!(
        Path::new(&format!("/proc/{guard}")).exists(),
        "the wedged guard outlives its faseng"
    );
    p.start_peer(&name).await;
    let ended = p.until_ended(first, Duration::from_secs(20)).await;
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "ended by the restart, not by the 60 s lease"
    );
    assert_eq!(ended.state, DeploymentState::Errored);
    let reason = ended.reason.unwrap_or_default();
    assert!(reason.contains("died mid-deploy"), "{reason}");
    until(
        "the guard and provider gone",
        Duration::from_secs(10),
        async || {
            (!Path::new(&format!("/proc/{guard}")).exists()
                && !Path::new(&format!("/proc/{provider}")).exists())
            .then_some(())
        },
    )
    .await;
    assert!(!job.exists(), "the dead faseng's job folder is removed");
    // No beat after the restart's sweep.
    let count = beats(&p.beats).get(&first).map_or(0, Vec::len);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(beats(&p.beats).get(&first).map_or(0, Vec::len), count);
}

#[tokio::test]
async fn a_frozen_owner_is_fenced_before_the_next_deployment_of_its_environment_starts() {
    let mut total = Counts::default();
    for _ in 0..runs() {
        total.add(freeze_once().await);
    }
    total.check("freeze");
}

#[tokio::test]
async fn a_killed_owner_leaves_no_deploy_running_when_the_next_one_starts() {
    let mut total = Counts::default();
    for _ in 0..runs() {
        total.add(kill_once().await);
    }
    total.check("kill");
}

#[tokio::test]
async fn a_database_outage_shorter_than_the_lease_loses_no_line_and_no_outcome() {
    let mut total = Counts::default();
    for _ in 0..runs() {
        total.add(db_pause_once().await);
    }
    total.check("db-pause");
}

/// A freeze well inside what the lease allows (2 s of the 4 s a 5 s lease rides
/// out; four times the margin) changes nothing: the deploy finishes normally.
#[tokio::test]
async fn a_short_freeze_of_the_owner_lets_its_deploy_finish() {
    let mut p = Pair::start(40, LEASE).await;
    let (id, github_id) = p.deploy().await;
    let running = p.until_beating(id, 5).await;
    let owner = owner_pid(&running);
    signal(owner, "-STOP");
    tokio::time::sleep(Duration::from_secs(2)).await;
    signal(owner, "-CONT");
    let d = p.until_ended(id, Duration::from_secs(60)).await;
    assert_eq!(
        d.state,
        DeploymentState::Succeeded,
        "{:?}\n{}",
        d.reason,
        p.logs()
    );
    assert_eq!(beats(&p.beats).get(&id).map_or(0, Vec::len), 40);
    assert_eq!(p.final_status(github_id).await, "success");
}

/// The guard itself, both as faseng starts it (`faseng-guard`, its own binary)
/// and as the fallback re-exec (`faseng guard`, where the small binary is not
/// installed): it kills the whole group (and a process that left it) when its
/// deadline passes or its pipe closes, keeps going while deadlines come, and
/// reports a normal exit as it was.
#[test]
fn the_guard_stops_everything_it_started_when_its_deadline_passes_or_faseng_goes() {
    guard_drill(env!("CARGO_BIN_EXE_faseng-guard"), &[]);
    guard_drill(env!("CARGO_BIN_EXE_faseng"), &["guard"]);
}

fn guard_drill(program: &str, prefix: &[&str]) {
    use chima_engine::guard::GuardStatus;
    use std::io::Write;
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let guard = |deadline_ms: u64, script: &str| {
        let status = dir
            .path()
            .join(format!("s-{deadline_ms}-{}.json", script.len()));
        let child = Command::new(program)
            .args(prefix)
            .arg("--status")
            .arg(&status)
            .args([
                "--deadline-ms",
                &deadline_ms.to_string(),
                "--",
                "sh",
                "-c",
                script,
            ])
            .current_dir(dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        (child, status)
    };
    let gone = |file: &str| {
        let pid = std::fs::read_to_string(dir.path().join(file)).unwrap_or_default();
        !Path::new(&format!("/proc/{}", pid.trim())).exists()
    };
    let tree =
        "sleep 60 & echo $! > bg; setsid sleep 60 & echo $! > escaped; echo started; sleep 60";

    // No renewal: killed at the deadline.
    let started = std::time::Instant::now();
    let (mut child, status) = guard(500, tree);
    // Held open: faseng is there, only not renewing.
    let _pipe = child.stdin.take();
    let out = child.wait_with_output().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let s = GuardStatus::read(&status).unwrap();
    assert!(s.ended);
    assert!(s.fenced.as_deref().unwrap_or("").contains("lease"), "{s:?}");
    assert!(gone("bg") && gone("escaped"), "nothing it started is left");
    assert!(String::from_utf8_lossy(&out.stdout).contains("started"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("stopping the deploy"));

    // Deadlines keep coming: it runs on past the first one, until they stop.
    let started = std::time::Instant::now();
    let (mut child, status) = guard(300, "echo $$ > renewed; sleep 60");
    let mut stdin = child.stdin.take().unwrap();
    for _ in 0..10 {
        writeln!(stdin, "deadline 400").unwrap();
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "still running after 1 s of renewals"
    );
    let _ = child.wait();
    assert!(started.elapsed() >= Duration::from_millis(1300));
    assert!(GuardStatus::read(&status).unwrap().fenced.is_some());
    assert!(gone("renewed"));
    drop(stdin);

    // faseng went away (its end of the pipe closed): stopped at once.
    let (mut child, status) = guard(60_000, "echo $$ > orphan; sleep 60");
    std::thread::sleep(Duration::from_millis(300));
    let started = std::time::Instant::now();
    drop(child.stdin.take());
    let _ = child.wait();
    assert!(started.elapsed() < Duration::from_secs(2));
    let s = GuardStatus::read(&status).unwrap();
    assert!(
        s.fenced.as_deref().unwrap_or("").contains("went away"),
        "{s:?}"
    );
    assert!(gone("orphan"));

    // A normal run is reported as it was.
    let (mut child, status) = guard(60_000, "echo fine; exit 3");
    let _pipe2 = child.stdin.take();
    let out = child.wait_with_output().unwrap();
    let s = GuardStatus::read(&status).unwrap();
    assert_eq!((s.exit_code, s.fenced.clone()), (Some(3), None), "{s:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "fine");

    // Bad arguments: refused with a reason, nothing run.
    let out = Command::new(program)
        .args(prefix)
        .args(["--deadline-ms", "x", "--", "touch", "ran"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(!dir.path().join("ran").exists());
}
