//! The exact commit for each job, from a mirror of its repository, with the
//! git CLI (ARCHITECTURE.md, "Mirrors").
//!
//! Each repository has one bare mirror in the work folder, kept between jobs:
//! a job fetches only the commit it needs into it (nothing when the mirror
//! has it already: a redeploy or a rollback costs only the checkout), pins
//! it there, and gets its own tree in its job folder: a repository that
//! shares the mirror's objects, as a `--shared` clone does (`tree.rs`).
//!
//! Nothing from a deployment reaches git as an option: refs are checked
//! (`chima_command::check_ref`), passed after `--end-of-options` or inside a
//! refspec that starts with `+`, and URLs after `--`. Credentials go in
//! through environment-provided git config (`GIT_CONFIG_*`) of the one fetch
//! that needs them, never in argv, a URL, a config file or the log
//! (`git.rs`); no git reads any configuration from outside the job.

mod git;
mod mirror;
mod pins;
mod tree;
mod url;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chima_command::check_ref;

#[doc(hidden)]
pub use git::GitEnv;
pub use pins::Pins;
pub use url::{redact_url, token_allowed};

use mirror::Mirror;

/// Where to clone from and how.
#[derive(Debug, Clone)]
pub struct Source {
    /// A URL or a local path (already resolved to an absolute path).
    pub url: String,
    /// An HTTP `Authorization` header value for the clone, if any.
    pub auth_header: Option<String>,
    /// The GitHub API URL `auth_header` belongs to (`https://api.github.com`,
    /// `https://HOST/api/v3`). The header is sent only when [`token_allowed`]
    /// says `url` is on that GitHub; `None` means it is never sent, so a token
    /// cannot leak to whatever host an app's `clone_url` or a webhook names.
    pub token_scope: Option<String>,
    /// How far below faseng git runs ([`crate::priority`]), as the provider does.
    pub priority: crate::priority::Priority,
}

/// A finished checkout: the folder, the commit it holds and what it took.
#[derive(Debug)]
pub struct Checkout {
    /// The checkout's folder.
    pub dir: PathBuf,
    /// The full commit id checked out (resolved from the ref when no sha was given).
    pub sha: String,
    /// How long fetching into the mirrors took; `None` when they held
    /// everything already.
    pub fetched: Option<Duration>,
    /// How long making the job's tree from the mirrors took.
    pub tree: Duration,
}

/// Why one attempt failed: the mirror is damaged (a new one may cure it), or
/// anything else (the remote, the network, a missing commit).
#[derive(Debug)]
enum Failure {
    Mirror(String),
    Other(String),
}

/// The repository mirrors of a work folder.
#[derive(Debug, Clone)]
pub struct Mirrors {
    /// The folder the mirrors live in (`<work folder>/mirrors`).
    pub root: PathBuf,
    /// The most the mirrors may take together, in bytes; the least recently
    /// used beyond it are removed after a fetch (`FASENG_MIRROR_MAX_GB`).
    pub max_bytes: u64,
    /// The group providers run in (FASENG_RUN_AS): it may read the mirrors,
    /// never write them.
    pub reader_gid: Option<u32>,
    /// The pins of this process's running jobs.
    pub pins: Pins,
}

/// Checks out `sha` if given, else what `git_ref` names, into `dir` (which
/// must not exist), through unbounded mirrors next to `dir` (in
/// `<parent>/mirrors`). The engine uses [`Mirrors::checkout`].
pub async fn checkout(
    source: &Source,
    git_ref: &str,
    sha: Option<&str>,
    dir: &Path,
) -> Result<Checkout, String> {
    let parent = dir.parent().unwrap_or(Path::new("."));
    let mirrors = Mirrors {
        root: parent.join("mirrors"),
        max_bytes: u64::MAX,
        reader_gid: None,
        pins: Pins::default(),
    };
    mirrors
        .checkout(source, git_ref, sha, dir, &mut Vec::new())
        .await
}

