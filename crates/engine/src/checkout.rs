//! A fresh checkout of the exact commit for each job, with the git CLI.
//!
//! Nothing from a deployment reaches git as an option: refs are checked
//! (`chima_command::check_ref`), passed after `--end-of-options`, and the
//! clone URL after `--`. Credentials go in through environment-provided git
//! config (`GIT_CONFIG_*`), never in argv, the URL or the log.
//!
//! Nothing outside the job decides what git does either: every git runs with
//! an emptied environment, a private empty `HOME` made for this checkout, no
//! global, system or XDG config, no hooks, no credential helper and no
//! fsmonitor. A `.gitconfig` planted in a shared temp folder (the `HOME` git
//! used to get) could otherwise run commands as faseng or send the clone
//! elsewhere.

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
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
    /// The GitHub API URL `auth_header` belongs to (`https://api.github.com`,
    /// `https://HOST/api/v3`). The header is sent only when [`token_allowed`]
    /// says `url` is on that GitHub; `None` means it is never sent, so a token
    /// cannot leak to whatever host an app's `clone_url` or a webhook names.
    pub token_scope: Option<String>,
}

/// A finished checkout: the folder and the commit it holds.
#[derive(Debug)]
pub struct Checkout {
    /// The checkout's folder.
    pub dir: PathBuf,
    /// The full commit id checked out (resolved from the ref when no sha was given).
    pub sha: String,
}

