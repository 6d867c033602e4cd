//! A job's own tree: a repository made by hand in the job's folder (its own
//! `.git`, the mirror's objects through `objects/info/alternates`, as
//! `git clone --shared` makes it) with the commit checked out, and the
//! submodules the repository names, each from its own mirror.

use std::path::{Component, Path};

use super::Failure;
use super::git::{GitEnv, git};
use super::mirror::looks_damaged;

/// Makes in `dir` (which must not exist) a repository that shares the
/// objects of the mirror at `mirror`, with `origin` at the repository's own
/// `url` (as a clone from it would have) and `sha` checked out, detached.
///
/// Why by hand rather than `git clone --shared --no-checkout`: the clone
/// asks the mirror for its refs through `git-upload-pack` started by a
/// shell, three processes before the checkout's one, and copies refs the
/// job does not use (the mirror holds the pins of other jobs and, now and
/// then, the remote's branches). What it writes is a few small files, the
/// same ones `git init` and the clone write; git reads them as it reads any
/// repository. The tree has no branches or tags, only `HEAD` at the commit,
/// which is what a clone of the mirror gave every job whose mirror had only
/// its pins.
pub(super) async fn build(
    env: &GitEnv,
    mirror: &Path,
    url: &str,
    sha: &str,
    dir: &Path,
) -> Result<(), Failure> {
    // Directories and files made below the control plane (`lowfs.rs`).
    let (m, u, s, d) = (
        mirror.to_path_buf(),
        url.to_string(),
        sha.to_string(),
        dir.to_path_buf(),
    );
    crate::lowfs::below(env.priority(), move || write_repository(&m, &u, &s, &d))
        .await
        .and_then(|made| made)
        .map_err(|e| {
            Failure::Other(format!(
                "cannot make the job's tree in {}: {e}",
                dir.display()
            ))
        })?;
    git(env, Some(dir), &["checkout", "--quiet", "--detach", sha])
        .await
        .map_err(|e| damaged_or(e, &format!("git checkout of {sha} failed")))?;
    Ok(())
}

/// The `.git` of a job's tree: `HEAD` detached at `sha`, a config with
/// `origin` at `url`, and the mirror's objects as its alternate. `dir` must
/// not exist (a leftover is an error, never reused).
fn write_repository(mirror: &Path, url: &str, sha: &str, dir: &Path) -> std::io::Result<()> {
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::create_dir(dir)?;
    let git_dir = dir.join(".git");
    // What git needs to take it for a repository: `HEAD`, `objects/` and
    // `refs/` (`setup.c`, `is_git_directory`); git makes the rest on demand.
    for sub in ["objects/info", "refs"] {
        std::fs::create_dir_all(git_dir.join(sub))?;
    }
    let objects = std::path::absolute(mirror.join("objects"))?;
    let mut alternates = objects.into_os_string().into_encoded_bytes();
    if alternates.contains(&b'\n') {
        return Err(std::io::Error::other(
            "the mirror's path holds a line break",
        ));
    }
    alternates.push(b'\n');
    std::fs::write(git_dir.join("objects/info/alternates"), alternates)?;
    std::fs::write(git_dir.join("config"), config_text(url)?)?;
    std::fs::write(git_dir.join("HEAD"), format!("{sha}\n"))?;
    Ok(())
}

/// The tree's `.git/config`: what `git init` writes on Linux, and `origin`
/// as `git clone` writes it. The URL is quoted, so that no character of it
/// can start a comment or end the value; git's own escapes for `"` and `\`.
fn config_text(url: &str) -> std::io::Result<String> {
    if url.chars().any(char::is_control) {
        return Err(std::io::Error::other(
            "the clone URL holds a control character",
        ));
    }
    let quoted = url.replace('\\', "\\\\").replace('"', "\\\"");
    Ok(format!(
        "[core]\n\trepositoryformatversion = 0\n\tfilemode = true\n\tbare = false\n\t\
         logallrefupdates = true\n[remote \"origin\"]\n\turl = \"{quoted}\"\n\t\
         fetch = +refs/heads/*:refs/remotes/origin/*\n"
    ))
}

fn damaged_or(e: String, what: &str) -> Failure {
    if looks_damaged(&e) {
        Failure::Mirror(e)
    } else {
        Failure::Other(format!("{what}: {e}"))
    }
}

/// A submodule of the checked-out commit: where it goes, where it comes from
/// (as `.gitmodules` says) and the commit the superproject records for it.
#[derive(Debug)]
pub(super) struct Submodule {
    pub(super) path: String,
    pub(super) url: String,
    pub(super) sha: String,
}

