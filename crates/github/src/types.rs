//! The shapes exchanged with GitHub's deployments, statuses and CI APIs, reduced to
//! what chima and faseng use.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// GitHub's limit on a deployment status description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 140;

/// The body of `POST /repos/{owner}/{repo}/deployments`, hubot-deploy compatible
/// (hubot-deploy's payload fields) so that heaven-era consumers of the deployment still work.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeploymentBody {
    /// The branch, tag or sha to deploy (`ref` on the wire).
    #[serde(rename = "ref")]
    pub git_ref: String,
    /// `deploy`, `deploy:migrations`, ...
    pub task: String,
    /// Whether GitHub may merge the default branch into the ref first (it answers 202
    /// then, and creates nothing).
    pub auto_merge: bool,
    /// `None` = GitHub checks all contexts (omitted from the body); `Some(vec![])` =
    /// none (sent as `[]`, which is how a forced deploy skips the checks).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub required_contexts: Option<Vec<String>>,
    /// The environment to deploy to.
    pub environment: String,
    /// Shown on GitHub; hubot-deploy writes who asked for what here.
    pub description: String,
    /// Whether GitHub should treat the environment as production.
    pub production_environment: bool,
    /// Whether the environment goes away (review apps); `None` omits it from the body.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transient_environment: Option<bool>,
    /// The deployment payload, read back from the `deployment` webhook.
    pub payload: serde_json::Value,
}

/// How GitHub answered a deployment request that it understood. Refusals (401, 403,
/// 404, 422...) are [`crate::GitHubError`]s instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateOutcome {
    /// 201: the deployment exists; its webhook is on its way.
    Created {
        /// The GitHub deployment id.
        id: i64,
        /// The commit the ref resolved to.
        sha: String,
        /// The deployment's API URL.
        url: String,
    },
    /// 202: GitHub merged the default branch into the ref; no deployment was created.
    /// Deploying again deploys the merge commit.
    AutoMerged {
        /// GitHub's message.
        message: String,
    },
    /// 409 because required contexts failed or are pending: they are named here
    /// (empty when GitHub did not list them).
    FailingContexts {
        /// GitHub's message.
        message: String,
        /// The contexts that are not green.
        contexts: Vec<ContextState>,
    },
    /// 409: merging the default branch into the ref conflicted.
    MergeConflict {
        /// GitHub's message.
        message: String,
    },
    /// GitHub failed (a 5xx, or no answer) on the create and on its one retry, and
    /// its list of the ref's deployments shows none from this request: nothing was
    /// created, nothing will run.
    NotCreated {
        /// What failed, attempt by attempt.
        message: String,
    },
    /// GitHub failed on the create and its deployments could not be listed to see
    /// whether it had created one anyway: the deployment may exist and run. Nothing
    /// was sent a second time.
    Unconfirmed {
        /// What failed, and why the deployments could not be listed.
        message: String,
    },
}

/// How a deployment made by one create request is recognised among the ref's
/// deployments when GitHub's answer to the create was lost (a 5xx, a timeout, a
/// connection reset after sending: GitHub may have created it all the same).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestId {
    /// The payload holds this value, unique to the request, at this JSON pointer:
    /// chima's signed request carries a random nonce at `/chima/request/nonce`.
    InPayload {
        /// A JSON pointer into the payload.
        pointer: String,
        /// The string found there.
        value: String,
    },
    /// Nothing unique in the payload (no signing key): a deployment of the same ref,
    /// environment and task, with the same description and an identical payload,
    /// created at most a minute before the request was sent. A request made twice
    /// within that minute by the same person for the same thing is taken for one.
    SamePayload,
}

impl RequestId {
    /// Where chima's signed request keeps its nonce.
    pub const NONCE_POINTER: &'static str = "/chima/request/nonce";

    /// The nonce of chima's signed request (`payload.chima.request.nonce`).
    pub fn nonce(nonce: &str) -> RequestId {
        RequestId::InPayload {
            pointer: Self::NONCE_POINTER.to_string(),
            value: nonce.to_string(),
        }
    }

    /// The id a body carries: its signed request's nonce when it has one, else
    /// [`RequestId::SamePayload`].
    pub fn of(body: &DeploymentBody) -> RequestId {
        match body
            .payload
            .pointer(Self::NONCE_POINTER)
            .and_then(serde_json::Value::as_str)
            .filter(|n| !n.is_empty())
        {
            Some(nonce) => RequestId::nonce(nonce),
            None => RequestId::SamePayload,
        }
    }
}

/// One commit status context and its state (`failure`, `pending`, `error`...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContextState {
    /// The context's name, e.g. `ci/circleci`.
    pub context: String,
    /// Its state as GitHub reports it.
    pub state: String,
}

