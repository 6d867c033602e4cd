//! Repository mirrors (ARCHITECTURE.md, "Mirrors"): jobs of one repository
//! share one, at once, each with its own tree; a damaged one is rebuilt; the
//! size bound never takes one a running job reads; the token never lands in
//! a file a job can read. Real git, real processes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use chima_store::DeploymentState;
use serde_json::json;

use crate::githttp::GitHttp;
use crate::harness::{Rig, git, shell_config, write_exec};

pub fn rev(dir: &Path, what: &str) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["rev-parse", what])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Commits `which` = `body` in the repository at `dir`; its sha.
pub fn commit(dir: &Path, body: &str) -> String {
    std::fs::write(dir.join("which"), body).unwrap();
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "--quiet", "-m", body]);
    rev(dir, "HEAD")
}

/// The mirrors in the rig's work folder.
pub fn mirrors(rig: &Rig) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(rig.dir.path().join("work/mirrors"))
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "git"))
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
}

/// A deploy script that prints what its tree holds, read through git too (the
/// objects come from the mirror), after waiting for `gate` to exist.
fn printing_script(gate: &Path) -> String {
    format!(
        "#!/bin/sh\nwhile [ ! -e '{gate}' ]; do sleep 0.05; done\n\
         echo \"which=$(cat which) head=$(git rev-parse HEAD) blob=$(git cat-file -p HEAD:which)\"\n",
        gate = gate.display()
    )
}

#[tokio::test]
async fn jobs_of_one_repository_at_once_get_their_own_trees_from_one_mirror() {
    let t = tempfile::tempdir().unwrap();
    let all_in = t.path().join("all-in");
    // Each job waits until all four are running: they fetch and check out at once.
    let script = format!(
        "#!/bin/sh\ntouch '{sync}/'$DEPLOY_ID\nwhile [ $(ls '{sync}' | wc -l) -lt 4 ]; do sleep 0.05; done\n\
         echo \"which=$(cat which) head=$(git rev-parse HEAD)\"\n",
        sync = all_in.display()
    );
    std::fs::create_dir_all(&all_in).unwrap();
    let mut rig = Rig::new(&script, &[]).await;
    let one = commit(&rig.repo, "one");
    let two = commit(&rig.repo, "two");
    let mut cfg = rig.config();
    cfg.workers = 4;
    rig.start(cfg);
    let wants = [(&one, "one"), (&two, "two"), (&one, "one"), (&two, "two")];
    // One environment each: one environment runs one deployment at a time.
    let app = json!({"provider": "shell", "environments": ["e0", "e1", "e2", "e3"]});
    let mut ids = Vec::new();
    for (n, (sha, _)) in wants.iter().enumerate() {
        let sha = sha.to_string();
        let d = rig
            .queue_with(&format!("k{n}"), "main", app.clone(), |d| {
                d.sha = Some(sha);
                d.environment = format!("e{n}");
            })
            .await;
        ids.push(d.id);
    }
    for (id, (sha, which)) in ids.iter().zip(wants) {
        let d = rig.wait_done(*id).await;
        let log = rig.log(*id).await.join("\n");
        assert_eq!(d.state, DeploymentState::Succeeded, "{:?}\n{log}", d.reason);
        assert!(
            log.contains(&format!("which={which} head={sha}")),
            "job {id} got the wrong tree:\n{log}"
        );
    }
    assert_eq!(mirrors(&rig).len(), 1, "one repository, one mirror");

    // A redeploy of a commit the mirror holds fetches nothing: only the checkout.
    std::fs::remove_dir_all(&all_in).unwrap();
    std::fs::create_dir_all(&all_in).unwrap();
    for n in 0..3 {
        std::fs::write(all_in.join(format!("x{n}")), "").unwrap();
    }
    let again = rig
        .queue_with("again", "main", shell_config(), |d| {
            d.sha = Some(one.clone())
        })
        .await;
    let d = rig.wait_done(again.id).await;
    let log = rig.log(again.id).await.join("\n");
    assert_eq!(d.state, DeploymentState::Succeeded, "{:?}\n{log}", d.reason);
    assert!(log.contains(&format!("which=one head={one}")), "{log}");
    assert!(
        log.contains("already in the mirror, nothing fetched"),
        "{log}"
    );
    rig.engine.take().unwrap().shutdown().await;
}