impl Mirrors {
    /// Checks out `sha` if given, else what `git_ref` names, into `dir`
    /// (which must not exist; its name names the job's pin), with the
    /// repository's submodules. Lines for the job's log (a mirror rebuilt)
    /// are added to `notes`. The error is git's own message, made readable,
    /// for the deployment's reason; credentials in the URL are replaced by
    /// `***` in it.
    pub async fn checkout(
        &self,
        source: &Source,
        git_ref: &str,
        sha: Option<&str>,
        dir: &Path,
        notes: &mut Vec<String>,
    ) -> Result<Checkout, String> {
        check_ref(git_ref).map_err(|why| format!("ref `{git_ref}` refused: {why}"))?;
        if let Some(sha) = sha
            && (sha.len() < 7 || sha.len() > 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(format!("sha `{sha}` is not a commit id"));
        }
        check_url(&source.url, "the clone URL")?;
        // Lives until the end of this call: every git below runs with it as
        // HOME, and dropping it removes it. Made (and removed) below the
        // control plane, as the tree is (`lowfs.rs`).
        let (made_for, made_in, root, passable) = (
            source.clone(),
            dir.to_path_buf(),
            self.root.clone(),
            self.reader_gid.is_some(),
        );
        let env = crate::lowfs::below(source.priority, move || {
            let env = GitEnv::new(&made_for, &made_in)?;
            mirror::prepare_root(&root, passable)
                .map_err(|e| format!("cannot use the mirrors' folder: {e}"))?;
            Ok::<_, String>(env)
        })
        .await
        .map_err(|e| format!("cannot make the checkout's private HOME: {e}"))??;
        let checked = async {
            let job = job_name(dir);
            let m = Mirror::of(&self.root, &source.url);
            let (sha, mut fetched, mut took) = self
                .pinned_tree(&env, &m, source, git_ref, sha, dir, &job, notes)
                .await?;
            for sub in tree::submodules(&env, dir).await? {
                match self
                    .submodule(source, git_ref, dir, &sub, &job, notes)
                    .await
                {
                    Ok((f, t)) => {
                        if let Some(f) = f {
                            fetched = Some(fetched.unwrap_or_default() + f);
                        }
                        took += t;
                    }
                    // Before mirrors, submodules were never checked out: one that
                    // cannot be (an ssh URL faseng has no key for, a path refused)
                    // is left empty, as then, and the log says why.
                    Err(why) => notes.push(format!(
                        "==> submodule `{}` not checked out: {why}",
                        sub.path
                    )),
                }
            }
            Ok(Checkout {
                dir: dir.to_path_buf(),
                sha,
                fetched,
                tree: took,
            })
        }
        .await;
        let _ = crate::lowfs::below(source.priority, move || drop(env)).await;
        checked
    }

