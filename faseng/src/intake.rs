//! What a `deployment` webhook may ask for (ARCHITECTURE.md, "Trust").
//!
//! faseng's own app.json is the only source of what runs, where it comes from and who
//! may run it. A deployment's payload is a request: it may choose among the apps that
//! deploy the deployment's repository (`payload.name`), name hosts, and, when chima
//! signed it, say which chat user asked and where to answer. Everything else in it is
//! kept for the record and ignored. The engine checks the app, environment, task,
//! permission and lock again when it runs the deployment, from what is decided here.

use chima_config::{App, Apps};
use chima_payload::{
    ChatTarget, ChimaRequest, DeploymentPayload, FasengNotes, Identity, IdentitySource, SigningKey,
    VerifyError,
};
use chima_store::NewDeployment;

use chima_github::webhook::DeploymentEvent;

/// The adapter name faseng's own auto-deploy signs its requests with.
pub const AUTO_DEPLOY_ADAPTER: &str = "auto-deploy";

/// A `deployment` event read once: its payload, the app and environment it is for by
/// faseng's app.json, and chima's request checked (signature, names this deployment, in
/// time). The webhook handler asks [`Intake::nonce`] whether a used nonce must be
/// looked up, then [`Intake::decide`]s.
pub struct Intake<'a> {
    ev: &'a DeploymentEvent,
    payload: DeploymentPayload,
    problems: Vec<String>,
    target: Target<'a>,
    verified: Option<Result<ChimaRequest, VerifyError>>,
}

impl<'a> Intake<'a> {
    pub fn read(apps: Option<&'a Apps>, key: Option<&SigningKey>, ev: &'a DeploymentEvent) -> Self {
        let (payload, problems) = DeploymentPayload::read(&ev.payload);
        let target = target(apps, ev, &payload);
        let verified = verify(key, ev, &payload, &target);
        Intake {
            ev,
            payload,
            problems,
            target,
            verified,
        }
    }

    /// The nonce of a request that verifies fully, so that the caller can check it was
    /// never used by another deployment. A copy that does not match this deployment
    /// never spends the nonce of the real request.
    pub fn nonce(&self) -> Option<&str> {
        match &self.verified {
            Some(Ok(r)) => Some(&r.nonce),
            _ => None,
        }
    }
}

/// Which app and environment a deployment is for, by faseng's own app.json.
struct Target<'a> {
    /// The app entry, when the repository has one the payload may choose.
    app: Option<&'a App>,
    /// Its name (or what the payload named, or the repository's name, for the
    /// engine's refusal to name).
    name: String,
    /// The canonical environment (aliases applied), else the environment as sent.
    environment: String,
}

fn target<'a>(
    apps: Option<&'a Apps>,
    ev: &DeploymentEvent,
    payload: &DeploymentPayload,
) -> Target<'a> {
    let candidates = apps
        .map(|a| a.for_repository(&ev.repository))
        .unwrap_or_default();
    let asked = payload
        .name
        .as_deref()
        .filter(|n| chima_command::is_slug(n))
        .map(str::to_ascii_lowercase);
    let app: Option<&App> = match (candidates.as_slice(), &asked) {
        ([], _) => None,
        (many, Some(name)) => many.iter().copied().find(|a| &a.name == name),
        ([one], None) => Some(one),
        // Several apps share the repository and the payload names none: the engine
        // says so; nothing is guessed.
        (_, None) => None,
    };
    let name = app.map(|a| a.name.clone()).or(asked).unwrap_or_else(|| {
        ev.repository
            .rsplit('/')
            .next()
            .unwrap_or(&ev.repository)
            .to_ascii_lowercase()
    });
    // Aliases resolve here, so that `prod` and `production` are one environment for the
    // one-at-a-time rule and for locks.
    let environment = app
        .and_then(|a| a.canonical_environment(&ev.environment))
        .map(str::to_string)
        .unwrap_or_else(|| ev.environment.clone());
    Target {
        app,
        name,
        environment,
    }
}

/// chima's request, when the payload carries one: verified (signature, names this
/// deployment, in time), or why not.
fn verify(
    key: Option<&SigningKey>,
    ev: &DeploymentEvent,
    payload: &DeploymentPayload,
    t: &Target<'_>,
) -> Option<Result<ChimaRequest, VerifyError>> {
    let created_at = ev
        .created_at
        .as_deref()
        .and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok())
        .map(|c| c.timestamp());
    payload.chima.as_ref().map(|s| {
        let key = key.ok_or(VerifyError::NoKey)?;
        key.verify(s)?;
        s.check_matches(&t.name, &t.environment, &ev.git_ref, &ev.task, created_at)?;
        Ok(s.request.clone())
    })
}