#[tokio::test]
async fn a_corrupted_mirror_is_rebuilt_and_the_deploy_succeeds() {
    let t = tempfile::tempdir().unwrap();
    let gate = t.path().join("open");
    std::fs::write(&gate, "").unwrap();
    let mut rig = Rig::new(&printing_script(&gate), &[]).await;
    let sha = commit(&rig.repo, "good");
    rig.start(rig.config());
    let deploy = |key: &'static str| {
        let sha = sha.clone();
        let rig = &rig;
        async move {
            let d = rig
                .queue_with(key, "main", shell_config(), |d| d.sha = Some(sha))
                .await;
            let done = rig.wait_done(d.id).await;
            (done, rig.log(d.id).await.join("\n"))
        }
    };
    let (d, log) = deploy("first").await;
    assert_eq!(d.state, DeploymentState::Succeeded, "{:?}\n{log}", d.reason);
    let [mirror] = mirrors(&rig).try_into().unwrap();

    // Every object file overwritten with garbage: what a disk error leaves.
    let mut damaged = 0;
    let mut stack = vec![mirror.join("objects")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.parent().unwrap().file_name().unwrap() != "info" {
                std::fs::remove_file(&path).unwrap();
                std::fs::write(&path, b"not an object").unwrap();
                damaged += 1;
            }
        }
    }
    assert!(damaged > 0, "the mirror held no objects to damage");
    let (d, log) = deploy("after-damage").await;
    assert_eq!(d.state, DeploymentState::Succeeded, "{:?}\n{log}", d.reason);
    assert!(
        log.contains(&format!("which=good head={sha} blob=good")),
        "{log}"
    );
    assert!(
        log.contains("was damaged") && log.contains("cloned again"),
        "the job's log does not say the mirror was rebuilt:\n{log}"
    );

    // A mirror that is no repository at all.
    std::fs::remove_file(mirror.join("HEAD")).unwrap();
    let (d, log) = deploy("no-head").await;
    assert_eq!(d.state, DeploymentState::Succeeded, "{:?}\n{log}", d.reason);
    assert!(log.contains("was damaged"), "{log}");
    assert!(log.contains(&format!("head={sha}")), "{log}");
    rig.engine.take().unwrap().shutdown().await;
}

#[tokio::test]
async fn eviction_never_removes_a_mirror_in_use() {
    let t = tempfile::tempdir().unwrap();
    let gate = t.path().join("go");
    let mut rig = Rig::new(&printing_script(&gate), &[]).await;
    let first_sha = rig.head();
    // A second repository, deployed by a second app.
    let other = rig.dir.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    git(&other, &["init", "--quiet", "--initial-branch=main"]);
    write_exec(
        &other.join("script/deploy"),
        "#!/bin/sh\necho \"other=$(cat which)\"\n",
    );
    let other_one = commit(&other, "other-one");
    let other_app = json!({"provider": "shell", "clone_url": other.to_string_lossy()});
    let mut cfg = rig.config();
    // Any mirror is over the bound: every fetch evicts whatever it may.
    cfg.mirror_max_bytes = 1;
    rig.start(cfg);

    let held = rig
        .queue_with("held", "main", shell_config(), |d| {
            d.sha = Some(first_sha.clone())
        })
        .await;
    rig.wait_running(held.id).await;
    let first_mirror = {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let [m] = mirrors(&rig).as_slice() {
                break m.clone();
            }
            assert!(tokio::time::Instant::now() < deadline, "no mirror appeared");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    // Another repository's fetch, while the first job still reads its mirror.
    let d = rig
        .queue_with("other", "main", other_app.clone(), |d| {
            d.sha = Some(other_one.clone())
        })
        .await;
    let done = rig.wait_done(d.id).await;
    assert_eq!(done.state, DeploymentState::Succeeded, "{:?}", done.reason);
    assert!(
        first_mirror.exists(),
        "the mirror of a running job was evicted"
    );
    std::fs::write(&gate, "").unwrap();
    let log = rig.succeeded_log(held.id).await;
    assert!(
        log.contains(&format!("head={first_sha} blob=")),
        "the running job could not read its objects:\n{log}"
    );

    // Now no job needs the first mirror: the next fetch removes it, and keeps
    // the one it fetched into.
    let other_two = commit(&other, "other-two");
    let d = rig
        .queue_with("other-2", "main", other_app, |d| {
            d.sha = Some(other_two.clone())
        })
        .await;
    let log = rig.succeeded_log(d.id).await;
    assert!(log.contains("other=other-two"), "{log}");
    assert!(
        !first_mirror.exists(),
        "an unused mirror over the bound was kept"
    );
    assert_eq!(mirrors(&rig).len(), 1, "{:?}", mirrors(&rig));
    rig.engine.take().unwrap().shutdown().await;
}

/// Hands out a token, like faseng's GitHub access.
#[derive(Debug)]
pub struct Token;

const TOKEN: &str = "s3cr3t-mirror-t0ken";

#[async_trait::async_trait]
impl chima_engine::SourceAccess for Token {
    async fn clone_auth(&self, _repository: &str) -> Result<Option<String>, String> {
        Ok(Some(format!("Bearer {TOKEN}")))
    }
    async fn tarball_url(&self, _repository: &str, _sha: &str) -> Result<String, String> {
        Err("not here".into())
    }
}

/// Every file under `dir` holding `needle`.
fn files_holding(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                stack.push(path);
            } else if meta.is_file()
                && std::fs::read(&path)
                    .map(|b| b.windows(needle.len()).any(|w| w == needle))
                    .unwrap_or(false)
            {
                found.push(path);
            }
        }
    }
    found
}

