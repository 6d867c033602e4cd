//! One bare mirror per repository URL, in `<work folder>/mirrors`, shared by
//! every job of that repository and kept between jobs and restarts.
//!
//! Concurrency: a mirror is changed (created, fetched into, maintained,
//! rebuilt, evicted) only under its lock, an exclusive `flock` on
//! `<key>.lock` next to it. The lock file is never removed, so that two
//! processes can never hold locks on two different files of one name. Reading
//! the mirror (a job's checkout through its alternates) takes no lock: git's
//! object store is safe to read while another git adds packs to it.
//!
//! Every job pins its commit with `refs/deploys/<job>` in the mirror (written
//! by the fetch itself, under the lock), so that no maintenance can drop an
//! object a running job reads; the pin goes when the job's folder does.
//! `gc.auto=0` keeps a fetch from starting gc on its own; faseng runs it under
//! the lock after fetches instead (`maintain`). `gc.packRefs=false` keeps
//! every pin a loose file that is deleted alone, without the `packed-refs`
//! lock that concurrent deletions would fight over, and that eviction can
//! read without running git.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use super::Failure;
use super::Source;
use super::git::{GitEnv, git};
use super::pins::{Pins, live, pinned};
use super::url::redact_url;

/// The mirror's ref to the last commit fetched into it (see [`Mirror::keep`]).
const KEPT_REF: &str = "refs/kept/last-fetched";

/// One repository's mirror: the bare repository and its lock file.
#[derive(Debug, Clone)]
pub(super) struct Mirror {
    pub(super) path: PathBuf,
    lock_path: PathBuf,
}

