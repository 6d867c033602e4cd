//! A fresh checkout of the exact commit for each job, with the git CLI.
//!
//! Nothing from a deployment reaches git as an option: refs are checked
//! (`chima_command::check_ref`), passed after `--end-of-options`, and the
//! clone URL after `--`. Credentials go in through environment-provided git
//! config (`GIT_CONFIG_*`), never in argv, the URL or the log.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use chima_command::check_ref;
use tokio::process::Command;

/// Where to clone from and how.
#[derive(Debug, Clone)]
pub struct Source {
    /// A URL or a local path (already resolved to an absolute path).
    pub url: String,
    /// An HTTP `Authorization` header value for the clone, if any.
    pub auth_header: Option<String>,
}

/// A finished checkout: the folder and the commit it holds.
#[derive(Debug)]
pub struct Checkout {
    pub dir: PathBuf,
    pub sha: String,
}

/// Clones `source` into `dir` (which must not exist) and checks out `sha` if
/// given, else what `git_ref` names. The error is git's own message, made
/// readable, for the deployment's reason.
pub async fn checkout(
    source: &Source,
    git_ref: &str,
    sha: Option<&str>,
    dir: &Path,
) -> Result<Checkout, String> {
    check_ref(git_ref).map_err(|why| format!("ref `{git_ref}` refused: {why}"))?;
    if let Some(sha) = sha
        && (sha.len() < 7 || sha.len() > 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return Err(format!("sha `{sha}` is not a commit id"));
    }
    if source.url.starts_with('-') {
        return Err("the clone URL starts with `-`; refused".into());
    }
    let lower = source.url.to_ascii_lowercase();
    if lower.starts_with("ext::") || lower.starts_with("fd::") {
        return Err("the clone URL uses a git transport that runs commands; refused".into());
    }
    let dir_str = dir.to_string_lossy().to_string();
    git(
        source,
        None,
        &[
            "clone",
            "--quiet",
            "--no-checkout",
            // No template: no sample hooks and descriptions written into every
            // job's clone (about 4 ms of each pickup on this machine's disk).
            "--template=",
            "--",
            &source.url,
            &dir_str,
        ],
    )
    .await
    .map_err(|e| format!("git clone failed: {e}"))?;
    let want = sha.unwrap_or(git_ref);
    // A full commit id needs no lookup: `checkout --detach` refuses anything that
    // is not a commit of the clone. One git process less per deploy (pickup).
    let full = sha.filter(|s| s.len() == 40 || s.len() == 64);
    let resolved = match full {
        Some(full) => full.to_ascii_lowercase(),
        None => lookup(source, dir, want, sha.is_some()).await?,
    };
    git(
        source,
        Some(dir),
        &["checkout", "--quiet", "--detach", &resolved],
    )
    .await
    .map_err(|e| match full {
        Some(_) => format!("commit `{want}` not found in the repository: {e}"),
        None => format!("git checkout of {resolved} failed: {e}"),
    })?;
    Ok(Checkout {
        dir: dir.to_path_buf(),
        sha: resolved,
    })
}

/// The commit `want` names in the fresh clone in `dir`.
async fn lookup(source: &Source, dir: &Path, want: &str, is_sha: bool) -> Result<String, String> {
    let first = match resolve(source, dir, want).await {
        Ok(s) => return Ok(s),
        Err(first) => first,
    };
    // A branch of the remote is `origin/<ref>` in a fresh clone.
    resolve(source, dir, &format!("origin/{want}"))
        .await
        .map_err(|_| {
            let what = if is_sha { "commit" } else { "ref" };
            format!("{what} `{want}` not found in the repository: {first}")
        })
}

async fn resolve(source: &Source, dir: &Path, what: &str) -> Result<String, String> {
    let spec = format!("{what}^{{commit}}");
    let out = git(
        source,
        Some(dir),
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

/// Runs git with a clean, fixed environment and returns its stdout, or its
/// stderr as the error.
async fn git(source: &Source, dir: Option<&Path>, args: &[&str]) -> Result<String, String> {
    let mut cmd = Command::new("git");
    if let Some(dir) = dir {
        cmd.arg("-C").arg(dir);
    }
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", std::env::temp_dir())
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("LC_ALL", "C")
        // No `file://` restrictions are lifted and no helpers run: only the
        // transports a deploy needs.
        .env("GIT_ALLOW_PROTOCOL", "file:git:http:https:ssh")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(header) = &source.auth_header {
        cmd.env("GIT_CONFIG_COUNT", "1")
            .env("GIT_CONFIG_KEY_0", "http.extraHeader")
            .env("GIT_CONFIG_VALUE_0", format!("Authorization: {header}"));
    }
    let out = cmd
        .output()
        .await
        .map_err(|e| format!("cannot run git: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        let err = err.trim();
        Err(if err.is_empty() {
            format!("git exited with {}", out.status)
        } else {
            err.lines().take(5).collect::<Vec<_>>().join(" / ")
        })
    }
}
