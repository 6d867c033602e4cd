//! The environment every git of a checkout runs in, and running git in it.
//!
//! Nothing outside the job decides what git does: every git runs with an
//! emptied environment, a private empty `HOME` made for this checkout, no
//! global, system or XDG config, no hooks, no credential helper and no
//! fsmonitor. A `.gitconfig` planted in a shared temp folder (the `HOME` git
//! used to get) could otherwise run commands as faseng or send the clone
//! elsewhere. Credentials go in through environment-provided git config
//! (`GIT_CONFIG_*`) of one git process at a time, never in argv, a URL, a
//! config file or the log.

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::process::Command;

use super::Source;
use super::url::{redact_url, scrub, token_allowed};

/// The whole environment of every git a checkout runs, and the private `HOME`
/// it points at (removed when this is dropped).
///
/// Public (hidden) so that tests can check exactly what git gets.
#[doc(hidden)]
#[derive(Debug)]
pub struct GitEnv {
    home: tempfile::TempDir,
    vars: Vec<(OsString, OsString)>,
    /// The clone URL, to take credentials out of git's messages.
    url: String,
    /// Set in every git this runs.
    priority: crate::priority::Priority,
    /// `git` as found on `vars`' PATH, once per environment rather than per run
    /// (a full path lets the standard library `posix_spawn` it: `spawn.rs`).
    program: PathBuf,
}

impl GitEnv {
    /// A fresh, empty, mode 0700 `HOME` next to `dir` (inside faseng's
    /// private work folder; the temp folder if `dir` has no existing parent)
    /// and the variables git runs with for `source`.
    pub fn new(source: &Source, dir: &Path) -> Result<GitEnv, String> {
        let parent = match dir.parent() {
            Some(p) if p.as_os_str().is_empty() => Path::new("."),
            Some(p) => p,
            None => Path::new("/"),
        };
        let base = if parent.is_dir() {
            std::path::absolute(parent)
                .map_err(|e| format!("cannot resolve the folder {}: {e}", parent.display()))?
        } else {
            std::env::temp_dir()
        };
        // The random name and the exclusive mkdir make this safe even in a
        // shared temp folder: nobody else can have planted anything inside.
        let home = tempfile::Builder::new()
            .prefix(".git-home-")
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir_in(&base)
            .map_err(|e| {
                format!(
                    "cannot make a private HOME for git in {}: {e}",
                    base.display()
                )
            })?;
        let vars = git_vars(source, home.path());
        let program = crate::spawn::resolve(
            "git".as_ref(),
            crate::spawn::path_in(&vars).as_deref(),
            Some(home.path()),
        );
        Ok(GitEnv {
            home,
            vars,
            program,
            url: source.url.clone(),
            priority: source.priority,
        })
    }

    /// How far below faseng this checkout's work runs.
    pub(crate) fn priority(&self) -> crate::priority::Priority {
        self.priority
    }

    /// The private `HOME`.
    pub fn home(&self) -> &Path {
        self.home.path()
    }

    /// Every variable git gets; nothing else of faseng's environment reaches it.
    pub fn vars(&self) -> &[(OsString, OsString)] {
        &self.vars
    }
}

/// The environment for git with `home` as its private `HOME`.
fn git_vars(source: &Source, home: &Path) -> Vec<(OsString, OsString)> {
    let ceiling = home.parent().unwrap_or(home);
    let mut vars: Vec<(OsString, OsString)> = vec![
        ("PATH".into(), std::env::var_os("PATH").unwrap_or_default()),
        ("HOME".into(), home.into()),
        // Git reads `$XDG_CONFIG_HOME/git/{config,attributes,ignore}`; there
        // is nothing there.
        ("XDG_CONFIG_HOME".into(), home.join(".config").into()),
        ("GIT_CONFIG_GLOBAL".into(), "/dev/null".into()),
        ("GIT_CONFIG_NOSYSTEM".into(), "1".into()),
        ("GIT_ATTR_NOSYSTEM".into(), "1".into()),
        // `git clone` runs in `home`; no repository around it is looked at.
        ("GIT_CEILING_DIRECTORIES".into(), ceiling.into()),
        ("GIT_TERMINAL_PROMPT".into(), "0".into()),
        ("LC_ALL".into(), "C".into()),
        // Only the transports a deploy needs; this also allows `file` for the
        // local clones of the embedded mode (no `protocol.file.allow` needed).
        (
            "GIT_ALLOW_PROTOCOL".into(),
            "file:git:http:https:ssh".into(),
        ),
    ];
    let mut config: Vec<(&str, String)> = vec![
        ("core.hooksPath", "/dev/null".into()),
        // Empty resets the list: no helper runs, none stores the token.
        ("credential.helper", String::new()),
        ("core.fsmonitor", "false".into()),
    ];
    if let Some(header) = &source.auth_header {
        let allowed = source
            .token_scope
            .as_deref()
            .is_some_and(|scope| token_allowed(&source.url, scope));
        if !allowed {
            tracing::warn!(
                url = %redact_url(&source.url),
                scope = source.token_scope.as_deref().unwrap_or("none"),
                "not sending the code host's credentials: the clone URL is not on the GitHub they belong to"
            );
        } else if header.contains(['\r', '\n']) {
            tracing::warn!("not sending the code host's credentials: the header has a line break");
        } else {
            config.push(("http.extraHeader", format!("Authorization: {header}")));
        }
    }
    vars.push(("GIT_CONFIG_COUNT".into(), config.len().to_string().into()));
    for (n, (key, value)) in config.into_iter().enumerate() {
        vars.push((format!("GIT_CONFIG_KEY_{n}").into(), key.into()));
        vars.push((format!("GIT_CONFIG_VALUE_{n}").into(), value.into()));
    }
    vars
}

