//! Turning a parsed command into what to do, for one app, room and user:
//! aliases and defaults applied, permissions checked, in this order: unknown
//! app, unknown environment, room, user. Locks are checked by the caller,
//! which has the store.

use std::collections::HashMap;

use chima_command::{Deploy, closest};

use crate::error::Refusal;
use crate::load::Apps;
use crate::model::App;

/// Who typed the command, and where.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Requester {
    /// Chat user id (Slack `U...`), if the transport has one.
    pub user_id: Option<String>,
    /// The name shown to people (`user_name` in the payload).
    pub user_name: String,
    /// Channel id (Slack `C...`), if any.
    pub room_id: Option<String>,
    /// Channel name, without `#`.
    pub room_name: Option<String>,
}

impl Requester {
    /// How to refer to the room in a reply.
    pub fn room_label(&self) -> String {
        match (&self.room_name, &self.room_id) {
            (Some(n), _) => format!("#{}", n.trim_start_matches('#')),
            (None, Some(id)) => id.clone(),
            (None, None) => "this room".to_string(),
        }
    }
}

/// A deployment to create: the hubot-deploy compatible fields of the
/// deployment's body (see README.md, "Production: chima on GitHub, faseng
/// behind it"), before the transport adds `payload.notify`.
#[derive(Debug, Clone, PartialEq)]
pub struct DeploymentRequest {
    /// The app's name in app.json.
    pub app: String,
    /// The app's GitHub repository, `owner/name`.
    pub repository: String,
    /// `deploy`, or `deploy:<task>`.
    pub task: String,
    /// `None`: the repository's default branch (looked up by the caller).
    pub git_ref: Option<String>,
    /// The canonical environment name (aliases followed).
    pub environment: String,
    /// Host filter (`/hosts`), passed through in `payload.hosts`.
    pub hosts: Option<String>,
    /// The one-time password typed with the command, passed through in `payload.yubikey`.
    pub yubikey: Option<String>,
    /// `deploy!`: auto-merge and required contexts are skipped.
    pub force: bool,
    /// Whether GitHub may merge the default branch into the ref first (the app's
    /// `auto_merge`, `false` when forced).
    pub auto_merge: bool,
    /// `None`: every context must pass. `Some([])`: none (forced).
    pub required_contexts: Option<Vec<String>>,
    /// Whether GitHub should treat the environment as production.
    pub production_environment: bool,
    /// The environment's `transient` setting, when app.json has one.
    pub transient_environment: Option<bool>,
    /// `payload.config`: the app entry without secrets.
    pub config: serde_json::Value,
    /// Break-glass (`deploy!!`): the reason. It passes deploy windows and freezes,
    /// never permissions.
    pub emergency: Option<String>,
}

/// Where a command lands once aliases and defaults are applied.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// The app.
    pub app: &'a App,
    /// The canonical environment name.
    pub environment: &'a str,
}

impl Apps {
    /// Finds the app, with a suggestion when it is a typo.
    pub fn app(&self, name: &str) -> Result<&App, Refusal> {
        self.get(name).ok_or_else(|| {
            let names = self.names();
            Refusal::UnknownApp {
                app: name.to_string(),
                suggestion: closest(name, names.iter().map(String::as_str)).map(str::to_string),
                known: names,
            }
        })
    }

