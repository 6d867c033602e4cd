//! Approvals (app.json `approvals`, issue 18): the one place that decides whether a new
//! deployment waits for approval, and whether someone may approve or reject it. Every
//! creator of deployments (faseng's webhook intake and API, chima's embedded backend)
//! calls [`create`]; every approve or reject (chat commands in both modes, Slack's
//! buttons, faseng's API) calls [`decide`]. Both read the caller's own app.json, never
//! the payload; the approver is a verified [`Identity`], never a name in a message.

use chima_config::{App, ApprovalRule, Apps};
use chima_payload::{DeploymentPayload, Identity};
use chima_store::{
    Approval, ApprovalNeed, Created, Decided, Decision, Deployment, DeploymentState, NewDeployment,
    Store, StoreError,
};

/// The app of a deployment by this process's app.json: found by repository, the
/// deployment's app name choosing among the apps of that repository only (as the
/// engine finds it).
pub fn app_of<'a>(apps: &'a Apps, repository: &str, app: &str) -> Option<&'a App> {
    apps.for_repository(repository)
        .into_iter()
        .find(|a| a.name == app)
}

/// What a new deployment must wait for, by `apps` (`None` when nothing: no such
/// environment rule, a dry run, a lock task).
pub fn need(apps: Option<&Apps>, new: &NewDeployment) -> Option<ApprovalNeed> {
    let app = app_of(apps?, &new.repository, &new.app)?;
    let rule = app.approval_for(&new.environment, &new.task)?;
    Some(need_of(rule))
}

fn need_of(rule: &ApprovalRule) -> ApprovalNeed {
    ApprovalNeed {
        count: i32::try_from(rule.count).unwrap_or(i32::MAX),
        expires_in: rule.expires,
        note: rule.describe(),
    }
}

/// Creates `new`: waiting for approval when `apps` asks for one in its environment,
/// queued otherwise.
pub async fn create(
    store: &dyn Store,
    apps: Option<&Apps>,
    new: NewDeployment,
) -> Result<Created, StoreError> {
    match need(apps, &new) {
        Some(need) => store.create_awaiting_approval(new, need).await,
        None => store.create_deployment(new).await,
    }
}

/// Why an approve or reject was not recorded: each is a reply to the person who asked.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refusal {
    /// No deployment has this id.
    #[error("There is no deployment #{0}.")]
    Unknown(i64),
    /// The deployment does not wait for approval (any more).
    #[error("Deployment #{id} {}; there is nothing to {verb}.", state_words(.state, .reason.as_deref()))]
    NotAwaiting {
        /// The deployment.
        id: i64,
        /// Its state now.
        state: DeploymentState,
        /// Its reason now.
        reason: Option<String>,
        /// `approve` or `reject`.
        verb: &'static str,
    },
    /// The requester tried to approve their own deployment.
    #[error("You asked for deployment #{id}; someone else from {} must approve it.", list(.approvers))]
    OwnRequest {
        /// The deployment.
        id: i64,
        /// Who may approve.
        approvers: Vec<String>,
    },
    /// Not in the environment's `approvals.from`.
    #[error("{who} may not approve deployments of {app} to {env}; ask one of {}.", list(.approvers))]
    NotAnApprover {
        /// The person who asked, as people read it.
        who: String,
        /// The app.
        app: String,
        /// The environment.
        env: String,
        /// Who may approve.
        approvers: Vec<String>,
    },
    /// app.json has no approvals for the deployment's environment (any more).
    #[error(
        "{app} in {env} needs no approval in this app.json, so deployment #{id} cannot be approved here; cancel it and deploy again."
    )]
    NoRule {
        /// The deployment.
        id: i64,
        /// The app.
        app: String,
        /// The environment.
        env: String,
    },
    /// This approver had already decided.
    #[error("You already {}d deployment #{id}.", .earlier.as_str())]
    AlreadyDecided {
        /// The deployment.
        id: i64,
        /// The earlier decision.
        earlier: Decision,
    },
    /// The store failed.
    #[error("the deployment store failed: {0}")]
    Store(String),
}

impl Refusal {
    /// Whether it is the store's failure (not the person's request).
    pub fn is_failure(&self) -> bool {
        matches!(self, Refusal::Store(_))
    }
}

fn list(items: &[String]) -> String {
    match items {
        [] => "nobody".to_string(),
        [one] => one.clone(),
        many => many.join(", "),
    }
}

