//! Every text chima says in chat, written once, whichever backend did the work.
//! Pure functions of data: no I/O, no decisions about what to do next.

use chima_config::AutoDeployRule;
use chima_config::Zone;
use chima_engine::ops::Cancelled;
use chima_engine::policy::{Blocked, describe_freeze};
use chima_github::{CiState, CreateOutcome, DeploymentSummary, GitHubError};
use chima_outbox::deliver;
use chima_store::{AutoDeploy, AutoDeployPause, Deployment, DeploymentState, EVERY, Freeze, Lock};

pub fn help(name: &str) -> String {
    [
        format!("{name} deploy[:task][!] <app>[/<ref>] [to <env>[/<hosts>]] - deploy (! skips merge and CI checks)"),
        format!("{name} deploy:noop <app>[/<ref>] [to <env>] - dry run: the provider's dry run, nothing changes, no lock needed"),
        format!("{name} deploys <app>[/<ref>] [in <env>] - recent deployments"),
        format!("{name} where can i deploy <app> - environments and their locks"),
        format!("{name} lock <app> in <env> [for 2h] [reason] - stop others deploying there (for a while)"),
        format!("{name} unlock <app> in <env> - lift the lock"),
        format!("{name} cancel <app> in <env> - stop the running or queued deployment"),
        format!("{name} rollback <app> in <env> - redeploy the last good commit"),
        format!("{name} status <app>[/<ref>] - CI state of a ref"),
        format!("{name} autodeploy <app> [in <env> on|off [reason]] - auto-deploy on green CI: state, pause, resume"),
        format!("{name} deploy!! <app>[/<ref>] to <env> <reason> - break-glass: pass a deploy window or a freeze (announced, recorded as an emergency; also skips merge and CI checks)"),
        format!("{name} freeze <app>|all [in <env>] [for 3d|until 2026-12-24] [reason] - no deploys there until then (24h by default)"),
        format!("{name} unfreeze <app>|all [in <env>] - lift a freeze"),
        format!("{name} approve <id> - approve a deployment waiting for approval (not your own)"),
        format!("{name} reject <id> [reason] - reject a deployment waiting for approval"),
        format!("{name} deploy:version - my version"),
        format!("{name} help - this list"),
    ]
    .join("\n")
}

pub fn version() -> String {
    format!("chima {}", env!("CARGO_PKG_VERSION"))
}

/// Any failure of chima's own (the store, faseng's API): nothing more was done.
pub fn went_wrong(e: &anyhow::Error) -> String {
    format!("Something went wrong on my side, nothing more was done: {e:#}")
}

/// A command this mode cannot run (GitHub mode without faseng's API).
pub fn needs_faseng(command: &str) -> String {
    format!(
        "`{command}` needs faseng's API: set FASENG_URL and FASENG_API_TOKEN for chima. Nothing was done."
    )
}

/// A command the local mode cannot run.
pub fn not_in_local_mode(command: &str) -> String {
    format!("`{command}` is not available in the embedded mode; nothing was done.")
}

/// The first 7 characters of a sha.
pub fn short(sha: &str) -> &str {
    &sha[..sha.len().min(7)]
}

/// A sha that may be missing, shortened (`-` when missing).
fn short_or_dash(sha: Option<&str>) -> &str {
    sha.map(short).unwrap_or("-")
}

