//! The CI state of a ref: its commit statuses and check runs, every page of each
//! read, joined into one state.

use serde::Deserialize;
use serde_json::Value;

use super::{MAX_PAGES, check_repo};
use crate::GitHub;
use crate::client::{As, Call, Needs, segment};
use crate::error::{CallError, GitHubError};
use crate::types::{CheckRun, CiState, CommitStatus};

impl GitHub {
    /// The commit statuses and check runs of `git_ref`, and one state over both.
    ///
    /// GitHub's combined status covers commit statuses only, and says `pending` when
    /// there are none; a repository on GitHub Actions has check runs instead. The
    /// `state` here is: `failure` if any status failed or errored or any completed check
    /// run did not succeed (`failure`, `timed_out`, `cancelled`, `action_required`,
    /// `startup_failure`, `stale`); else `pending` if any is still running; else
    /// `success` when there is at least one; else GitHub's combined state as is.
    ///
    /// Both lists are paged by GitHub (30 a page unless asked, at most 100): every
    /// page is read, following `Link: rel="next"` (or `total_count` when a proxy
    /// dropped the header), up to [`MAX_PAGES`] each, one request after the other. A
    /// failing check run on page 2 counts as much as one on page 1.
    pub async fn ci_state(&self, repo: &str, git_ref: &str) -> Result<CiState, GitHubError> {
        let repo = check_repo(repo)?;
        if git_ref.trim().is_empty() {
            return Err(GitHubError::invalid("an empty ref has no CI state"));
        }
        let target = format!("ref `{git_ref}` of repository {repo}");
        let status_call = Call::get(
            format!(
                "/repos/{repo}/commits/{}/status?per_page=100",
                segment(git_ref)
            ),
            As::Repo(repo.to_string()),
            target.clone(),
            Needs::STATUSES_READ,
        );
        let checks_call = Call::get(
            format!(
                "/repos/{repo}/commits/{}/check-runs?per_page=100",
                segment(git_ref)
            ),
            As::Repo(repo.to_string()),
            target,
            Needs::CHECKS_READ,
        );

        #[derive(Deserialize)]
        struct RawStatus {
            context: String,
            state: String,
            target_url: Option<String>,
            description: Option<String>,
        }
        #[derive(Deserialize)]
        struct Combined {
            state: String,
            sha: String,
            #[serde(default)]
            statuses: Vec<RawStatus>,
        }
        #[derive(Deserialize)]
        struct RawCheck {
            name: String,
            status: String,
            conclusion: Option<String>,
            html_url: Option<String>,
        }
        #[derive(Deserialize)]
        struct Checks {
            #[serde(default)]
            check_runs: Vec<RawCheck>,
        }

        let status_pages = self.read_pages(&status_call, "statuses").await?;
        let checks_pages = self.read_pages(&checks_call, "check_runs").await?;
        let (status_truncated, checks_truncated) = (status_pages.truncated, checks_pages.truncated);

        let mut state = None;
        let mut sha = None;
        let mut statuses: Vec<CommitStatus> = Vec::new();
        for (page, call) in status_pages.bodies.into_iter().zip(&status_pages.calls) {
            let combined: Combined = from_page(page, call)?;
            state.get_or_insert(combined.state);
            sha.get_or_insert(combined.sha);
            statuses.extend(combined.statuses.into_iter().map(|s| CommitStatus {
                context: s.context,
                state: s.state,
                target_url: s.target_url.filter(|u| !u.is_empty()),
                description: s.description.filter(|d| !d.is_empty()),
            }));
        }
        let mut check_runs: Vec<CheckRun> = Vec::new();
        for (page, call) in checks_pages.bodies.into_iter().zip(&checks_pages.calls) {
            let checks: Checks = from_page(page, call)?;
            check_runs.extend(checks.check_runs.into_iter().map(|c| CheckRun {
                name: c.name,
                status: c.status,
                conclusion: c.conclusion,
                html_url: c.html_url,
            }));
        }
        let (Some(combined_state), Some(sha)) = (state, sha) else {
            return Err(GitHubError::unavailable(format!(
                "GitHub's answer to {} had no page",
                status_call.describe()
            )));
        };
        let mut state = overall_state(&combined_state, &statuses, &check_runs);
        if (status_truncated || checks_truncated) && state == "success" {
            // Unread pages may hold a failure: not green, whatever the pages read say.
            state = "pending".to_string();
        }
        Ok(CiState {
            sha,
            state,
            statuses,
            check_runs,
        })
    }