/// Runs git with `env` only and returns its stdout, or its stderr (with
/// credentials of the URL taken out) as the error.
pub(super) async fn git(env: &GitEnv, dir: Option<&Path>, args: &[&str]) -> Result<String, String> {
    let mut cmd = Command::new(&env.program);
    if let Some(dir) = dir {
        cmd.arg("-C").arg(dir);
    }
    cmd.args(args)
        .env_clear()
        .envs(env.vars().iter().map(|(k, v)| (k, v)))
        .current_dir(env.home())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let out = crate::spawn::spawn(cmd, env.priority)
        .await
        .map_err(|e| format!("cannot run git: {e}"))?
        .wait_with_output()
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
            scrub(
                &err.lines().take(5).collect::<Vec<_>>().join(" / "),
                &env.url,
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(url: &str, header: Option<&str>, scope: Option<&str>) -> Source {
        Source {
            url: url.to_string(),
            auth_header: header.map(str::to_string),
            token_scope: scope.map(str::to_string),
            priority: crate::priority::Priority::UNCHANGED,
        }
    }

    fn var<'a>(vars: &'a [(OsString, OsString)], name: &str) -> Option<&'a OsString> {
        vars.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    /// The `GIT_CONFIG_KEY_n`/`VALUE_n` pairs, checked against the count.
    fn config(vars: &[(OsString, OsString)]) -> Vec<(String, String)> {
        let count: usize = var(vars, "GIT_CONFIG_COUNT")
            .unwrap()
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        (0..count)
            .map(|n| {
                let k = var(vars, &format!("GIT_CONFIG_KEY_{n}")).unwrap();
                let v = var(vars, &format!("GIT_CONFIG_VALUE_{n}")).unwrap();
                (
                    k.to_string_lossy().into_owned(),
                    v.to_string_lossy().into_owned(),
                )
            })
            .collect()
    }

    #[test]
    fn git_runs_with_a_fresh_private_home_and_no_outside_config() {
        let work = tempfile::tempdir().unwrap();
        let job = work.path().join("job-1-2");
        let src = source("https://github.com/o/r.git", Some("Bearer t0ken"), None);
        let env = GitEnv::new(&src, &job).unwrap();
        let home = env.home().to_path_buf();
        let vars = env.vars().to_vec();

        assert_eq!(home.parent(), Some(work.path()), "HOME is next to the job");
        let meta = std::fs::symlink_metadata(&home).unwrap();
        assert!(meta.is_dir());
        assert_eq!(meta.permissions().mode() & 0o7777, 0o700);
        assert_eq!(
            std::fs::read_dir(&home).unwrap().count(),
            0,
            "HOME is empty"
        );
        assert_eq!(var(&vars, "HOME"), Some(&home.clone().into_os_string()));
        assert!(
            Path::new(var(&vars, "XDG_CONFIG_HOME").unwrap()).starts_with(&home),
            "XDG config inside the private HOME"
        );
        assert_eq!(var(&vars, "GIT_CONFIG_GLOBAL").unwrap(), "/dev/null");
        assert_eq!(var(&vars, "GIT_CONFIG_NOSYSTEM").unwrap(), "1");
        assert_eq!(var(&vars, "GIT_ATTR_NOSYSTEM").unwrap(), "1");
        let names: Vec<_> = vars.iter().map(|(k, _)| k.to_string_lossy()).collect();
        for name in names.iter() {
            assert!(
                !matches!(
                    name.as_ref(),
                    "GIT_CONFIG_PARAMETERS" | "GIT_CONFIG_SYSTEM" | "GIT_DIR"
                ),
                "{name} must not be set"
            );
        }
        let config = config(&vars);
        let get = |key: &str| {
            config
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("core.hooksPath"), Some("/dev/null"));
        assert_eq!(get("credential.helper"), Some(""));
        assert_eq!(get("core.fsmonitor"), Some("false"));
        // No scope: the header is not sent.
        assert_eq!(get("http.extraHeader"), None);

        // A second checkout gets its own HOME; the first goes with its GitEnv.
        let other = GitEnv::new(&src, &job).unwrap();
        assert_ne!(other.home(), home);
        drop(env);
        assert!(
            !home.exists(),
            "the private HOME is removed after the checkout"
        );
    }

    #[test]
    fn the_header_goes_only_to_the_github_it_belongs_to() {
        let work = tempfile::tempdir().unwrap();
        let job = work.path().join("job");
        let header = |url: &str, scope: Option<&str>| {
            let env = GitEnv::new(&source(url, Some("Bearer t0ken"), scope), &job).unwrap();
            config(env.vars())
                .into_iter()
                .find(|(k, _)| k == "http.extraHeader")
                .map(|(_, v)| v)
        };
        assert_eq!(
            header("https://github.com/o/r.git", Some("https://api.github.com")).as_deref(),
            Some("Authorization: Bearer t0ken")
        );
        assert_eq!(
            header(
                "https://evil.example/o/r.git",
                Some("https://api.github.com")
            ),
            None
        );
        assert_eq!(header("https://github.com/o/r.git", None), None);
        let env = GitEnv::new(
            &source(
                "https://github.com/o/r.git",
                Some("Bearer a\r\nX-Evil: 1"),
                Some("https://api.github.com"),
            ),
            &job,
        )
        .unwrap();
        assert!(
            config(env.vars())
                .iter()
                .all(|(k, _)| k != "http.extraHeader")
        );
    }
}