    /// Resolves app and environment: `env` as typed (an alias is followed), or
    /// the app's `default_environment`, or `fallback_env`
    /// (`CHIMA_DEFAULT_ENVIRONMENT`, default `production`).
    pub fn target<'a>(
        &'a self,
        app: &str,
        env: Option<&str>,
        fallback_env: &str,
    ) -> Result<Target<'a>, Refusal> {
        let app = self.app(app)?;
        let typed = env
            .map(str::to_string)
            .or_else(|| app.default_environment.clone())
            .unwrap_or_else(|| fallback_env.to_string());
        let environment = app.canonical_environment(&typed).ok_or_else(|| {
            let known = app.environment_names();
            let mut candidates = known.clone();
            candidates.extend(app.aliases.keys().cloned());
            Refusal::UnknownEnvironment {
                app: app.name.clone(),
                suggestion: closest(&typed, candidates.iter().map(String::as_str))
                    .map(str::to_string),
                env: typed.clone(),
                known,
            }
        })?;
        Ok(Target { app, environment })
    }

    /// Checks `allowed_rooms` and `allowed_users` for a command on `target`.
    ///
    /// A requester with a chat id (Slack) is matched by id only: against ids written in
    /// app.json, and against the ids [`Apps::resolve_chat_names`] found for the names
    /// written there. Never by the name the chat service shows now, which its owner can
    /// change. A requester without ids (the terminal) is matched by name. `github:`
    /// entries name GitHub logins, which only faseng can verify: they match no chat user.
    pub fn check_permissions(&self, target: Target<'_>, who: &Requester) -> Result<(), Refusal> {
        let app = target.app;
        if let Some(rooms) = &app.allowed_rooms {
            let room_ok = rooms.iter().any(|r| {
                let r = r.trim_start_matches('#');
                match &who.room_id {
                    Some(id) => id == r,
                    None => who
                        .room_name
                        .as_deref()
                        .is_some_and(|n| n.trim_start_matches('#').eq_ignore_ascii_case(r)),
                }
            });
            if !room_ok {
                return Err(Refusal::RoomNotAllowed {
                    app: app.name.clone(),
                    room: who.room_label(),
                    allowed: rooms.clone(),
                });
            }
        }
        if let Some(users) = app.allowed_users.get(target.environment) {
            let user_ok = users.iter().any(|u| {
                let u = u.trim().trim_start_matches('@');
                if u.starts_with("github:") {
                    return false;
                }
                match &who.user_id {
                    Some(id) => id == u,
                    None => who
                        .user_name
                        .trim_start_matches('@')
                        .eq_ignore_ascii_case(u),
                }
            });
            if !user_ok {
                return Err(Refusal::UserNotAllowed {
                    app: app.name.clone(),
                    env: target.environment.to_string(),
                    user: who.user_name.clone(),
                    allowed: users.clone(),
                });
            }
        }
        Ok(())
    }

    /// Adds, next to each user and room *name* in `allowed_users` and `allowed_rooms`,
    /// the id the chat service gives that name, from maps the caller read once
    /// (`users.list`, `conversations.list`; lowercase names). Returns the names that
    /// have no id there: they will match nobody who has an id. Resolving once, at start,
    /// means a later rename grants nothing: the id stays the one the name had then.
    pub fn resolve_chat_names(
        &mut self,
        users: &HashMap<String, String>,
        rooms: &HashMap<String, String>,
    ) -> Vec<String> {
        let mut unresolved = Vec::new();
        for app in self.apps.values_mut() {
            if let Some(list) = &mut app.allowed_rooms {
                add_ids(list, rooms, is_room_id, &mut unresolved);
            }
            for list in app.allowed_users.values_mut() {
                add_ids(list, users, is_user_id, &mut unresolved);
            }
            for rule in app.approvals.values_mut() {
                add_ids(&mut rule.from, users, is_user_id, &mut unresolved);
            }
        }
        unresolved.sort();
        unresolved.dedup();
        unresolved
    }

    /// Resolves a typed deploy into the deployment to create, or says why not.
    pub fn resolve_deploy(
        &self,
        d: &Deploy,
        who: &Requester,
        fallback_env: &str,
    ) -> Result<DeploymentRequest, Refusal> {
        let target = self.target(&d.app, d.env.as_deref(), fallback_env)?;
        self.check_permissions(target, who)?;
        let app = target.app;
        let env = target.environment;
        let (auto_merge, required_contexts) = if d.force {
            (false, Some(Vec::new()))
        } else if crate::is_dry_run(&d.task) {
            // A dry run changes nothing, the repository included: GitHub's auto-merge
            // would push a merge commit onto the ref. Its CI checks stay those of a
            // deploy, so that it says what the deploy would meet.
            (false, app.required_contexts.clone())
        } else {
            (app.auto_merge, app.required_contexts.clone())
        };
        Ok(DeploymentRequest {
            app: app.name.clone(),
            repository: app.repository.clone(),
            task: d.task.clone(),
            git_ref: d.git_ref.clone().or_else(|| app.default_ref.clone()),
            environment: env.to_string(),
            hosts: d.hosts.clone(),
            yubikey: d.otp.clone(),
            force: d.force,
            auto_merge,
            required_contexts,
            production_environment: app.is_production(env),
            transient_environment: app.environment(env).and_then(|e| e.transient),
            config: app.public_config(),
            emergency: d.emergency.clone(),
        })
    }
}

fn add_ids(
    list: &mut Vec<String>,
    ids: &HashMap<String, String>,
    is_id: fn(&str) -> bool,
    unresolved: &mut Vec<String>,
) {
    let mut added = Vec::new();
    for entry in list.iter() {
        let name = entry.trim().trim_start_matches(['#', '@']);
        if name.starts_with("github:") || is_id(name) {
            continue;
        }
        match ids.get(&name.to_ascii_lowercase()) {
            Some(id) => added.push(id.clone()),
            None => unresolved.push(name.to_string()),
        }
    }
    list.extend(added);
}

/// Slack user ids: `U...` or `W...` (Enterprise Grid), upper-case letters and digits.
pub fn is_user_id(s: &str) -> bool {
    is_slack_id(s, &['U', 'W', 'B'])
}

/// Slack conversation ids: `C...` (channels), `G...` (private, older), `D...` (DMs).
pub fn is_room_id(s: &str) -> bool {
    is_slack_id(s, &['C', 'G', 'D'])
}

fn is_slack_id(s: &str, first: &[char]) -> bool {
    s.len() >= 8
        && s.starts_with(first)
        && s.chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
}