#[tokio::test]
async fn a_job_cannot_reach_the_token_through_the_mirror() {
    let script = "#!/bin/sh\nmirror=$(dirname \"$(cat .git/objects/info/alternates)\")\n\
        echo \"mirror config: $(cat \"$mirror/config\" | tr '\\n' ' ')\"\n\
        echo \"tree config: $(cat .git/config | tr '\\n' ' ')\"\n\
        grep -rl 's3cr3t' \"$mirror\" .git >/dev/null 2>&1 && echo TOKEN-FOUND || echo no-token-in-files\n\
        env | grep -q s3cr3t && echo TOKEN-IN-ENV || echo no-token-in-env\n";
    let mut rig = Rig::new(script, &[]).await;
    let served = rig.dir.path().join("served");
    std::fs::create_dir_all(&served).unwrap();
    let bare = served.join("app.git");
    let out = Command::new("git")
        .args(["clone", "--quiet", "--bare"])
        .arg(&rig.repo)
        .arg(&bare)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let server = GitHttp::start(served).await;
    let mut cfg = rig.config();
    cfg.github_api_url = server.url.clone();
    cfg.access = Some(Arc::new(Token));
    rig.start(cfg);
    let app = json!({"provider": "shell", "clone_url": format!("{}/app.git", server.url)});
    let sha = rig.head();
    for key in ["first", "again"] {
        let d = rig
            .queue_with(key, "main", app.clone(), |d| d.sha = Some(sha.clone()))
            .await;
        let log = rig.succeeded_log(d.id).await;
        assert!(
            log.contains("mirror config: [core]"),
            "the job did not read the mirror's config:\n{log}"
        );
        assert!(
            log.contains("no-token-in-files") && log.contains("no-token-in-env"),
            "{log}"
        );
        assert!(!log.contains(TOKEN), "{log}");
    }
    // The control: the token was in play, and went to the git host.
    let seen = server.seen.lock().unwrap().clone();
    assert!(
        seen.iter()
            .any(|(_, a)| a.as_deref() == Some(&format!("Bearer {TOKEN}"))),
        "the git host never got the token: {seen:?}"
    );
    let leaked = files_holding(&rig.dir.path().join("work"), TOKEN.as_bytes());
    assert!(leaked.is_empty(), "the token is in {leaked:?}");
    rig.engine.take().unwrap().shutdown().await;
}