    /// Checks out submodule `sub` of the tree in `dir` from its own mirror,
    /// without credentials.
    async fn submodule(
        &self,
        source: &Source,
        git_ref: &str,
        dir: &Path,
        sub: &tree::Submodule,
        job: &str,
        notes: &mut Vec<String>,
    ) -> Result<(Option<Duration>, Duration), String> {
        let url = tree::submodule_url(&source.url, &sub.url)?;
        check_url(&url, "the submodule URL")?;
        // Never the token: `.gitmodules` is written by whoever pushes, and
        // the token may read repositories they may not. For the same reason a
        // submodule has a mirror of its own, never the one of a repository
        // faseng fetched with the token: only what anyone may fetch reaches it.
        let sub_source = Source {
            url,
            auth_header: None,
            token_scope: None,
            priority: source.priority,
        };
        let sub_env = GitEnv::new(&sub_source, dir)?;
        let sub_dir = tree::submodule_dir(dir, &sub.path)?;
        match std::fs::remove_dir(&sub_dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("cannot place it: {e}")),
        }
        let m = Mirror::of(&self.root, &format!("submodule {}", sub_source.url));
        let done = self
            .pinned_tree(
                &sub_env,
                &m,
                &sub_source,
                git_ref,
                Some(&sub.sha),
                &sub_dir,
                job,
                notes,
            )
            .await;
        if done.is_err() {
            // Empty, as a checkout without its submodules leaves it.
            let _ = std::fs::remove_dir_all(&sub_dir);
            let _ = std::fs::create_dir(&sub_dir);
        }
        done.map(|(_, f, t)| (f, t))
    }

    /// Drops the pins of the job whose folder is `dir`, when it is done.
    ///
    /// A pin is a loose ref file (`gc.packRefs=false`, `mirror.rs`) that only
    /// this job writes: removing the file is what `git update-ref -d` would
    /// do, without a git process and a private `HOME` for it at the end of
    /// every job. git is asked only when the ref is not there as a file of
    /// its own (a mirror whose refs were packed before that setting).
    pub async fn release(&self, dir: &Path) {
        let job = job_name(dir);
        let held = self.pins.take(&job);
        let mut left = Vec::new();
        for path in held {
            if !pins::remove_loose(&path, &job) {
                left.push(path);
            }
        }
        if left.is_empty() {
            return;
        }
        let none = Source {
            url: String::new(),
            auth_header: None,
            token_scope: None,
            priority: crate::priority::Priority::UNCHANGED,
        };
        let env = match GitEnv::new(&none, dir) {
            Ok(env) => env,
            Err(e) => {
                tracing::warn!(%job, error = %e, "cannot drop the job's pins; the next fetch does");
                return;
            }
        };
        for path in left {
            Mirror::at(&path).unpin(&env, &job).await;
        }
    }

    /// The commit pinned in mirror `m` and checked out in `dir`, with one
    /// new mirror when the first turns out damaged (and a note saying so).
    #[allow(clippy::too_many_arguments)]
    async fn pinned_tree(
        &self,
        env: &GitEnv,
        m: &Mirror,
        source: &Source,
        git_ref: &str,
        sha: Option<&str>,
        dir: &Path,
        job: &str,
        notes: &mut Vec<String>,
    ) -> Result<(String, Option<Duration>, Duration), String> {
        let mut rebuilt = false;
        loop {
            let mut seen = None;
            let why = match self
                .once(env, m, source, git_ref, sha, dir, job, &mut seen)
                .await
            {
                Ok(done) => return Ok(done),
                Err(Failure::Mirror(why)) if !rebuilt => why,
                Err(Failure::Mirror(why) | Failure::Other(why)) => return Err(why),
            };
            rebuilt = true;
            if std::fs::symlink_metadata(dir).is_ok() {
                std::fs::remove_dir_all(dir)
                    .map_err(|e| format!("cannot clear {} to try again: {e}", dir.display()))?;
            }
            let held = m.lock().await?;
            // Another job may have rebuilt it since this one failed: only the
            // mirror that failed is discarded.
            if seen.is_none() || seen == identity(&m.path) {
                m.discard(&why);
            }
            drop(held);
            notes.push(format!(
                "==> the mirror of {} was damaged ({}); it was moved aside and cloned again",
                redact_url(&source.url),
                why.split(" / ")
                    .next()
                    .unwrap_or("")
                    .chars()
                    .take(160)
                    .collect::<String>()
            ));
        }
    }

    /// One attempt: under the mirror's lock, make it if needed and pin the
    /// commit (fetching only what is missing); then, without the lock, make
    /// the job's tree. `seen` gets the identity of the mirror used.
    #[allow(clippy::too_many_arguments)]
    async fn once(
        &self,
        env: &GitEnv,
        m: &Mirror,
        source: &Source,
        git_ref: &str,
        sha: Option<&str>,
        dir: &Path,
        job: &str,
        seen: &mut Option<(u64, u64)>,
    ) -> Result<(String, Option<Duration>, Duration), Failure> {
        let held = m.lock().await.map_err(Failure::Other)?;
        m.ensure(env, self.reader_gid).await?;
        *seen = identity(&m.path);
        let job_ref = format!("refs/deploys/{job}");
        let (sha, fetched) = m.pin(env, source, git_ref, sha, &job_ref).await?;
        self.pins.add(job, &m.path);
        if fetched.is_some() {
            m.maintain(env, &self.pins).await;
        }
        drop(held);
        if fetched.is_some() && self.max_bytes != u64::MAX {
            let (root, max, pins, keep) = (
                self.root.clone(),
                self.max_bytes,
                self.pins.clone(),
                m.path.clone(),
            );
            let removed =
                tokio::task::spawn_blocking(move || pins::evict(&root, max, &pins, &keep))
                    .await
                    .unwrap_or_default();
            for path in removed {
                tracing::info!(mirror = %path.display(), "removed the least recently used mirror (FASENG_MIRROR_MAX_GB)");
            }
        }
        let started = Instant::now();
        if let Err(failed) = tree::build(env, &m.path, &source.url, &sha, dir).await {
            // The pin checks only that the object exists: a full id of a tree or
            // a blob gets this far. Say what a fresh clone would have said.
            if let (Failure::Other(_), Err(e)) = (&failed, m.commit(env, &sha).await) {
                return Err(Failure::Other(format!(
                    "commit `{sha}` not found in the repository: {e}"
                )));
            }
            return Err(failed);
        }
        Ok((sha, fetched, started.elapsed()))
    }
}

/// Refuses URLs git would take for an option or a command to run.
fn check_url(url: &str, what: &str) -> Result<(), String> {
    if url.starts_with('-') {
        return Err(format!("{what} starts with `-`; refused"));
    }
    let lower = url.to_ascii_lowercase();
    if lower.starts_with("ext::") || lower.starts_with("fd::") {
        return Err(format!(
            "{what} uses a git transport that runs commands; refused"
        ));
    }
    Ok(())
}

/// The job's name in its pins: its folder's name, as a ref component.
fn job_name(dir: &Path) -> String {
    let name: String = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.is_empty() { "job".into() } else { name }
}

/// Device and inode of a folder: tells a rebuilt mirror from the one before.
fn identity(path: &Path) -> Option<(u64, u64)> {
    std::fs::symlink_metadata(path)
        .ok()
        .map(|m| (m.dev(), m.ino()))
}
