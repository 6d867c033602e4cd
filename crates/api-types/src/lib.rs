//! faseng's JSON API under `/api/` (README, "API"): every request and response
//! body, defined once. faseng's handlers serialize these; chima's client
//! deserializes the same types, so the two cannot drift apart. Field names are
//! the API's and do not change.

use chima_store::{AutoDeploy, AutoDeployPause, Decided, Deployment, Freeze, Lock, LogLine};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A deployment as the API shows it: the stored deployment and a signed link
/// to its log page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkedDeployment {
    #[serde(flatten)]
    pub deployment: Deployment,
    pub log_url: String,
}

/// `GET /api/deployments`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeploymentList {
    pub deployments: Vec<LinkedDeployment>,
}

/// `POST /api/deployments`: a deployment created directly (no GitHub). The app
/// must be in faseng's app.json; `key` makes the call idempotent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreateDeployment {
    pub app: String,
    pub environment: String,
    #[serde(rename = "ref")]
    pub git_ref: String,
    #[serde(default)]
    pub sha: Option<String>,
    #[serde(default = "default_task")]
    pub task: String,
    #[serde(default)]
    pub hosts: Option<String>,
    pub requester: String,
    /// The requester's identity key (`chat:<id>`), as the token holder vouches for it.
    #[serde(default)]
    pub requester_id: Option<String>,
    pub key: String,
    #[serde(default)]
    pub payload: Option<Value>,
    /// Break-glass: the reason to pass a deploy window or a freeze, which the token
    /// holder vouches for (as for `requester`). Without it, a closed or frozen
    /// environment is refused with 409 before anything is created.
    #[serde(default)]
    pub emergency: Option<String>,
}

fn default_task() -> String {
    "deploy".to_string()
}

/// The answer to `POST /api/deployments` (201, or 200 when `key` was seen before).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Created {
    pub already_existed: bool,
    pub deployment: LinkedDeployment,
}

/// Who does it: the body of a cancel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct By {
    pub by: String,
}

/// The answer to a cancel (`result`): `finished` (409) only when one deployment
/// was named by id, `nothing` only for an environment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum CancelAnswer {
    /// It had not started: it is cancelled.
    Cancelled { deployment: LinkedDeployment },
    /// It runs: its processes are being killed.
    Stopping { deployment: LinkedDeployment },
    /// It had already ended.
    Finished { deployment: LinkedDeployment },
    /// Nothing runs or waits there.
    Nothing,
}

/// `POST /api/deployments/{id}/approve` and `.../reject`: who decides, as the caller
/// (chima, holding FASENG_API_TOKEN) verified them. faseng checks them against its own
/// app.json's `approvals` (listed in `from`, not the requester).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionRequest {
    /// The approver as people read them.
    pub approver: String,
    /// The approver's chat user id (Slack `U...`), when the chat has ids.
    #[serde(default)]
    pub approver_id: Option<String>,
    /// Why (a rejection's reason).
    #[serde(default)]
    pub reason: Option<String>,
}

/// The answer to an approve or reject: `decided` (200), or `refused` (404 unknown
/// deployment, 403 not an approver or the requester, 409 nothing to decide or already
/// decided) with the reply to show.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "answer", rename_all = "snake_case")]
pub enum DecisionAnswer {
    /// Recorded, with what followed from it.
    Decided { decided: Box<Decided> },
    /// Not recorded, and why, in words for the person who asked.
    Refused { error: String },
}

/// Why there is nothing to roll back to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoRollbackWhy {
    /// Nothing ever deployed there successfully.
    NeverDeployed,
    /// One commit only ever did (it is `current`).
    NothingBefore,
}

/// `GET /api/environments/{app}/{env}/rollback`: what a rollback would deploy
/// (`target`) instead of what is there (`current`), or `why` not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RollbackTarget {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<LinkedDeployment>,
    pub target: Option<LinkedDeployment>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why: Option<NoRollbackWhy>,
}

/// `GET /api/deployments/{id}/log`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLines {
    pub lines: Vec<LogLine>,
}

/// `GET /api/locks`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Locks {
    pub locks: Vec<Lock>,
}

