//! The calls chima and faseng make, one method each. The small calls about a
//! repository (compare, default branch, tarball, clone credentials) are here;
//! deployments and their statuses are in `deployments`, CI state in `ci`.

mod ci;
mod deployments;

use chima_config::Secret;
use serde::Deserialize;

use crate::client::{self, As, Call, Needs, segment};
use crate::error::GitHubError;
use crate::{GitHub, base64};

/// The most pages read of one list (commit statuses, check runs): 1,000 entries at
/// 100 a page. A bound, so that a runaway `Link` chain cannot hold a deploy forever.
pub const MAX_PAGES: usize = 10;

impl GitHub {
    /// How `head` relates to `base` (GitHub's compare API): `ahead`, `behind`,
    /// `identical` or `diverged`. Auto-deploy never ships a commit behind the
    /// last one deployed.
    pub async fn compare(&self, repo: &str, base: &str, head: &str) -> Result<String, GitHubError> {
        let repo = check_repo(repo)?;
        let ok = |s: &str| {
            !s.is_empty()
                && s.len() <= 255
                && !s.starts_with('-')
                && !s.contains("..")
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"/_-.".contains(&b))
        };
        if !ok(base) || !ok(head) {
            return Err(GitHubError::invalid(format!(
                "cannot compare `{base}` with `{head}`"
            )));
        }
        #[derive(Deserialize)]
        struct Comparison {
            status: String,
        }
        let call = Call::get(
            format!("/repos/{repo}/compare/{base}...{head}"),
            As::Repo(repo.to_string()),
            format!("comparison of {base} and {head} in {repo}"),
            Needs::CONTENTS_READ,
        );
        let found: Comparison = self.send_ok(&call).await?.json(&call)?;
        Ok(found.status)
    }

    /// The repository's default branch (the ref when neither chat nor app.json names one).
    pub async fn default_branch(&self, repo: &str) -> Result<String, GitHubError> {
        let repo = check_repo(repo)?;
        #[derive(Deserialize)]
        struct Repository {
            default_branch: Option<String>,
        }
        let call = Call::get(
            format!("/repos/{repo}"),
            As::Repo(repo.to_string()),
            format!("repository {repo}"),
            Needs::METADATA_READ,
        );
        let found: Repository = self.send_ok(&call).await?.json(&call)?;
        found
            .default_branch
            .filter(|b| !b.is_empty())
            .ok_or_else(|| GitHubError::Rejected {
                status: 200,
                message: format!(
                    "repository {repo} has no default branch (is it empty?) ({})",
                    call.describe()
                ),
            })
    }

    /// Where Heroku can download the commit's tarball: the `Location` of
    /// `GET /repos/{repo}/tarball/{sha}`, not followed. It is a short-lived URL with its
    /// own token, so it works for private repositories without giving Heroku ours;
    /// it is not logged.
    pub async fn tarball_url(&self, repo: &str, sha: &str) -> Result<String, GitHubError> {
        let repo = check_repo(repo)?;
        if sha.trim().is_empty() {
            return Err(GitHubError::invalid("an empty sha has no tarball"));
        }
        let mut call = Call::get(
            format!("/repos/{repo}/tarball/{}", segment(sha)),
            As::Repo(repo.to_string()),
            format!("commit {sha} of repository {repo}"),
            Needs::CONTENTS_READ,
        );
        call.follow_redirects = false;
        let reply = self.send(&call).await?;
        if reply.status.is_redirection() {
            let location = reply
                .headers
                .get(hyper::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|l| !l.is_empty());
            let Some(location) = location else {
                return Err(GitHubError::unavailable(format!(
                    "GitHub answered {} without a Location to {}",
                    reply.status.as_u16(),
                    call.describe()
                )));
            };
            return Ok(absolute(self.api_url(), location));
        }
        if reply.status.is_success() {
            return Err(GitHubError::unavailable(format!(
                "GitHub sent the tarball itself instead of its address ({}): a proxy in \
                 between follows redirects",
                call.describe()
            )));
        }
        Err(client::refusal(&self.inner.creds, &call, &reply).into())
    }

    /// An `Authorization` header value for `git clone` over https of `repo`:
    /// `Basic base64(x-access-token:<token>)`, which GitHub accepts for personal tokens
    /// and installation tokens alike (git's own way, as `actions/checkout` does). With an
    /// App the installation token is fresh for at least five minutes.
    pub async fn git_auth_header(&self, repo: &str) -> Result<Secret, GitHubError> {
        let repo = check_repo(repo)?;
        let token = self.token_for(repo).await?;
        let pair = format!("x-access-token:{}", token.expose());
        Ok(Secret::new(format!(
            "Basic {}",
            base64::encode(pair.as_bytes())
        )))
    }
}

/// Checks `owner/name` (GitHub's characters: letters, digits, `-`, `_`, `.`).
pub(crate) fn check_repo(repo: &str) -> Result<&str, GitHubError> {
    let repo = repo.trim();
    let valid_part = |p: &str| {
        !p.is_empty()
            && p != "."
            && p != ".."
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    };
    match repo.split_once('/') {
        Some((owner, name)) if valid_part(owner) && valid_part(name) => Ok(repo),
        _ => Err(GitHubError::invalid(format!(
            "`{repo}` is not a GitHub repository in owner/name form"
        ))),
    }
}

/// A `Location` made absolute against the API's scheme and host.
fn absolute(api_url: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        return location.to_string();
    }
    let origin_end = api_url
        .find("://")
        .map(|i| i + 3)
        .and_then(|start| api_url[start..].find('/').map(|j| start + j))
        .unwrap_or(api_url.len());
    format!(
        "{}/{}",
        &api_url[..origin_end],
        location.trim_start_matches('/')
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repositories_must_be_owner_slash_name() {
        for ok in ["o/r", "acme-inc/web.app", "A_b/c-d.e"] {
            assert!(check_repo(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "o", "o/", "/r", "o/r/x", "o/r?x", "../r", "o/..", "o r/x", "o/r#",
        ] {
            assert!(
                matches!(check_repo(bad), Err(GitHubError::Invalid { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn locations_are_made_absolute() {
        assert_eq!(
            absolute("https://ghe.example.com/api/v3", "/_codeload/x"),
            "https://ghe.example.com/_codeload/x"
        );
        assert_eq!(
            absolute("https://api.github.com", "https://codeload.github.com/o/r"),
            "https://codeload.github.com/o/r"
        );
        assert_eq!(absolute("http://127.0.0.1:9", "/a"), "http://127.0.0.1:9/a");
    }
}