/// A span of time in whole units: `42s`, then `3m`, `2h`, `5d`; `fine` adds the next
/// smaller unit (`3m12s`, `2h5m`) below a day.
pub fn span(secs: i64, fine: bool) -> String {
    let s = secs.max(0);
    match (s, fine) {
        (0..60, _) => format!("{s}s"),
        (60..3600, true) => format!("{}m{}s", s / 60, s % 60),
        (60..3600, false) => format!("{}m", s / 60),
        (3600..86400, true) => format!("{}h{}m", s / 3600, (s % 3600) / 60),
        (3600..86400, false) => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

fn utc(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

fn why(reason: Option<&str>) -> &str {
    reason.unwrap_or("no reason given")
}

/// `: reason`, or nothing.
fn colon(reason: Option<&str>) -> String {
    reason.map(|r| format!(": {r}")).unwrap_or_default()
}

/// A deploy refused because someone else holds the lock.
pub fn locked_out(env: &str, lock: &Lock) -> String {
    format!(
        "{env} is locked by {}: {}. Nothing was deployed.",
        lock.holder,
        why(lock.reason.as_deref())
    )
}

pub fn queued(d: &Deployment) -> String {
    if d.state == DeploymentState::AwaitingApproval {
        return format!(
            "Deployment #{} of {}/{} to {} is {}. An approver says `approve {}` (or `reject {} [reason]`).",
            d.id,
            d.app,
            d.git_ref,
            d.environment,
            d.reason.as_deref().unwrap_or("waiting for approval"),
            d.id,
            d.id
        );
    }
    if chima_config::is_dry_run(&d.task) {
        return format!(
            "Dry run #{} of {}/{} to {} is queued: the provider's dry run, nothing will change.",
            d.id, d.app, d.git_ref, d.environment
        );
    }
    format!(
        "Deployment #{} of {}/{} to {} is queued.",
        d.id, d.app, d.git_ref, d.environment
    )
}

/// A dry run of a Heroku app, refused before anything is created.
pub fn heroku_no_dry_run(app: &str) -> String {
    format!(
        "Heroku builds have no dry run, so `deploy:noop` cannot run for {app} (a Heroku build releases when it succeeds). Nothing was created."
    )
}

/// ` [dry run]` after a `deploy:noop` in a list, else nothing.
fn dry_run_tag(task: &str) -> &'static str {
    if chima_config::is_dry_run(task) {
        " [dry run: nothing changed]"
    } else {
        ""
    }
}

/// One line of `deploys`: state, what, who, short sha, duration or age, and who
/// approved it (from `approvals`, any deployment's).
pub fn summary(d: &Deployment, approvals: &[chima_store::Approval]) -> String {
    let approvers: Vec<&str> = approvals
        .iter()
        .filter(|a| a.deployment_id == d.id && a.decision == chima_store::Decision::Approve)
        .map(|a| a.approver.as_str())
        .collect();
    let approved = match (&d.reason, approvers.is_empty()) {
        // A queued or running deployment's reason already says it.
        (Some(r), _) if r.starts_with("approved by ") => String::new(),
        (_, true) => String::new(),
        (_, false) => format!(" [approved by {}]", approvers.join(", ")),
    };
    let why = match (d.state, &d.reason) {
        (DeploymentState::Succeeded, _) | (_, None) => String::new(),
        (_, Some(r)) => format!(": {r}"),
    };
    let took = match (d.started_at, d.finished_at) {
        (Some(s), Some(f)) => format!(", took {}", span((f - s).num_seconds(), true)),
        (Some(s), None) => format!(
            ", running for {}",
            span((chrono::Utc::now() - s).num_seconds(), true)
        ),
        _ => String::new(),
    };
    let auto = d
        .payload
        .pointer("/auto_deploy/contexts")
        .and_then(|c| c.as_array())
        .map(|c| {
            let names: Vec<&str> = c.iter().filter_map(|v| v.as_str()).collect();
            format!(" [auto-deploy: {} green]", names.join(", "))
        })
        .unwrap_or_default();
    let glass = chima_payload::DeploymentPayload::emergency_of(&d.payload)
        .map(|r| format!(" [EMERGENCY (break-glass): {r}]"))
        .unwrap_or_default();
    format!(
        "#{} {} {}/{} to {} by {} ({}{took}){why}{approved}{auto}{glass}{}",
        d.id,
        d.state,
        d.app,
        d.git_ref,
        d.environment,
        d.requester,
        short_or_dash(d.sha.as_deref()),
        dry_run_tag(&d.task)
    )
}

/// `deploys` from the store (local, or faseng's).
pub fn history(app: &str, list: &[Deployment], approvals: &[chima_store::Approval]) -> String {
    if list.is_empty() {
        return format!("No deployments of {app} yet.");
    }
    list.iter()
        .map(|d| summary(d, approvals))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `deploys` from GitHub's own list (GitHub mode without faseng).
pub fn github_history(app: &str, list: &[DeploymentSummary]) -> String {
    if list.is_empty() {
        return format!("No deployments of {app} on GitHub yet.");
    }
    let now = chrono::Utc::now();
    list.iter()
        .map(|d| {
            format!(
                "#{} {} {}/{} ({}) to {} by {}, {} ago{}{}",
                d.id,
                d.state.as_deref().unwrap_or("no status"),
                app,
                d.git_ref,
                short(&d.sha),
                d.environment,
                d.creator,
                span((now - d.created_at).num_seconds(), false),
                if d.description.as_deref() == Some("auto-deploy") {
                    " [auto-deploy]"
                } else {
                    ""
                },
                dry_run_tag(&d.task)
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `where can i deploy`: the first line, then one per environment.
pub fn where_head(app: &str) -> String {
    format!("You can deploy {app} to:")
}

pub fn where_env(env: &str, lock: Option<&Lock>) -> String {
    match lock {
        Some(l) => format!(
            "  {env} (locked by {}: {})",
            l.holder,
            why(l.reason.as_deref())
        ),
        None => format!("  {env}"),
    }
}

/// One environment's auto-deploy state, for `autodeploy <app>` and `where`.
pub fn autodeploy_line(
    env: &str,
    rule: &AutoDeployRule,
    pause: Option<&AutoDeployPause>,
    last: Option<&AutoDeploy>,
) -> String {
    let what = format!(
        "deploys the head of {} when {} green",
        rule.git_ref.as_deref().unwrap_or("the default branch"),
        rule.required_contexts
            .as_ref()
            .map(|c| format!("{} are", c.join(", ")))
            .unwrap_or_else(|| "every reported context is".to_string())
    );
    let state = match pause {
        Some(p) => format!(
            "off (paused by {}{})",
            p.paused_by,
            colon(p.reason.as_deref())
        ),
        None => "on".to_string(),
    };
    let shipped = match last {
        Some(l) => format!(
            "; last shipped {} on {} ({})",
            short(&l.sha),
            utc(l.created_at),
            l.contexts
        ),
        None => "; nothing shipped yet".to_string(),
    };
    format!("  {env}: auto-deploy {state}, {what}{shipped}")
}

pub fn autodeploy_head(app: &str) -> String {
    format!("Auto-deploy of {app}:")
}

pub fn no_autodeploy(app: &str) -> String {
    format!("{app} has no auto-deploy in app.json.")
}

pub fn no_autodeploy_for(app: &str, env: &str) -> String {
    format!("{app} has no auto-deploy for {env} in app.json; nothing to switch.")
}

pub fn autodeploy_resumed(app: &str, env: &str, was: Option<&AutoDeployPause>) -> String {
    match was {
        Some(p) => format!(
            "Auto-deploy of {app} to {env} is on again (it was paused by {}).",
            p.paused_by
        ),
        None => format!("Auto-deploy of {app} to {env} was already on."),
    }
}

pub fn autodeploy_paused(app: &str, env: &str, reason: Option<&str>) -> String {
    format!(
        "Auto-deploy of {app} to {env} is off{}. Say `autodeploy {app} in {env} on` to resume.",
        colon(reason)
    )
}

pub fn locked(app: &str, env: &str, lock: &Lock) -> String {
    format!(
        "Locked {app} in {env}{}{}. Others cannot deploy there until `unlock {app} in {env}`.",
        colon(lock.reason.as_deref()),
        lock.expires_at
            .map(|e| format!(" (until {})", utc(e)))
            .unwrap_or_default(),
    )
}

pub fn already_locked(app: &str, env: &str, lock: &Lock) -> String {
    format!(
        "{app} in {env} is already locked by {}: {}.",
        lock.holder,
        why(lock.reason.as_deref())
    )
}

/// `unlock`: `was` is the lock lifted, if any; `yours` whether it was the user's.
pub fn unlocked(app: &str, env: &str, was: Option<&Lock>, yours: bool, user: &str) -> String {
    match was {
        Some(_) if yours => format!("Unlocked {app} in {env}."),
        Some(l) => format!(
            "Unlocked {app} in {env}. {}, your lock was lifted by {user}.",
            l.holder
        ),
        None => format!("{app} in {env} was not locked; nothing to do."),
    }
}

pub fn cancelled(app: &str, env: &str, c: &Cancelled) -> String {
    match c {
        Cancelled::Dequeued(d) => format!(
            "Cancelled deployment #{} of {}/{} to {} before it started.",
            d.id, d.app, d.git_ref, d.environment
        ),
        Cancelled::Stopping(d) => format!(
            "Stopping deployment #{} of {}/{} to {}: its processes are being killed.",
            d.id, d.app, d.git_ref, d.environment
        ),
        Cancelled::Nothing => {
            format!("Nothing is running or queued for {app} in {env}; nothing to cancel.")
        }
    }
}

/// No rollback: `current` is the one commit that ever deployed there, if any.
pub fn no_rollback(app: &str, env: &str, current: Option<&Deployment>) -> String {
    match current {
        None => {
            format!("Cannot roll back {app} in {env}: nothing ever deployed there successfully.")
        }
        Some(c) => format!(
            "Cannot roll back {app} in {env}: only one commit ({}) ever deployed there successfully; there is nothing before it to roll back to.",
            short_or_dash(c.sha.as_deref())
        ),
    }
}

/// What a rollback will do, in words.
pub fn rolling_back(current: &Deployment, target: &Deployment) -> String {
    format!(
        "Rolling back {} in {} from {} (#{}) to {}, deployed {} by {} as #{}.",
        target.app,
        target.environment,
        short_or_dash(current.sha.as_deref()),
        current.id,
        short_or_dash(target.sha.as_deref()),
        utc(target.finished_at.unwrap_or(target.created_at)),
        target.requester,
        target.id
    )
}

/// A deploy refused by a window or a freeze, before anything was created.
pub fn blocked(app: &str, env: &str, b: &Blocked) -> String {
    format!(
        "{b}. Nothing was deployed. In an emergency: `deploy!! {app} to {env} <reason>` (announced and recorded)."
    )
}

/// A break-glass deploy passing a window or a freeze, said before it is created.
pub fn breaking_glass(user: &str, env: &str, reason: &str, b: Option<&Blocked>) -> String {
    match b {
        Some(b) => format!("Break-glass by {user}: {reason}. It passes: {b}."),
        None => format!(
            "Break-glass by {user}: {reason}. ({env} is neither frozen nor closed now; it is recorded as an emergency all the same.)"
        ),
    }
}

/// The reply to an approve or reject that was recorded.
pub fn decided(decided: &chima_store::Decided, user: &str) -> String {
    use chima_store::Decided;
    match decided {
        Decided::Recorded {
            deployment: d,
            approvals,
        } => {
            let approved = approvals
                .iter()
                .filter(|a| a.decision == chima_store::Decision::Approve)
                .count();
            let needed = usize::try_from(d.approvals_needed.unwrap_or(1)).unwrap_or(1);
            format!(
                "{user} approved deployment #{} of {}/{} to {} ({approved} of {needed}); it waits for {} more.",
                d.id,
                d.app,
                d.git_ref,
                d.environment,
                needed.saturating_sub(approved)
            )
        }
        Decided::Approved { deployment: d, .. } => format!(
            "{user} approved deployment #{} of {}/{} to {}; it is queued and runs next.",
            d.id, d.app, d.git_ref, d.environment
        ),
        Decided::Rejected { deployment: d } => format!(
            "Deployment #{} of {}/{} to {} was {}. Nothing will run.",
            d.id,
            d.app,
            d.git_ref,
            d.environment,
            d.reason.as_deref().unwrap_or("rejected")
        ),
        Decided::AlreadyDecided {
            deployment: d,
            earlier,
        } => format!(
            "You already {}d deployment #{}.",
            earlier.decision.as_str(),
            d.id
        ),
        Decided::NotAwaiting { deployment: d } => format!(
            "Deployment #{} is {}; there is nothing to decide.",
            d.id, d.state
        ),
    }
}

/// What a freeze covers, in words: `web in production`, `every app in production`,
/// `web (every environment)`, `every app, every environment`.
pub fn freeze_scope(app: &str, env: &str) -> String {
    match (app, env) {
        (EVERY, EVERY) => "every app, every environment".to_string(),
        (EVERY, e) => format!("every app in {e}"),
        (a, EVERY) => format!("{a} (every environment)"),
        (a, e) => format!("{a} in {e}"),
    }
}

/// The freeze that was placed.
pub fn frozen(f: &Freeze, zone: &Zone) -> String {
    let app = if f.app == EVERY {
        "all"
    } else {
        f.app.as_str()
    };
    let lift = if f.environment == EVERY {
        format!("unfreeze {app}")
    } else {
        format!("unfreeze {app} in {}", f.environment)
    };
    format!(
        "Froze {} until {}{}. Deploys there are refused until then, auto-deploys included; `{lift}` lifts it, and in an emergency `deploy!! <app> to <env> <reason>` passes it.",
        freeze_scope(&f.app, &f.environment),
        zone.say(f.ends_at, chrono::Utc::now()),
        colon(f.reason.as_deref()),
    )
}

/// `unfreeze`: the freezes lifted, and those that still cover the scope.
pub fn unfrozen(what: &str, lifted: &[Freeze], still: &[(Freeze, Zone)], user: &str) -> String {
    let now = chrono::Utc::now();
    let mut lines = Vec::new();
    if lifted.is_empty() {
        lines.push(format!("{what} had no freeze of its own; nothing lifted."));
    }
    for f in lifted {
        lines.push(format!(
            "Lifted the freeze of {} (frozen by {}{}){}.",
            freeze_scope(&f.app, &f.environment),
            f.frozen_by,
            colon(f.reason.as_deref()),
            if f.frozen_by.eq_ignore_ascii_case(user) {
                String::new()
            } else {
                format!("; {}, your freeze was lifted by {user}", f.frozen_by)
            }
        ));
    }
    for (f, zone) in still {
        lines.push(format!(
            "Still frozen: {} is {}.",
            freeze_scope(&f.app, &f.environment),
            describe_freeze(f, zone, now)
        ));
    }
    lines.join("\n")
}

/// `where`: the environment's windows, now.
pub fn where_windows(describe: &str, open: bool, opens: Option<String>) -> String {
    match (open, opens) {
        (true, _) => format!("    windows: {describe}: open now"),
        (false, Some(t)) => format!("    windows: {describe}: closed, opens {t}"),
        (false, None) => format!("    windows: {describe}: closed, no window opens within a week"),
    }
}

/// `where`: a freeze that covers the environment.
pub fn where_freeze(f: &Freeze, zone: &Zone) -> String {
    format!("    {}", describe_freeze(f, zone, chrono::Utc::now()))
}

/// The announcement of a break-glass deployment in the app's `notify_room`.
pub fn emergency_announcement(d: &deliver::Deployment, reason: &str) -> String {
    format!(
        "EMERGENCY (break-glass): {} deploys {}/{} to {} (#{}) past its deploy windows or freezes: {reason}",
        d.requester, d.app, d.git_ref, d.environment, d.id
    )
}

/// The chat text for a state change (README, "Slack"); `None` for none.
///
/// `event_reason` is the reason as of the event (its payload's): an approval's event
/// says who approved, whatever the deployment says by the time it is delivered.
pub fn notification(
    d: &deliver::Deployment,
    state: deliver::DeploymentState,
    event_reason: Option<&str>,
) -> Option<String> {
    use deliver::DeploymentState;
    let dry_run = chima_config::is_dry_run(&d.task);
    let head = format!(
        "{}'s {} #{} of {}/{} to {}",
        d.requester,
        if dry_run { "dry run" } else { "deployment" },
        d.id,
        d.app,
        d.git_ref,
        d.environment
    );
    let reason = event_reason.or(d.reason.as_deref()).unwrap_or("");
    let head = match chima_payload::DeploymentPayload::emergency_of(&d.payload) {
        Some(r) => format!("{head} (EMERGENCY, break-glass: {r})"),
        None => head,
    };
    Some(match state {
        DeploymentState::AwaitingApproval if reason.starts_with("approved by ") => {
            format!("{head} was {reason}.")
        }
        // The reply to the command already said who may approve.
        DeploymentState::AwaitingApproval => return None,
        DeploymentState::Queued if reason.starts_with("approved by ") => {
            format!("{head} was {reason}; it is queued.")
        }
        DeploymentState::Queued => return None,
        DeploymentState::Rejected if reason.starts_with("rejected by ") => {
            format!("{head} was {reason}. Nothing was run.")
        }
        DeploymentState::Rejected => format!("{head} was rejected: {reason}. Nothing was run."),
        DeploymentState::Running => format!("{head} is running."),
        DeploymentState::Succeeded if dry_run => {
            format!("{head} was successful; nothing was changed.")
        }
        DeploymentState::Succeeded => format!("{head} was successful."),
        DeploymentState::Failed => format!(
            "{head} failed{}: {reason}.",
            d.exit_code
                .map(|c| format!(" (exit code {c})"))
                .unwrap_or_default()
        ),
        DeploymentState::Errored => format!("{head} could not run: {reason}."),
        DeploymentState::Cancelled => format!("{head} was cancelled: {reason}."),
    })
}

/// GitHub's answer to creating the deployment of `app`/`git_ref` to `env`, and
/// whether it counts as done.
pub fn github_created(
    app: &str,
    git_ref: &str,
    env: &str,
    task: &str,
    outcome: &CreateOutcome,
) -> (String, bool) {
    let what = format!("{app}/{git_ref} to {env}");
    match outcome {
        CreateOutcome::Created { id, sha, .. } if chima_config::is_dry_run(task) => (
            format!(
                "Created GitHub deployment #{id} for a dry run of {what} (commit {}, task {task}): nothing will change. faseng will post its progress and log link here.",
                short(sha)
            ),
            true,
        ),
        CreateOutcome::Created { id, sha, .. } => (
            format!(
                "Created GitHub deployment #{id} of {what} (commit {}). faseng will post its progress and log link here.",
                short(sha)
            ),
            true,
        ),
        CreateOutcome::AutoMerged { message } => (
            format!(
                "GitHub merged the default branch into {git_ref} first ({message}), so no deployment was created yet. Run the same command again once CI has passed on the merge commit."
            ),
            false,
        ),
        CreateOutcome::FailingContexts { contexts, message } => {
            let named = if contexts.is_empty() {
                message.clone()
            } else {
                contexts
                    .iter()
                    .map(|c| format!("{} ({})", c.context, c.state))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            (
                format!(
                    "GitHub refused to deploy {what}: required checks are not green: {named}. Fix them, or say `deploy!` to skip the checks. Nothing was deployed."
                ),
                false,
            )
        }
        CreateOutcome::MergeConflict { message } => (
            format!(
                "GitHub could not merge the default branch into {git_ref}: {message}. Resolve the conflict, or say `deploy!` to deploy without merging. Nothing was deployed."
            ),
            false,
        ),
        CreateOutcome::NotCreated { message } => (
            format!(
                "GitHub is failing: it did not create the deployment of {what}, on two tries ({message}). Nothing was deployed; try again in a few minutes."
            ),
            false,
        ),
        CreateOutcome::Unconfirmed { message } => (
            format!(
                "GitHub failed while creating the deployment of {what}, and I could not check whether it was created ({message}). It may still run: look at `deploys {app}` (or the repository's deployments on GitHub) before deploying again."
            ),
            false,
        ),
    }
}

/// A failed GitHub call: which credential or scope to fix.
pub fn github_error(e: &GitHubError, repo: &str) -> String {
    match e {
        GitHubError::NotFound { .. } => format!(
            "GitHub does not show {repo} to me ({e}). Check `repository` in app.json and that the token (or the GitHub App's installation) can see it. Nothing was deployed."
        ),
        GitHubError::Unavailable { .. } => {
            format!("I could not reach GitHub ({e}). Nothing was deployed; try again in a moment.")
        }
        _ => format!("{e}. Nothing was deployed."),
    }
}

/// `status <app>[/<ref>]`: the ref's CI state, a line per status and check run.
pub fn ci_status(app: &str, git_ref: &str, ci: &CiState) -> String {
    let mut lines = vec![format!(
        "{app}/{git_ref} ({}) is {}:",
        short(&ci.sha),
        ci.state
    )];
    let link = |u: Option<&str>| u.map(|u| format!(" {u}")).unwrap_or_default();
    for s in &ci.statuses {
        lines.push(format!(
            "  {} {}{}",
            s.state,
            s.context,
            link(s.target_url.as_deref())
        ));
    }
    for c in &ci.check_runs {
        lines.push(format!(
            "  {} {}{}",
            c.conclusion.as_deref().unwrap_or(&c.status),
            c.name,
            link(c.html_url.as_deref())
        ));
    }
    if ci.statuses.is_empty() && ci.check_runs.is_empty() {
        lines.push("  no commit statuses or check runs".to_string());
    }
    lines.join("\n")
}