/// An exclusive hold on a mirror, released when dropped (the file closes).
#[derive(Debug)]
pub(super) struct Held(#[allow(dead_code)] File);

impl Mirror {
    /// The mirror at `path` (`<key>.git`, its lock `<key>.lock`).
    pub(super) fn at(path: &Path) -> Mirror {
        Mirror {
            path: path.to_path_buf(),
            lock_path: path.with_extension("lock"),
        }
    }

    /// The mirror of `url` under `root`: `<name>-<hash of the URL>.git`. The
    /// name is for people; the hash keeps two URLs apart (and a submodule's
    /// mirror, `submodule <url>`, from the repository's). Credentials in the
    /// URL never reach the name.
    pub(super) fn of(root: &Path, url: &str) -> Mirror {
        let shown = redact_url(url);
        let last = shown
            .trim_end_matches('/')
            .rsplit(['/', ':'])
            .next()
            .unwrap_or("");
        let last = last.strip_suffix(".git").unwrap_or(last);
        let mut name: String = last
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .take(40)
            .collect();
        if name.is_empty() {
            name = "repo".into();
        }
        // FNV-1a: stable across Rust releases, unlike the std hasher, so a
        // new faseng finds the mirrors of the old one.
        let hash = url.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        let key = format!("{name}-{hash:016x}");
        Mirror {
            path: root.join(format!("{key}.git")),
            lock_path: root.join(format!("{key}.lock")),
        }
    }

    /// Waits for the mirror's lock and marks the mirror used now (the lock
    /// file's mtime is what eviction orders by).
    pub(super) async fn lock(&self) -> Result<Held, String> {
        let path = self.lock_path.clone();
        let held = tokio::task::spawn_blocking(move || -> io::Result<Held> {
            let file = open_lock(&path)?;
            file.lock()?;
            file.set_modified(SystemTime::now())?;
            Ok(Held(file))
        })
        .await
        .map_err(|e| format!("the mirror's lock task failed: {e}"))?;
        held.map_err(|e| {
            format!(
                "cannot lock the mirror {}: {e}",
                self.lock_path.with_extension("git").display()
            )
        })
    }

    /// `git --git-dir=<mirror> args...`: never a repository found by
    /// searching from the current folder.
    async fn git(&self, env: &GitEnv, args: &[&str]) -> Result<String, String> {
        let git_dir = format!("--git-dir={}", self.path.display());
        let mut all = vec![git_dir.as_str()];
        all.extend_from_slice(args);
        git(env, None, &all).await
    }

    /// Makes the mirror if there is none, and checks that the one there is a
    /// repository. Under the lock. With `reader_gid` (FASENG_RUN_AS), the
    /// mirror belongs to that group, readable (0640/2750) but never writable
    /// by it, so that a provider's git reads objects through its alternates.
    pub(super) async fn ensure(
        &self,
        env: &GitEnv,
        reader_gid: Option<u32>,
    ) -> Result<(), Failure> {
        if std::fs::symlink_metadata(&self.path).is_err() {
            let mut dir = DirBuilder::new();
            dir.mode(if reader_gid.is_some() { 0o750 } else { 0o700 });
            dir.create(&self.path).map_err(|e| {
                Failure::Other(format!(
                    "cannot make the mirror {}: {e}",
                    self.path.display()
                ))
            })?;
            if let Some(gid) = reader_gid {
                std::os::unix::fs::chown(&self.path, None, Some(gid))
                    .and_then(|()| {
                        std::fs::set_permissions(
                            &self.path,
                            std::fs::Permissions::from_mode(0o2750),
                        )
                    })
                    .map_err(|e| {
                        Failure::Other(format!("cannot open the mirror to FASENG_RUN_AS: {e}"))
                    })?;
            }
            let path = self.path.to_string_lossy().into_owned();
            let mut init = vec!["init", "--quiet", "--bare", "--template="];
            if reader_gid.is_some() {
                init.push("--shared=0640");
            }
            init.extend(["--", path.as_str()]);
            git(env, None, &init)
                .await
                .map_err(|e| Failure::Other(format!("cannot make the mirror: {e}")))?;
            for (key, value) in [
                ("gc.auto", "0"),
                ("gc.packRefs", "false"),
                ("maintenance.auto", "false"),
                ("core.logAllRefUpdates", "false"),
                ("fetch.writeCommitGraph", "false"),
            ] {
                self.git(env, &["config", key, value])
                    .await
                    .map_err(|e| Failure::Other(format!("cannot set up the mirror: {e}")))?;
            }
        }
        if let Some(gid) = reader_gid {
            self.open_to(env, gid).await?;
        }
        // No `git rev-parse` here to check that the mirror is a repository: the
        // pin that follows runs git in it anyway, and a damaged mirror (or a folder
        // left empty by a crash before `git init`) fails there with git's message,
        // which [`classify`] reads. One process fewer per job (bench/run's pickup).
        Ok(())
    }

    /// A mirror made before FASENG_RUN_AS named this group (or another) is
    /// handed to it: group `gid`, readable by it, never writable, and so are
    /// the files git adds from now on (`core.sharedRepository=0640`).
    async fn open_to(&self, env: &GitEnv, gid: u32) -> Result<(), Failure> {
        let current = std::fs::metadata(&self.path).map(|m| m.gid()).ok();
        if current == Some(gid) {
            return Ok(());
        }
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || regroup(&path, gid))
            .await
            .map_err(|e| Failure::Other(format!("the mirror's regroup task failed: {e}")))?
            .map_err(|e| Failure::Other(format!("cannot open the mirror to FASENG_RUN_AS: {e}")))?;
        self.git(env, &["config", "core.sharedRepository", "0640"])
            .await
            .map(drop)
            .map_err(|e| classify(e, "cannot open the mirror to FASENG_RUN_AS"))
    }

    /// Moves a damaged mirror aside and removes it; the next [`Mirror::ensure`]
    /// starts a new one. Under the lock.
    pub(super) fn discard(&self, why: &str) {
        let aside = self.path.with_extension(format!("broken-{}", stamp()));
        tracing::warn!(mirror = %self.path.display(), %why, "the mirror is damaged; cloning it again");
        match std::fs::rename(&self.path, &aside) {
            Ok(()) => {
                if let Err(e) = std::fs::remove_dir_all(&aside) {
                    tracing::warn!(path = %aside.display(), error = %e, "cannot remove a damaged mirror");
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(mirror = %self.path.display(), error = %e, "cannot move a damaged mirror aside")
            }
        }
    }

    /// Pins the commit the job needs as `job_ref` in the mirror, fetching it
    /// only when the mirror does not hold it yet: the commit and how long its
    /// fetch took (`None`: no fetch was needed). Under the lock.
    ///
    /// A full commit id is fetched alone (`<sha>:refs/deploys/<job>`). A ref
    /// is fetched by its name; a short commit id, or a name the remote does
    /// not have as such, is looked up after fetching the remote's branches
    /// and tags, as a fresh clone would have found it.
    pub(super) async fn pin(
        &self,
        env: &GitEnv,
        source: &Source,
        git_ref: &str,
        sha: Option<&str>,
        job_ref: &str,
    ) -> Result<(String, Option<Duration>), Failure> {
        let url = redact_url(&source.url);
        let full = sha.filter(|s| s.len() == 40 || s.len() == 64);
        if let Some(full) = full {
            let full = full.to_ascii_lowercase();
            // `update-ref` refuses an object the mirror does not have ("trying to
            // write ref ... with nonexistent object"), so pinning is also the
            // check: a redeploy or a rollback costs one git process here.
            match self
                .git(env, &["update-ref", "--no-deref", job_ref, &full])
                .await
            {
                Ok(_) => return Ok((full, None)),
                Err(e) if looks_damaged(&e) => return Err(Failure::Mirror(e)),
                Err(_) => {}
            }
            let started = Instant::now();
            match self
                .fetch(env, &source.url, &[&format!("+{full}:{job_ref}")])
                .await
            {
                Ok(()) => {}
                Err(Failure::Other(e)) if not_found(&e) => {
                    // A server that serves no commit it does not advertise
                    // (protocol v0 without `uploadpack.allowReachableSHA1InWant`):
                    // look among its branches and tags, as a clone would.
                    self.fetch_all(env, &source.url)
                        .await
                        .map_err(|f| match f {
                            Failure::Other(f) => {
                                Failure::Other(format!("git fetch of {url} failed: {f}"))
                            }
                            mirror => mirror,
                        })?;
                    if self.commit(env, &full).await.is_err() {
                        return Err(Failure::Other(format!(
                            "commit `{full}` not found in the repository: {e}"
                        )));
                    }
                    self.update_ref(env, job_ref, &full).await?;
                }
                Err(Failure::Other(e)) => {
                    return Err(Failure::Other(format!("git fetch of {url} failed: {e}")));
                }
                Err(mirror) => return Err(mirror),
            }
            let took = started.elapsed();
            let commit = self.commit(env, job_ref).await.map_err(|e| {
                if looks_damaged(&e) {
                    Failure::Mirror(e)
                } else {
                    Failure::Other(format!("commit `{full}` not found in the repository: {e}"))
                }
            })?;
            self.keep(env, &commit).await;
            return Ok((commit, Some(took)));
        }
        let want = sha.unwrap_or(git_ref);
        let started = Instant::now();
        if sha.is_none() {
            match self
                .fetch(env, &source.url, &[&format!("+{want}:{job_ref}")])
                .await
            {
                Ok(()) => {
                    if let Ok(commit) = self.commit(env, job_ref).await {
                        self.update_ref(env, job_ref, &commit).await?;
                        self.keep(env, &commit).await;
                        return Ok((commit, Some(started.elapsed())));
                    }
                }
                Err(Failure::Mirror(e)) => return Err(Failure::Mirror(e)),
                Err(Failure::Other(_)) => {}
            }
        }
        self.fetch_all(env, &source.url)
            .await
            .map_err(|e| match e {
                Failure::Other(e) => Failure::Other(format!("git fetch of {url} failed: {e}")),
                mirror => mirror,
            })?;
        let took = started.elapsed();
        let commit = self.commit(env, want).await.map_err(|first| {
            let what = if sha.is_some() { "commit" } else { "ref" };
            Failure::Other(format!(
                "{what} `{want}` not found in the repository: {first}"
            ))
        })?;
        self.update_ref(env, job_ref, &commit).await?;
        Ok((commit, Some(took)))
    }

    /// The commit `what` names in the mirror.
    pub(super) async fn commit(&self, env: &GitEnv, what: &str) -> Result<String, String> {
        let spec = format!("{what}^{{commit}}");
        let out = self
            .git(
                env,
                &[
                    "rev-parse",
                    "--verify",
                    "--quiet",
                    "--end-of-options",
                    &spec,
                ],
            )
            .await?;
        let sha = out.trim().to_string();
        if sha.is_empty() {
            return Err("git found nothing by that name".into());
        }
        Ok(sha)
    }

    /// Keeps the commit just fetched as [`KEPT_REF`] once its job's pin is gone. A fetch
    /// tells the server what the mirror has through the mirror's refs; with the pins
    /// dropped between deploys the mirror would have none, and the server would send
    /// the whole history again for every new commit (bench/run's bigrepo phase: 13-15 s
    /// for one new commit of a 235 MB repository, where git alone took 0.1 s, and one
    /// more copy of every object in the mirror each time). What it keeps reachable
    /// is the mirror's content anyway; eviction bounds it.
    async fn keep(&self, env: &GitEnv, sha: &str) {
        if let Err(e) = self
            .git(env, &["update-ref", "--no-deref", KEPT_REF, sha])
            .await
        {
            tracing::warn!(mirror = %self.path.display(), error = %e, "cannot keep the fetched commit; the next fetch may send more than it needs");
        }
    }

    async fn update_ref(&self, env: &GitEnv, job_ref: &str, sha: &str) -> Result<(), Failure> {
        self.git(env, &["update-ref", "--no-deref", job_ref, sha])
            .await
            .map(drop)
            .map_err(|e| classify(e, "cannot pin the commit in the mirror"))
    }

    /// One fetch from `url` with exactly `refspecs`: no tags, no submodules,
    /// no FETCH_HEAD, no gc. The token goes in through `env`, for this fetch.
    async fn fetch(&self, env: &GitEnv, url: &str, refspecs: &[&str]) -> Result<(), Failure> {
        let mut args = vec![
            "fetch",
            "--quiet",
            "--no-tags",
            "--no-write-fetch-head",
            "--no-auto-gc",
            "--no-recurse-submodules",
            "--",
            url,
        ];
        args.extend_from_slice(refspecs);
        self.git(env, &args)
            .await
            .map(drop)
            .map_err(|e| classify(e, ""))
    }

    /// The remote's branches and tags, for names only they resolve.
    async fn fetch_all(&self, env: &GitEnv, url: &str) -> Result<(), Failure> {
        let mut args = vec![
            "fetch",
            "--quiet",
            "--prune",
            "--no-write-fetch-head",
            "--no-auto-gc",
            "--no-recurse-submodules",
            "--",
            url,
        ];
        args.extend(["+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"]);
        self.git(env, &args)
            .await
            .map(drop)
            .map_err(|e| classify(e, ""))
    }

    /// After a fetch, under the lock: drops the pins of jobs that have ended
    /// (their process died before removing them), then lets git pack what the
    /// fetches left loose, as `gc.auto` would have, but here, where no other
    /// fetch runs, in the foreground, and never dropping a pinned commit.
    pub(super) async fn maintain(&self, env: &GitEnv, pins: &Pins) {
        for job in pinned(&self.path) {
            if !live(&job, pins) {
                let name = format!("refs/deploys/{job}");
                if let Err(e) = self.git(env, &["update-ref", "-d", &name]).await {
                    tracing::warn!(mirror = %self.path.display(), %job, error = %e, "cannot drop an ended job's pin");
                }
            }
        }
        let gc = [
            "-c",
            "gc.auto=6700",
            "-c",
            "gc.autoPackLimit=50",
            "-c",
            "gc.autoDetach=false",
            "gc",
            "--auto",
            "--quiet",
        ];
        if let Err(e) = self.git(env, &gc).await {
            tracing::warn!(mirror = %self.path.display(), error = %e, "maintenance of the mirror failed");
        }
    }

    /// Drops `job`'s pin. No lock: the pin is a loose ref of its own.
    pub(super) async fn unpin(&self, env: &GitEnv, job: &str) {
        let name = format!("refs/deploys/{job}");
        if let Err(e) = self.git(env, &["update-ref", "-d", &name]).await {
            tracing::warn!(mirror = %self.path.display(), %job, error = %e, "cannot drop the job's pin; the next fetch does");
        }
    }
}

/// Opens (making it if needed) a lock file, never through a symlink.
pub(super) fn open_lock(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

/// Whether git's message says the mirror itself is damaged (rather than the
/// remote refusing or the network failing), which a new mirror cures.
pub(super) fn looks_damaged(msg: &str) -> bool {
    let m = msg.to_ascii_lowercase();
    [
        "corrupt",
        "bad object",
        "bad packed object",
        "invalid object",
        "not a git repository",
        "unable to read",
        "inflate",
        "packfile",
        "bad signature",
        "missing blob",
        "missing tree",
        "missing commit",
        "broken link",
        "loose object",
        "object file",
        "did not send all necessary objects",
        "unknown repository format",
        "bad config",
    ]
    .iter()
    .any(|p| m.contains(p))
}

/// `e` as a [`Failure`]: the mirror's when it looks damaged.
fn classify(e: String, what: &str) -> Failure {
    if looks_damaged(&e) {
        Failure::Mirror(e)
    } else if what.is_empty() {
        Failure::Other(e)
    } else {
        Failure::Other(format!("{what}: {e}"))
    }
}

/// Whether a fetch failed because the remote does not have what was asked.
fn not_found(msg: &str) -> bool {
    let m = msg.to_ascii_lowercase();
    [
        "not our ref",
        "couldn't find remote ref",
        "no such remote ref",
        "unadvertised object",
        "not a valid object",
    ]
    .iter()
    .any(|p| m.contains(p))
}

pub(super) fn stamp() -> u128 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
}

/// Gives everything under `path` (not following symlinks) to group `gid`,
/// readable and, for folders, passable by it, and never writable by it.
fn regroup(path: &Path, gid: u32) -> io::Result<()> {
    std::os::unix::fs::lchown(path, None, Some(gid))?;
    let meta = std::fs::symlink_metadata(path)?;
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    let mode = meta.mode() & 0o7777;
    let mode = if meta.is_dir() {
        (mode | 0o2750) & !0o027
    } else {
        (mode | 0o040) & !0o027
    };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    if meta.is_dir() {
        for entry in std::fs::read_dir(path)? {
            regroup(&entry?.path(), gid)?;
        }
    }
    Ok(())
}

/// Makes the mirrors' folder, private (0700), or passable (0711) when
/// providers run as another user and read mirrors through their group.
pub(super) fn prepare_root(root: &Path, passable: bool) -> Result<(), String> {
    let want = if passable { 0o711 } else { 0o700 };
    let ready = std::fs::symlink_metadata(root).is_ok_and(|m| {
        m.is_dir()
            && m.mode() & 0o7777 == want
            && std::fs::metadata("/proc/self").is_ok_and(|me| me.uid() == m.uid())
    });
    if ready {
        // Not narrowed and reopened for every job: a provider of another user
        // reading its mirror in between would find the folder shut.
        return Ok(());
    }
    crate::workdir::prepare(root).map_err(|e| e.to_string())?;
    if passable {
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o711))
            .map_err(|e| format!("cannot open {} to FASENG_RUN_AS: {e}", root.display()))?;
    }
    Ok(())
}