/// `PUT /api/locks/{app}/{env}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockRequest {
    pub holder: String,
    /// The holder's identity key (`chat:<id>`, `github:<login>`): the lock yields to
    /// that identity only.
    #[serde(default)]
    pub holder_id: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
    /// Seconds until the lock lapses by itself.
    #[serde(default)]
    pub expires_in: Option<i64>,
}

/// The answer to a lock: `locked` (201) or `held` by someone else (409).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum LockAnswer {
    Locked { lock: Lock },
    Held { lock: Lock },
}

/// The answer to `DELETE /api/locks/{app}/{env}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum UnlockAnswer {
    /// The lock that was lifted.
    Unlocked {
        lock: Lock,
    },
    NotLocked,
}

/// `PUT /api/chat-routes/{source_key}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatRouteRequest {
    /// A slash command's `response_url`: Slack's (`https://hooks.slack.com/...`) or on
    /// the host of `SLACK_API_URL`.
    pub response_url: String,
    /// Seconds it stays usable: Slack's 30 minutes at most.
    pub expires_in_secs: i64,
    /// Posts left: Slack's 5 at most, less those chima used.
    pub uses_left: i32,
}

/// The answer to `PUT` and `DELETE /api/chat-routes/{source_key}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum ChatRouteAnswer {
    Routed { source_key: String, uses_left: i32 },
    Dropped,
}

/// `GET /api/autodeploy/{app}/{env}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutoDeployState {
    pub pause: Option<AutoDeployPause>,
    pub last: Option<AutoDeploy>,
}

/// `PUT /api/autodeploy/{app}/{env}`: pause auto-deploy there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PauseRequest {
    pub by: String,
    #[serde(default)]
    pub reason: Option<String>,
}

/// The answer to a pause.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Paused {
    pub pause: AutoDeployPause,
}

/// The answer to `DELETE /api/autodeploy/{app}/{env}`: the pause lifted, if any.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resumed {
    pub resumed: Option<AutoDeployPause>,
}

/// `GET /api/freezes`: every freeze in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Freezes {
    pub freezes: Vec<Freeze>,
}

/// `PUT /api/freezes/{app}/{env}` (`*` for every app or every environment): no deploys
/// there until `ends_at` (at most 90 days ahead), break-glass aside.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FreezeRequest {
    /// Who freezes, as people read it.
    pub by: String,
    /// Their identity key (`chat:<id>`, `github:<login>`).
    #[serde(default)]
    pub by_id: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
    pub ends_at: DateTime<Utc>,
}

/// The answer to a freeze (201).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Frozen {
    pub freeze: Freeze,
}

/// The answer to `DELETE /api/freezes/{app}` (every environment's) or
/// `DELETE /api/freezes/{app}/{env}` (that scope): the freezes lifted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unfrozen {
    pub lifted: Vec<Freeze>,
}

/// Any refusal or failure: `{"error": "..."}` with a 4xx or 5xx status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The bodies without a deployment in them, as the API has always written them.
    #[test]
    fn field_names_are_the_apis() {
        assert_eq!(
            as_json(&CancelAnswer::Nothing),
            json!({"result": "nothing"})
        );
        assert_eq!(
            as_json(&UnlockAnswer::NotLocked),
            json!({"result": "not_locked"})
        );
        assert_eq!(
            as_json(&RollbackTarget {
                current: None,
                target: None,
                why: Some(NoRollbackWhy::NeverDeployed)
            }),
            json!({"target": null, "why": "never_deployed"})
        );
        assert_eq!(
            as_json(&ChatRouteAnswer::Routed {
                source_key: "github:1".into(),
                uses_left: 3
            }),
            json!({"result": "routed", "source_key": "github:1", "uses_left": 3})
        );
        assert_eq!(
            as_json(&ChatRouteAnswer::Dropped),
            json!({"result": "dropped"})
        );
        let lock: LockRequest =
            serde_json::from_value(json!({"holder": "alice", "expires_in": 60})).unwrap();
        assert_eq!(lock.holder_id, None);
        assert_eq!(lock.expires_in, Some(60));
        let body: CreateDeployment = serde_json::from_value(
            json!({"app": "a", "environment": "e", "ref": "main", "requester": "r", "key": "k"}),
        )
        .unwrap();
        assert_eq!(body.task, "deploy");
    }

    fn as_json<T: Serialize>(v: &T) -> serde_json::Value {
        serde_json::to_value(v).unwrap()
    }
}