fn state_words(state: &DeploymentState, reason: Option<&str>) -> String {
    let why = reason
        .filter(|r| !r.trim().is_empty())
        .map(|r| format!(" ({})", r.trim_end_matches('.')))
        .unwrap_or_default();
    match state {
        DeploymentState::AwaitingApproval => "is waiting for approval".to_string(),
        DeploymentState::Queued => format!("is queued{why}"),
        DeploymentState::Running => "is running".to_string(),
        other => format!("has ended: {other}{why}"),
    }
}

/// Records `who`'s decision on deployment `id`, after checking by `apps` (this
/// process's app.json) that `who` may: listed in the environment's `approvals.from`
/// (matched as `allowed_users` entries are, by verified identity), and not the
/// requester (compared by identity key). `reason` goes with a rejection.
pub async fn decide(
    store: &dyn Store,
    apps: &Apps,
    id: i64,
    who: &Identity,
    decision: Decision,
    reason: Option<&str>,
) -> Result<Decided, Refusal> {
    let store_failed = |e: StoreError| Refusal::Store(e.to_string());
    let verb = decision.as_str();
    let d = store
        .get_deployment(id)
        .await
        .map_err(store_failed)?
        .ok_or(Refusal::Unknown(id))?;
    if d.state != DeploymentState::AwaitingApproval {
        return Err(not_awaiting(&d, verb));
    }
    let rule = app_of(apps, &d.repository, &d.app)
        .and_then(|a| a.approvals.get(&d.environment))
        .ok_or_else(|| Refusal::NoRule {
            id,
            app: d.app.clone(),
            env: d.environment.clone(),
        })?;
    let approvers = rule.approvers().to_vec();
    if is_requester(&d, who) {
        return Err(Refusal::OwnRequest { id, approvers });
    }
    if !who.is_listed(&rule.from) {
        return Err(Refusal::NotAnApprover {
            who: who.display(),
            app: d.app.clone(),
            env: d.environment.clone(),
            approvers,
        });
    }
    let decided = store
        .decide_approval(id, &who.key(), &who.display(), decision, reason)
        .await
        .map_err(|e| match e {
            StoreError::NotFound { .. } => Refusal::Unknown(id),
            e => store_failed(e),
        })?;
    match decided {
        Decided::AlreadyDecided { earlier, .. } => Err(Refusal::AlreadyDecided {
            id,
            earlier: earlier.decision,
        }),
        Decided::NotAwaiting { deployment } => Err(not_awaiting(&deployment, verb)),
        other => Ok(other),
    }
}

fn not_awaiting(d: &Deployment, verb: &'static str) -> Refusal {
    Refusal::NotAwaiting {
        id: d.id,
        state: d.state,
        reason: d.reason.clone(),
        verb,
    }
}

/// Whether `who` asked for `d`: the verified identity recorded with it, by key (and
/// by GitHub login when both have one: chima's bot user is never the requester, since
/// a chat identity's key is its chat id).
pub fn is_requester(d: &Deployment, who: &Identity) -> bool {
    let Some(notes) = DeploymentPayload::notes_of(&d.payload) else {
        // A deployment without verified notes (made before identities were recorded)
        // is compared by name.
        return d.requester.eq_ignore_ascii_case(&who.display());
    };
    let requester = notes.identity;
    if requester.key() == who.key() {
        return true;
    }
    let github_only = |i: &Identity| i.chat_user_id.is_none() && i.chat_user_name.is_none();
    match (&requester.github_login, &who.github_login) {
        (Some(a), Some(b)) if github_only(&requester) || github_only(who) => {
            a.eq_ignore_ascii_case(b)
        }
        _ => false,
    }
}

/// The last check before a deployment runs (the engine's, whoever created it): when
/// `app` asks for approvals in its environment, it must have been created waiting for
/// them and have enough approvals, none of them a rejection. `Err` is the reason it
/// does not run.
pub fn check_approved(app: &App, d: &Deployment, approvals: &[Approval]) -> Result<(), String> {
    let Some(rule) = app.approval_for(&d.environment, &d.task) else {
        return Ok(());
    };
    let approved = approvals
        .iter()
        .filter(|a| a.decision == Decision::Approve)
        .count();
    let rejected = approvals.iter().any(|a| a.decision == Decision::Reject);
    let needed = usize::try_from(rule.count).unwrap_or(usize::MAX);
    if d.approvals_needed.is_none() || rejected || approved < needed {
        return Err(format!(
            "{} in {} needs {} before it runs, and deployment #{} has {approved} approval{}; nothing was run",
            d.app,
            d.environment,
            rule.describe().trim_start_matches("waiting for "),
            d.id,
            if approved == 1 { "" } else { "s" }
        ));
    }
    Ok(())
}