/// The deployment to queue. `replayed`: the request's nonce was used by another
/// deployment.
pub fn decide(intake: Intake<'_>, delivery: &str, replayed: bool) -> NewDeployment {
    let Intake {
        ev,
        payload,
        problems: mut notes,
        target: t,
        verified,
    } = intake;
    let (app, app_name, environment) = (t.app, t.name, t.environment);
    if payload.config.is_some() {
        notes.push(format!(
            "payload.config was ignored: faseng runs what its own app.json says for {}",
            ev.repository
        ));
    }
    let verified = match verified {
        Some(Ok(_)) if replayed => Some(Err(VerifyError::Replayed)),
        other => other,
    };
    let request = match verified {
        Some(Ok(r)) => Some(r),
        Some(Err(e)) => {
            notes.push(format!(
                "chima's request does not count ({e}); the deployment counts as GitHub user {}",
                ev.creator
            ));
            None
        }
        None => None,
    };

    let identity = match &request {
        Some(r) if r.adapter == AUTO_DEPLOY_ADAPTER => Identity::auto_deploy(),
        Some(r) => Identity::chat(
            IdentitySource::ChimaSigned,
            r.user_id.clone(),
            r.user_name.clone(),
        )
        .with_github_login(&ev.creator),
        None => {
            if let Some(named) = payload
                .notify
                .as_ref()
                .and_then(|n| n.user_name.clone().or_else(|| n.user.clone()))
                .filter(|n| !n.is_empty() && !n.eq_ignore_ascii_case(&ev.creator))
            {
                notes.push(format!(
                    "payload.notify names `{}`, which nobody verified: it grants nothing, and the deployment counts as GitHub user {}",
                    named.chars().take(60).collect::<String>(),
                    ev.creator
                ));
            }
            Identity::github(&ev.creator)
        }
    };

    let hosts = match &request {
        Some(r) => r.hosts.clone().filter(|h| !h.is_empty()),
        None => payload.hosts().map(str::to_string),
    };
    let chat = chat_target(app, request.as_ref(), &payload, &mut notes);
    let mut notify = vec!["github".to_string()];
    if chat.is_some() {
        notify.push("chat".to_string());
    }
    // Break-glass only from a verified chat request: never from a payload field.
    let emergency = request
        .as_ref()
        .filter(|r| r.adapter != AUTO_DEPLOY_ADAPTER)
        .and_then(|r| r.emergency.clone())
        .filter(|r| !r.trim().is_empty());
    let faseng_notes = FasengNotes {
        delivery: Some(delivery.to_string()),
        identity: identity.clone(),
        chat,
        notes,
        emergency,
    };
    NewDeployment {
        source_key: format!("github:{}", ev.deployment_id),
        requester: identity.display(),
        app: app_name,
        environment,
        repository: ev.repository.clone(),
        git_ref: ev.git_ref.clone(),
        sha: Some(ev.sha.clone()),
        task: ev.task.clone(),
        hosts,
        provider: app
            .map(|a| a.provider.to_string())
            .unwrap_or_else(|| "unknown".to_string()),
        payload: DeploymentPayload::with_notes(&ev.payload, &faseng_notes),
        github_deployment_id: Some(ev.deployment_id),
        notify,
        timeout_secs: None,
    }
}

/// Where the deployment's chat messages go: the room and thread of a verified chima
/// request; else `payload.notify.room` when it is the app's `notify_room` or one of its
/// `allowed_rooms`; else the app's `notify_room`. An unverified payload never picks an
/// arbitrary channel.
pub fn chat_target(
    app: Option<&App>,
    request: Option<&ChimaRequest>,
    payload: &DeploymentPayload,
    notes: &mut Vec<String>,
) -> Option<ChatTarget> {
    if let Some(r) = request
        && let Some(room) = r.room.clone().filter(|r| !r.is_empty())
    {
        return Some(ChatTarget {
            adapter: r.adapter.clone(),
            room,
            thread_ts: r.thread_ts.clone(),
        });
    }
    let fallback = app
        .and_then(|a| a.notify_room.clone())
        .filter(|r| !r.is_empty())
        .map(|room| ChatTarget {
            adapter: "slack".to_string(),
            room,
            thread_ts: None,
        });
    let Some(notify) = &payload.notify else {
        return fallback;
    };
    let Some(room) = notify
        .room
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty())
    else {
        return fallback;
    };
    let known = app.is_some_and(|a| {
        let bare = room.trim_start_matches('#');
        a.notify_room
            .as_deref()
            .is_some_and(|n| n.trim_start_matches('#') == bare)
            || a.allowed_rooms
                .as_ref()
                .is_some_and(|rooms| rooms.iter().any(|r| r.trim_start_matches('#') == bare))
    });
    if known {
        return Some(ChatTarget {
            adapter: notify
                .adapter
                .clone()
                .unwrap_or_else(|| "slack".to_string()),
            room: room.to_string(),
            thread_ts: notify.thread_ts.clone(),
        });
    }
    notes.push(format!(
        "payload.notify.room `{}` is not one of the app's rooms in faseng's app.json; messages go to {}",
        room.chars().take(60).collect::<String>(),
        fallback
            .as_ref()
            .map(|f| format!("its notify_room {}", f.room))
            .unwrap_or_else(|| "no room (it has no notify_room)".to_string())
    ));
    fallback
}