/// One deployment as `deploys <app>` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentSummary {
    /// The GitHub deployment id.
    pub id: i64,
    /// The commit deployed.
    pub sha: String,
    /// The ref as requested.
    pub git_ref: String,
    /// `deploy`, `deploy:migrations`, ...
    pub task: String,
    /// The environment deployed to.
    pub environment: String,
    /// Login of who created it (for chat deploys: the bot's account).
    pub creator: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// The state of its latest status; `None` when it has no status yet.
    pub state: Option<String>,
    /// The deployment's own description (hubot-deploy writes who asked for what).
    pub description: Option<String>,
}

/// A deployment status to post.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusBody {
    /// The new state.
    pub state: StatusState,
    /// Where the deployment's log is (faseng's log page); GitHub links it as "View logs".
    pub log_url: Option<String>,
    /// Where the deployed environment can be reached, if the app says.
    pub environment_url: Option<String>,
    /// Cut to [`MAX_DESCRIPTION_CHARS`] before sending: GitHub refuses longer ones
    /// with a 422, and a long failure reason must not cost the status.
    pub description: Option<String>,
    /// `None` leaves GitHub's default (true: a success marks older ones inactive).
    pub auto_inactive: Option<bool>,
}

/// The states of a deployment status, as GitHub names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatusState {
    /// Waiting to run.
    Queued,
    /// Running.
    InProgress,
    /// Finished successfully.
    Success,
    /// The deploy itself failed.
    Failure,
    /// The deploy errored or was cancelled: it did not fail on its own.
    Error,
    /// Superseded by a later successful deployment.
    Inactive,
    /// GitHub's legacy "not started yet" state.
    Pending,
}

impl StatusState {
    /// The name GitHub uses on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            StatusState::Queued => "queued",
            StatusState::InProgress => "in_progress",
            StatusState::Success => "success",
            StatusState::Failure => "failure",
            StatusState::Error => "error",
            StatusState::Inactive => "inactive",
            StatusState::Pending => "pending",
        }
    }
}

impl std::fmt::Display for StatusState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The CI state of a ref: commit statuses and check runs together, every page of
/// both (at most [`crate::MAX_PAGES`] pages each; when there are more, `state` is
/// `failure` or `pending`, never `success`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CiState {
    /// The commit the ref resolved to.
    pub sha: String,
    /// `success`, `pending`, `failure` or `error`, over statuses *and* check runs (see
    /// [`crate::GitHub::ci_state`]).
    pub state: String,
    /// Every commit status of the commit.
    pub statuses: Vec<CommitStatus>,
    /// Every check run of the commit.
    pub check_runs: Vec<CheckRun>,
}

/// One commit status (the legacy Status API: most CI services and hubot-deploy's
/// `required_contexts`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitStatus {
    /// The context's name, e.g. `ci/circleci`.
    pub context: String,
    /// `success`, `pending`, `failure` or `error`.
    pub state: String,
    /// Where the CI service shows the details.
    pub target_url: Option<String>,
    /// The CI service's one-line summary.
    pub description: Option<String>,
}

/// One check run (GitHub Actions and other GitHub Apps).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckRun {
    /// The check's name, e.g. an Actions job.
    pub name: String,
    /// `queued`, `in_progress`, `completed`...
    pub status: String,
    /// Set once completed: `success`, `failure`, `neutral`, `cancelled`, `skipped`,
    /// `timed_out`, `action_required`...
    pub conclusion: Option<String>,
    /// Where GitHub shows the run.
    pub html_url: Option<String>,
}

/// Cuts `text` to at most [`MAX_DESCRIPTION_CHARS`] characters, ending with `…` when
/// something was cut, so that readers see it was.
pub fn truncate_description(text: &str) -> String {
    if text.chars().count() <= MAX_DESCRIPTION_CHARS {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(MAX_DESCRIPTION_CHARS - 1).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_are_cut_on_characters_not_bytes() {
        assert_eq!(truncate_description("short"), "short");
        let exact = "é".repeat(140);
        assert_eq!(truncate_description(&exact), exact);
        let long = "é".repeat(141);
        let cut = truncate_description(&long);
        assert_eq!(cut.chars().count(), 140);
        assert!(cut.ends_with('…'));
    }

    #[test]
    fn required_contexts_none_is_omitted_and_empty_is_sent() {
        let mut body = DeploymentBody {
            git_ref: "main".into(),
            task: "deploy".into(),
            auto_merge: true,
            required_contexts: None,
            environment: "production".into(),
            description: "d".into(),
            production_environment: true,
            transient_environment: None,
            payload: serde_json::json!({}),
        };
        let v = serde_json::to_value(&body).unwrap_or_default();
        assert!(v.get("required_contexts").is_none());
        assert!(v.get("transient_environment").is_none());
        assert_eq!(v["ref"], "main");
        body.required_contexts = Some(vec![]);
        let v = serde_json::to_value(&body).unwrap_or_default();
        assert_eq!(v["required_contexts"], serde_json::json!([]));
    }
}