/// The submodules of the tree in `dir`: each path `.gitmodules` names that
/// the commit holds as a gitlink. `.gitmodules` is the repository's (anyone
/// who pushes writes it): its `include`s are not followed (`git config -f`
/// never does by default), and only gitlinks of the commit count.
pub(super) async fn submodules(env: &GitEnv, dir: &Path) -> Result<Vec<Submodule>, String> {
    if !dir.join(".gitmodules").is_file() {
        return Ok(Vec::new());
    }
    let listed = git(
        env,
        Some(dir),
        &[
            "config",
            "--file",
            ".gitmodules",
            "--null",
            "--get-regexp",
            r"^submodule\..*\.path$",
        ],
    )
    .await
    .unwrap_or_default();
    let mut out = Vec::new();
    for entry in listed.split('\0').filter(|e| !e.is_empty()) {
        let Some((key, path)) = entry.split_once('\n') else {
            continue;
        };
        let Some(name) = key
            .strip_prefix("submodule.")
            .and_then(|k| k.strip_suffix(".path"))
        else {
            continue;
        };
        let url_key = format!("submodule.{name}.url");
        let Ok(url) = git(
            env,
            Some(dir),
            &["config", "--file", ".gitmodules", "--get", &url_key],
        )
        .await
        else {
            continue;
        };
        let tree = git(
            env,
            Some(dir),
            &["--literal-pathspecs", "ls-tree", "-z", "HEAD", "--", path],
        )
        .await
        .map_err(|e| format!("cannot read submodule `{path}`: {e}"))?;
        // `160000 commit <sha>\t<path>`
        let Some((meta, _)) = tree.split_once('\t') else {
            continue;
        };
        let mut fields = meta.split(' ');
        if fields.next() != Some("160000") {
            continue;
        }
        let Some(sha) = fields.nth(1) else {
            continue;
        };
        out.push(Submodule {
            path: path.to_string(),
            url: url.trim().to_string(),
            sha: sha.to_string(),
        });
    }
    Ok(out)
}

/// Where `dir`'s submodule at `path` goes: inside `dir`, through plain
/// relative components only.
pub(super) fn submodule_dir(dir: &Path, path: &str) -> Result<std::path::PathBuf, String> {
    let rel = Path::new(path);
    if path.is_empty() || !rel.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(format!("submodule path `{path}` refused"));
    }
    Ok(dir.join(rel))
}

/// The URL of a submodule whose `.gitmodules` says `url`, in the repository
/// at `parent`: relative URLs (`../lib.git`) are taken from the parent's, as
/// git does. A repository fetched from elsewhere may not name a path or
/// `file://` URL on faseng's machine (another repository's mirror, say):
/// only a local repository may have local submodules.
pub(super) fn submodule_url(parent: &str, url: &str) -> Result<String, String> {
    let full = if url.starts_with("./") || url.starts_with("../") {
        let mut base = parent.trim_end_matches('/').to_string();
        let mut rest = url;
        loop {
            if let Some(r) = rest.strip_prefix("./") {
                rest = r;
            } else if let Some(r) = rest.strip_prefix("../") {
                rest = r;
                match base.rfind(['/', ':']) {
                    Some(at) if at > 0 => base.truncate(at),
                    _ => return Err(format!("submodule URL `{url}` climbs above {parent}")),
                }
            } else {
                break;
            }
        }
        format!("{base}/{rest}")
    } else {
        url.to_string()
    };
    let lower = full.to_ascii_lowercase();
    if full.starts_with('-') || lower.starts_with("ext::") || lower.starts_with("fd::") {
        return Err(format!("submodule URL `{url}` refused"));
    }
    let local = |u: &str| {
        let l = u.to_ascii_lowercase();
        l.starts_with("file:") || u.starts_with('/') || u.starts_with('.') || !u.contains(':')
    };
    if local(&full) && !local(parent) {
        return Err(format!(
            "submodule URL `{url}` names a path on faseng's machine, and the repository is not local"
        ));
    }
    Ok(full)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn submodule_urls() {
        let gh = "https://github.com/o/app.git";
        assert_eq!(
            submodule_url(gh, "../lib.git").unwrap(),
            "https://github.com/o/lib.git"
        );
        assert_eq!(
            submodule_url(gh, "./lib.git").unwrap(),
            "https://github.com/o/app.git/lib.git"
        );
        assert_eq!(
            submodule_url(gh, "https://github.com/x/y.git").unwrap(),
            "https://github.com/x/y.git"
        );
        assert!(submodule_url(gh, "/srv/other.git").is_err());
        assert!(submodule_url(gh, "file:///srv/other.git").is_err());
        assert!(submodule_url(gh, "ext::sh -c touch% /tmp/x").is_err());
        assert!(submodule_url(gh, "-uhelp").is_err());
        assert_eq!(submodule_url("/srv/app", "../lib").unwrap(), "/srv/lib");
        assert_eq!(
            submodule_url("git@github.com:o/app.git", "../lib.git").unwrap(),
            "git@github.com:o/lib.git"
        );
        assert!(submodule_url("/a", "../../../x").is_err());
    }

    #[test]
    fn submodule_dirs_stay_inside() {
        let dir = Path::new("/w/job");
        assert_eq!(submodule_dir(dir, "lib/x").unwrap(), dir.join("lib/x"));
        assert!(submodule_dir(dir, "../x").is_err());
        assert!(submodule_dir(dir, "/etc").is_err());
        assert!(submodule_dir(dir, "").is_err());
    }
}