    /// Every page of a list, up to [`MAX_PAGES`], one request after the other. `items`
    /// names the array each page's object holds (for `total_count`).
    ///
    /// The next page is where `Link: rel="next"` says (GitHub's pagination guide:
    /// follow the header rather than build the URL,
    /// <https://docs.github.com/en/rest/using-the-rest-api/using-pagination-in-the-rest-api>);
    /// a link outside `GITHUB_API_URL` is not followed with our credentials. Without
    /// a header, `total_count` above what was read asks for `page=N+1`.
    async fn read_pages(&self, first: &Call, items: &str) -> Result<Pages, CallError> {
        let mut pages = Pages {
            bodies: Vec::new(),
            calls: Vec::new(),
            truncated: false,
        };
        let mut call = first.clone();
        let mut seen = 0usize;
        for page in 1..=MAX_PAGES {
            let reply = self.send_ok(&call).await?;
            let body: Value = reply.json(&call)?;
            let count = body
                .get(items)
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            seen += count;
            let total = body
                .get("total_count")
                .and_then(Value::as_u64)
                .and_then(|t| usize::try_from(t).ok());
            let next = match reply.next_link() {
                Some(link) => Some(self.api_path(&link, &call)?),
                None if count > 0 && total.is_some_and(|t| seen < t) => {
                    Some(with_page(&first.path, page + 1))
                }
                None => None,
            };
            pages.bodies.push(body);
            pages.calls.push(call.clone());
            match next {
                Some(path) => call.path = path,
                None => return Ok(pages),
            }
        }
        tracing::warn!(
            call = %first.describe(),
            pages = MAX_PAGES,
            "GitHub has more pages than are read; the rest is not counted"
        );
        pages.truncated = true;
        Ok(pages)
    }

    /// A `Link` target as a path under `api_url`.
    fn api_path(&self, link: &str, call: &Call) -> Result<String, CallError> {
        match link.strip_prefix(self.api_url()) {
            Some(rest) if rest.starts_with('/') => Ok(rest.to_string()),
            _ => Err(GitHubError::unavailable(format!(
                "GitHub's next page of {} is at {link}, outside GITHUB_API_URL ({}): not \
                 following it with our credentials",
                call.describe(),
                self.api_url()
            ))
            .into()),
        }
    }
}

/// The answers of a paged list, with the call each answered (for error messages).
struct Pages {
    bodies: Vec<Value>,
    calls: Vec<Call>,
    /// More pages than [`MAX_PAGES`]: some were not read.
    truncated: bool,
}

/// One page's JSON as `T`, or an error that says which call answered what.
fn from_page<T: serde::de::DeserializeOwned>(page: Value, call: &Call) -> Result<T, GitHubError> {
    serde_json::from_value(page).map_err(|e| {
        GitHubError::unavailable(format!(
            "GitHub's answer to {} could not be read: {e}",
            call.describe()
        ))
    })
}

/// `path` with its `page` query parameter set to `page`.
fn with_page(path: &str, page: usize) -> String {
    let (base, query) = path.split_once('?').unwrap_or((path, ""));
    let mut params: Vec<&str> = query
        .split('&')
        .filter(|p| !p.is_empty() && !p.starts_with("page="))
        .collect();
    let page = format!("page={page}");
    params.push(&page);
    format!("{base}?{}", params.join("&"))
}

/// One state over commit statuses and check runs (see [`GitHub::ci_state`]).
fn overall_state(combined: &str, statuses: &[CommitStatus], checks: &[CheckRun]) -> String {
    if checks.is_empty() {
        return combined.to_string();
    }
    let mut failed = false;
    let mut pending = false;
    for s in statuses {
        match s.state.as_str() {
            "failure" | "error" => failed = true,
            "pending" => pending = true,
            _ => {}
        }
    }
    for c in checks {
        if c.status != "completed" {
            pending = true;
            continue;
        }
        match c.conclusion.as_deref() {
            Some("success") | Some("neutral") | Some("skipped") => {}
            None => pending = true,
            Some(_) => failed = true,
        }
    }
    if failed {
        "failure".to_string()
    } else if pending {
        "pending".to_string()
    } else {
        "success".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_runs_join_the_combined_state() {
        let check = |status: &str, conclusion: Option<&str>| CheckRun {
            name: "build".into(),
            status: status.into(),
            conclusion: conclusion.map(String::from),
            html_url: None,
        };
        let status = |state: &str| CommitStatus {
            context: "ci".into(),
            state: state.into(),
            target_url: None,
            description: None,
        };
        assert_eq!(overall_state("pending", &[], &[]), "pending");
        assert_eq!(
            overall_state("success", &[status("success")], &[]),
            "success"
        );
        assert_eq!(
            overall_state("pending", &[], &[check("completed", Some("success"))]),
            "success"
        );
        assert_eq!(
            overall_state("pending", &[], &[check("in_progress", None)]),
            "pending"
        );
        assert_eq!(
            overall_state(
                "success",
                &[status("success")],
                &[check("completed", Some("timed_out"))]
            ),
            "failure"
        );
        assert_eq!(
            overall_state(
                "failure",
                &[status("failure")],
                &[check("completed", Some("skipped"))]
            ),
            "failure"
        );
    }
}