#[tokio::test]
async fn a_provider_of_another_user_reads_the_mirror_but_cannot_change_it() {
    let Ok(nobody) = chima_engine::runas::RunAs::lookup("nobody") else {
        panic!(
            "this test runs providers as `nobody`, which needs root; run the suite as root (CI does)"
        );
    };
    let script = "#!/bin/sh\nmirror=$(dirname \"$(cat .git/objects/info/alternates)\")\n\
        echo \"uid=$(id -u) head=$(git rev-parse HEAD) blob=$(git cat-file -p HEAD:which)\"\n\
        touch \"$mirror/objects/planted\" 2>/dev/null && echo WROTE-MIRROR || echo mirror-not-writable\n\
        git -c safe.directory='*' --git-dir=\"$mirror\" config core.hooksPath /tmp 2>/dev/null && echo CHANGED-CONFIG || echo config-not-writable\n\
        git gc --quiet --prune=now && echo gc-in-tree-ran\n";
    let mut rig = Rig::new(script, &[]).await;
    let sha = commit(&rig.repo, "theirs");
    // nobody passes through the test's folder to its job folder.
    std::fs::set_permissions(
        rig.dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o711),
    )
    .unwrap();
    // The mirror is first made by an engine whose providers run as faseng's
    // own user; a later FASENG_RUN_AS hands it to that user's group.
    rig.start(rig.config());
    let d = rig
        .queue_with("own-user", "main", shell_config(), |d| {
            d.sha = Some(sha.clone())
        })
        .await;
    let done = rig.wait_done(d.id).await;
    assert_eq!(done.state, DeploymentState::Succeeded, "{:?}", done.reason);
    rig.engine.take().unwrap().shutdown().await;
    let mut cfg = rig.config();
    cfg.run_as = Some(nobody);
    rig.start(cfg);
    for key in ["first", "second"] {
        let d = rig
            .queue_with(key, "main", shell_config(), |d| d.sha = Some(sha.clone()))
            .await;
        let log = rig.succeeded_log(d.id).await;
        assert!(
            log.contains(&format!("uid=65534 head={sha} blob=theirs")),
            "{log}"
        );
        assert!(log.contains("mirror-not-writable"), "{log}");
        assert!(log.contains("config-not-writable"), "{log}");
        assert!(log.contains("gc-in-tree-ran"), "{log}");
    }
    rig.engine.take().unwrap().shutdown().await;
}