/// Clones `source` into `dir` (which must not exist) and checks out `sha` if
/// given, else what `git_ref` names. The error is git's own message, made
/// readable, for the deployment's reason; credentials in the URL are replaced
/// by `***` in it.
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
    // Lives until the end of this call: every git below runs with it as HOME,
    // and dropping it removes it.
    let env = GitEnv::new(source, dir)?;
    let dir_str = dir.to_string_lossy().to_string();
    git(
        &env,
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
    .map_err(|e| format!("git clone of {} failed: {e}", redact_url(&source.url)))?;
    let want = sha.unwrap_or(git_ref);
    // A full commit id needs no lookup: `checkout --detach` refuses anything that
    // is not a commit of the clone. One git process less per deploy (pickup).
    let full = sha.filter(|s| s.len() == 40 || s.len() == 64);
    let resolved = match full {
        Some(full) => full.to_ascii_lowercase(),
        None => lookup(&env, dir, want, sha.is_some()).await?,
    };
    git(
        &env,
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
async fn lookup(env: &GitEnv, dir: &Path, want: &str, is_sha: bool) -> Result<String, String> {
    let first = match resolve(env, dir, want).await {
        Ok(s) => return Ok(s),
        Err(first) => first,
    };
    // A branch of the remote is `origin/<ref>` in a fresh clone.
    resolve(env, dir, &format!("origin/{want}"))
        .await
        .map_err(|_| {
            let what = if is_sha { "commit" } else { "ref" };
            format!("{what} `{want}` not found in the repository: {first}")
        })
}

async fn resolve(env: &GitEnv, dir: &Path, what: &str) -> Result<String, String> {
    let spec = format!("{what}^{{commit}}");
    let out = git(
        env,
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
        Ok(GitEnv {
            home,
            vars,
            url: source.url.clone(),
        })
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
async fn git(env: &GitEnv, dir: Option<&Path>, args: &[&str]) -> Result<String, String> {
    let mut cmd = Command::new("git");
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
            scrub(
                &err.lines().take(5).collect::<Vec<_>>().join(" / "),
                &env.url,
            )
        })
    }
}

/// `text` with the credentials of `url` taken out: the URL itself, then its
/// userinfo and password wherever git may have echoed them on their own.
fn scrub(text: &str, url: &str) -> String {
    let Some((userinfo, _)) = split_userinfo(url) else {
        return text.to_string();
    };
    let mut text = text.replace(url, &redact_url(url));
    text = text.replace(userinfo, "***");
    // Short passwords are left alone: replacing `x` everywhere would garble
    // the message, and the userinfo above already went.
    if let Some((_, password)) = userinfo.split_once(':')
        && password.len() >= 4
    {
        text = text.replace(password, "***");
    }
    text
}

/// The userinfo of a `scheme://userinfo@host/...` URL and the byte offset
/// where it starts.
fn split_userinfo(url: &str) -> Option<(&str, usize)> {
    let start = url.find("://")? + 3;
    let rest = &url[start..];
    let end = rest.find(['/', '?', '#', '\\']).unwrap_or(rest.len());
    let at = rest[..end].rfind('@')?;
    Some((&rest[..at], start))
}

/// `url` with its userinfo (`user:password@`) replaced by `***@`, for error
/// texts and logs. Anything without `scheme://userinfo@` is returned as is.
pub fn redact_url(url: &str) -> String {
    match split_userinfo(url) {
        Some((userinfo, start)) => {
            format!("{}***{}", &url[..start], &url[start + userinfo.len()..])
        }
        None => url.to_string(),
    }
}

/// Whether the GitHub token of the API at `github_api_url` may be sent with a
/// clone from `clone_url`: only to the GitHub it belongs to.
///
/// For `https://api.github.com` the clone URL must be `https://github.com/...`
/// on the default port. For any other API (GitHub Enterprise
/// `https://HOST/api/v3`, a local fake) the clone URL must have the API's
/// scheme, host (case-insensitive) and port. URLs with userinfo, local paths,
/// `file://`, `ssh://` and `git@host:...` never get the token. Anything that
/// does not parse strictly is refused rather than guessed at, so that this
/// check and curl can never disagree on the host.
pub fn token_allowed(clone_url: &str, github_api_url: &str) -> bool {
    let (Some(clone), Some(api)) = (Origin::parse(clone_url), Origin::parse(github_api_url)) else {
        return false;
    };
    if api.scheme == "https" && api.host == "api.github.com" && api.port == 443 {
        return clone.scheme == "https" && clone.host == "github.com" && clone.port == 443;
    }
    clone == api
}

/// Scheme, host and port of an `http(s)://` URL.
#[derive(Debug, PartialEq, Eq)]
struct Origin {
    scheme: &'static str,
    /// Lowercase; an IPv6 address keeps its brackets.
    host: String,
    port: u16,
}

impl Origin {
    fn parse(url: &str) -> Option<Origin> {
        // Printable ASCII only, and no backslash: some parsers take `\` for
        // `/`, which would move where the host ends.
        if !url.bytes().all(|b| b.is_ascii_graphic() && b != b'\\') {
            return None;
        }
        let (scheme, rest) = url.split_once("://")?;
        let (scheme, default_port) = match scheme.to_ascii_lowercase().as_str() {
            "https" => ("https", 443),
            "http" => ("http", 80),
            _ => return None,
        };
        let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
        if authority.contains('@') {
            return None;
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (addr, after) = v6.split_once(']')?;
            if addr.is_empty() || !addr.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
                return None;
            }
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':')?),
            };
            (format!("[{addr}]"), port)
        } else {
            let (host, port) = match authority.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            };
            let host_ok = !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
            if !host_ok {
                return None;
            }
            (host.to_string(), port)
        };
        let port = match port {
            None => default_port,
            Some(p) if !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => {
                p.parse().ok().filter(|&p| p != 0)?
            }
            Some(_) => return None,
        };
        Some(Origin {
            scheme,
            host: host.to_ascii_lowercase(),
            port,
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

    #[test]
    fn token_allowed_table() {
        let gh = "https://api.github.com";
        let cases: &[(&str, &str, bool)] = &[
            ("https://github.com/o/r.git", gh, true),
            (
                "https://github.com/o/r.git",
                "https://api.github.com/",
                true,
            ),
            ("https://GitHub.com/o/r", gh, true),
            ("https://github.com:443/o/r.git", gh, true),
            ("https://github.com", gh, true),
            ("http://github.com/o/r.git", gh, false),
            ("https://github.com:8443/o/r.git", gh, false),
            ("https://api.github.com/o/r.git", gh, false),
            ("https://gist.github.com/o/r.git", gh, false),
            ("https://github.com.evil.example/o/r.git", gh, false),
            ("https://evil.example/github.com/o/r.git", gh, false),
            ("https://github.com@evil.example/o/r.git", gh, false),
            ("https://user:pw@github.com/o/r.git", gh, false),
            ("https://x-access-token@github.com/o/r.git", gh, false),
            ("https://evil.example\\@github.com/o/r.git", gh, false),
            ("https://github.com./o/r.git", gh, false),
            ("https://github.com:/o/r.git", gh, false),
            ("https:// github.com/o/r.git", gh, false),
            ("ssh://git@github.com/o/r.git", gh, false),
            ("git@github.com:o/r.git", gh, false),
            ("git://github.com/o/r.git", gh, false),
            ("file:///srv/o/r.git", gh, false),
            ("/srv/o/r.git", gh, false),
            ("github.com/o/r.git", gh, false),
            ("", gh, false),
            // GitHub Enterprise.
            (
                "https://ghe.corp.example/o/r.git",
                "https://ghe.corp.example/api/v3",
                true,
            ),
            (
                "https://GHE.corp.example/o/r.git",
                "https://ghe.corp.example/api/v3",
                true,
            ),
            (
                "https://ghe.corp.example:443/o/r.git",
                "https://ghe.corp.example/api/v3",
                true,
            ),
            (
                "http://ghe.corp.example/o/r.git",
                "https://ghe.corp.example/api/v3",
                false,
            ),
            (
                "https://github.com/o/r.git",
                "https://ghe.corp.example/api/v3",
                false,
            ),
            (
                "https://ghe.corp.example:8443/o/r.git",
                "https://ghe.corp.example/api/v3",
                false,
            ),
            (
                "https://other.corp.example/o/r.git",
                "https://ghe.corp.example/api/v3",
                false,
            ),
            (
                "https://ghe.corp.example/o/r.git",
                "https://ghe.corp.example:8443/api/v3",
                false,
            ),
            // A local fake.
            (
                "http://127.0.0.1:8080/o/r.git",
                "http://127.0.0.1:8080",
                true,
            ),
            (
                "http://127.0.0.1:8080/o/r.git",
                "http://127.0.0.1:8080/",
                true,
            ),
            (
                "http://127.0.0.1:8081/o/r.git",
                "http://127.0.0.1:8080",
                false,
            ),
            ("http://127.0.0.1/o/r.git", "http://127.0.0.1:8080", false),
            ("http://127.0.0.1/o/r.git", "http://127.0.0.1", true),
            ("http://127.0.0.1:80/o/r.git", "http://127.0.0.1", true),
            (
                "https://127.0.0.1:8080/o/r.git",
                "http://127.0.0.1:8080",
                false,
            ),
            (
                "http://localhost:8080/o/r.git",
                "http://127.0.0.1:8080",
                false,
            ),
            ("http://[::1]:8080/o/r.git", "http://[::1]:8080", true),
            ("http://[::1]:8081/o/r.git", "http://[::1]:8080", false),
            (
                "http://u:p@127.0.0.1:8080/o/r.git",
                "http://127.0.0.1:8080",
                false,
            ),
            ("/srv/o/r.git", "http://127.0.0.1:8080", false),
            // A scope that is not an API URL allows nothing.
            ("https://github.com/o/r.git", "", false),
            ("https://github.com/o/r.git", "api.github.com", false),
        ];
        for (clone, api, want) in cases {
            assert_eq!(token_allowed(clone, api), *want, "{clone} with {api}");
        }
    }

    #[test]
    fn redact_url_cases() {
        let cases = [
            (
                "https://user:s3cr3t@github.com/o/r.git",
                "https://***@github.com/o/r.git",
            ),
            (
                "https://x-access-token@github.com/o/r",
                "https://***@github.com/o/r",
            ),
            (
                "http://u:p%40ss@127.0.0.1:9/x.git",
                "http://***@127.0.0.1:9/x.git",
            ),
            ("https://u:p@ss@host/x.git", "https://***@host/x.git"),
            ("https://github.com/o/r.git", "https://github.com/o/r.git"),
            (
                "https://github.com/o/r@v1.git",
                "https://github.com/o/r@v1.git",
            ),
            ("git@github.com:o/r.git", "git@github.com:o/r.git"),
            (
                "ssh://git@github.com/o/r.git",
                "ssh://***@github.com/o/r.git",
            ),
            ("/srv/repo", "/srv/repo"),
        ];
        for (url, want) in cases {
            assert_eq!(redact_url(url), want, "{url}");
        }
    }

    #[test]
    fn scrub_takes_credentials_out_of_git_messages() {
        let url = "https://user:s3cr3t@host/x.git";
        let text =
            "fatal: unable to access 'https://user:s3cr3t@host/x.git/': no; user:s3cr3t; s3cr3t";
        let out = scrub(text, url);
        assert!(!out.contains("s3cr3t"), "{out}");
        assert!(out.contains("https://***@host/x.git/"), "{out}");
        assert_eq!(scrub("plain", "/srv/repo"), "plain");
    }
}