#[tokio::test]
async fn a_commit_behind_a_branch_deploys_from_a_server_that_serves_only_tips() {
    let mut rig = Rig::new("#!/bin/sh\necho \"which=$(cat which)\"\n", &[]).await;
    let older = commit(&rig.repo, "older");
    commit(&rig.repo, "newer");
    let served = rig.dir.path().join("served");
    std::fs::create_dir_all(&served).unwrap();
    let out = Command::new("git")
        .args(["clone", "--quiet", "--bare"])
        .arg(&rig.repo)
        .arg(served.join("app.git"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let server = GitHttp::start_v0(served).await;
    rig.start(rig.config());
    let app = json!({"provider": "shell", "clone_url": format!("{}/app.git", server.url)});
    let d = rig
        .queue_with("older", "main", app, |d| d.sha = Some(older.clone()))
        .await;
    let log = rig.succeeded_log(d.id).await;
    assert!(log.contains("which=older"), "{log}");
    rig.engine.take().unwrap().shutdown().await;
}

/// The bytes of the objects in the mirror at `dir`, packed or loose (a small fetch
/// is stored loose).
fn pack_bytes(dir: &Path) -> u64 {
    fn walk(dir: &Path) -> u64 {
        std::fs::read_dir(dir)
            .map(|d| {
                d.flatten()
                    .map(|e| match e.file_type() {
                        Ok(t) if t.is_dir() => walk(&e.path()),
                        _ => e.metadata().map(|m| m.len()).unwrap_or(0),
                    })
                    .sum()
            })
            .unwrap_or(0)
    }
    walk(&dir.join("objects"))
}

#[tokio::test]
async fn a_new_commit_fetches_what_is_new_not_the_whole_history_again() {
    let mut rig = Rig::new("#!/bin/sh\necho \"which=$(cat which)\"\n", &[]).await;
    // 3 MB that do not compress: what the whole history weighs.
    let mut x: u32 = 0x9e37_79b9;
    let noise: Vec<u8> = (0..3_000_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect();
    std::fs::write(rig.repo.join("noise.bin"), &noise).unwrap();
    // More objects than git unpacks loose (fetch.unpackLimit, 100): a fetch of the
    // whole history again is kept as a pack, and the mirror grows by all of it.
    std::fs::create_dir_all(rig.repo.join("many")).unwrap();
    for n in 0..150 {
        std::fs::write(rig.repo.join(format!("many/{n}")), format!("{n}\n")).unwrap();
    }
    let first = commit(&rig.repo, "first");
    rig.start(rig.config());
    let deploy = |key: &'static str, sha: String| {
        let rig = &rig;
        async move {
            let d = rig
                .queue_with(key, "main", shell_config(), |d| d.sha = Some(sha))
                .await;
            rig.succeeded_log(d.id).await
        }
    };
    let log = deploy("first", first).await;
    assert!(log.contains("which=first"), "{log}");
    let mirror = mirrors(&rig).pop().expect("a mirror");
    let after_first = pack_bytes(&mirror);
    assert!(
        after_first > 2_900_000,
        "{after_first} bytes after the first fetch"
    );

    // The job's pin is gone; the next commit's fetch still tells the server what the
    // mirror has, and gets only the new commit.
    let second = commit(&rig.repo, "second");
    let log = deploy("second", second).await;
    assert!(log.contains("which=second"), "{log}");
    let grown = pack_bytes(&mirror) - after_first;
    assert!(
        grown < 100_000,
        "the second fetch brought {grown} bytes: the whole history again"
    );
    rig.engine.take().unwrap().shutdown().await;
}

#[tokio::test]
async fn a_jobs_tree_has_the_repository_as_its_only_origin_never_the_mirror() {
    // The tree's `.git` is written by faseng (`checkout/tree.rs`), not cloned
    // from the mirror: its `origin` is the repository's own URL, so that `git
    // fetch` or `git push origin` in a deploy script never reaches the mirror,
    // and git in the tree works as in a clone (HEAD at the commit, a clean
    // status, the history through the mirror's objects).
    // printf, not echo: dash's echo would read the `\t` of a URL as a tab.
    let script = "#!/bin/sh\nprintf 'origins=%s origin=%s\\n' \"$(git config --get-all remote.origin.url | wc -l)\" \"$(git remote get-url origin)\"\necho \"head=$(git rev-parse HEAD) dirty=$(git status --porcelain | wc -l) commits=$(git rev-list --count HEAD)\"\n";
    let mut rig = Rig::new(script, &[]).await;
    commit(&rig.repo, "zero");
    let sha = commit(&rig.repo, "one");
    let history = std::process::Command::new("git")
        .args(["rev-list", "--count", &sha])
        .current_dir(&rig.repo)
        .output()
        .unwrap();
    let history = String::from_utf8_lossy(&history.stdout).trim().to_string();
    rig.start(rig.config());
    // The same repository through paths with characters git's config format
    // would read as a comment unless quoted (`;` and `#`), and ones it reads
    // as the end of the value or an escape unless escaped (`"` and `\`).
    let odd = rig.dir.path().join("odd;name #1");
    std::os::unix::fs::symlink(&rig.repo, &odd).unwrap();
    let quoted = rig.dir.path().join("q\"uo\\te");
    std::os::unix::fs::symlink(&rig.repo, &quoted).unwrap();
    for (key, url) in [
        ("plain", rig.repo.to_string_lossy().into_owned()),
        ("odd", odd.to_string_lossy().into_owned()),
        ("quoted", quoted.to_string_lossy().into_owned()),
    ] {
        let mut config = shell_config();
        config["clone_url"] = json!(url);
        let sha = sha.clone();
        let d = rig
            .queue_with(key, "main", config, |d| d.sha = Some(sha.clone()))
            .await;
        let log = rig.succeeded_log(d.id).await;
        assert!(
            log.contains(&format!("origins=1 origin={url}")),
            "{key}: the tree's origin is not exactly {url}:\n{log}"
        );
        assert!(!log.contains("mirrors/"), "{key}: {log}");
        assert!(
            log.contains(&format!("head={sha} dirty=0 commits={history}\n")),
            "{key}: the tree is not a clean checkout of {sha}:\n{log}"
        );
    }
    rig.engine.take().unwrap().shutdown().await;
}
