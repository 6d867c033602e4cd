//! The commands and the grammar that reads them from words.

use serde::ser::{Serialize, SerializeMap, Serializer};

use std::time::Duration;

use crate::duration::{format_duration, parse_duration};
use crate::error::ParseError;
use crate::freeze::{FreezeEnd, MAX_REASON_CHARS, format_span, parse_freeze_duration, parse_until};
use crate::validate::{check_hosts, check_ref, closest, is_hidden, is_otp, is_slug};

/// A deploy request as typed: `deploy[:task][!] <app>[/<ref>] [to <env>[/<hosts>]] [<otp>]`.
///
/// Fields hold what was typed, normalised (app, env, task and otp lowercased);
/// `None` means "not typed". Defaults and environment aliases are applied later,
/// by the config crate, which knows the app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deploy {
    /// `deploy`, or `deploy:<task>` such as `deploy:migrate`.
    pub task: String,
    /// `!`: skip auto-merge and required contexts.
    pub force: bool,
    pub app: String,
    pub git_ref: Option<String>,
    pub env: Option<String>,
    pub hosts: Option<String>,
    /// A one-time password, passed through in `payload.yubikey`.
    pub otp: Option<String>,
    /// `deploy!!`: break-glass, with its reason (required). It passes a deploy window
    /// or a freeze (never a permission or an approval), forces as `!` does, and is
    /// announced and recorded as an emergency.
    pub emergency: Option<String>,
}

/// One chat command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Deploy(Deploy),
    /// `deploys <app>[/<ref>] [in <env>]`: recent deployments.
    Deploys {
        app: String,
        git_ref: Option<String>,
        env: Option<String>,
    },
    /// `where can i deploy <app>`: environments and their locks.
    Where {
        app: String,
    },
    /// `lock <app> in <env> [for <duration>] [reason...]`.
    Lock {
        app: String,
        env: String,
        /// `for 2h`: the lock lapses by itself after this long.
        expires_in: Option<Duration>,
        reason: Option<String>,
    },
    /// `unlock <app> in <env>`.
    Unlock {
        app: String,
        env: String,
    },
    /// `cancel <app> in <env>`.
    Cancel {
        app: String,
        env: String,
    },
    /// `rollback <app> in <env>`.
    Rollback {
        app: String,
        env: String,
    },
    /// `status <app>[/<ref>]`: CI state of a ref.
    Status {
        app: String,
        git_ref: Option<String>,
    },
    /// `autodeploy <app> [in <env> on|off [reason...]]`: auto-deploy state, or
    /// pause/resume it for an environment.
    AutoDeploy {
        app: String,
        env: Option<String>,
        /// `Some(true)`: on, `Some(false)`: off, `None`: show.
        enabled: Option<bool>,
        reason: Option<String>,
    },
    /// `freeze <app>|all [in <env>] [for <duration>|until <date>] [reason...]`: no
    /// deploys there until it ends (break-glass aside).
    Freeze {
        /// `None`: every app (`freeze all`).
        app: Option<String>,
        /// `None`: every environment.
        env: Option<String>,
        /// `None`: the default length ([`crate::DEFAULT_FREEZE`]).
        ends: Option<FreezeEnd>,
        reason: Option<String>,
    },
    /// `unfreeze <app>|all [in <env>]`.
    Unfreeze {
        /// `None`: the freezes of every app (`unfreeze all`).
        app: Option<String>,
        /// `None`: in every environment.
        env: Option<String>,
    },
    /// `approve <id>`: approve a deployment waiting for approval (app.json `approvals`).
    Approve {
        /// The deployment's id, as `deploys` and the request's reply show it.
        id: i64,
    },
    /// `reject <id> [reason...]`: reject a deployment waiting for approval.
    Reject {
        /// The deployment's id.
        id: i64,
        /// Why, for everyone in the thread.
        reason: Option<String>,
    },
    /// `deploy:version`.
    Version,
    /// `help`.
    Help,
}

/// Every command word, for "did you mean" suggestions.
const COMMAND_WORDS: &[&str] = &[
    "deploy",
    "deploys",
    "where",
    "lock",
    "unlock",
    "cancel",
    "rollback",
    "status",
    "help",
    "deploy:version",
    "deploy:lock",
    "deploy:unlock",
    "autodeploy",
    "freeze",
    "unfreeze",
    "approve",
    "reject",
];

/// The word that stands for every app in `freeze all` / `unfreeze all`.
pub const ALL: &str = "all";

impl Command {
    /// The command's name as printed in JSON (`"command":"deploy"`).
    pub fn name(&self) -> &'static str {
        match self {
            Command::Deploy(_) => "deploy",
            Command::Deploys { .. } => "deploys",
            Command::Where { .. } => "where",
            Command::Lock { .. } => "lock",
            Command::Unlock { .. } => "unlock",
            Command::Cancel { .. } => "cancel",
            Command::Rollback { .. } => "rollback",
            Command::Status { .. } => "status",
            Command::AutoDeploy { .. } => "autodeploy",
            Command::Freeze { .. } => "freeze",
            Command::Unfreeze { .. } => "unfreeze",
            Command::Approve { .. } => "approve",
            Command::Reject { .. } => "reject",
            Command::Version => "version",
            Command::Help => "help",
        }
    }

    /// The app the command is about, if any.
    pub fn app(&self) -> Option<&str> {
        match self {
            Command::Deploy(d) => Some(&d.app),
            Command::Deploys { app, .. }
            | Command::Where { app }
            | Command::Lock { app, .. }
            | Command::Unlock { app, .. }
            | Command::Cancel { app, .. }
            | Command::Rollback { app, .. }
            | Command::Status { app, .. }
            | Command::AutoDeploy { app, .. } => Some(app),
            Command::Freeze { app, .. } | Command::Unfreeze { app, .. } => app.as_deref(),
            Command::Approve { .. } | Command::Reject { .. } | Command::Version | Command::Help => {
                None
            }
        }
    }

    /// The command written back in its canonical form, without the bot's name.
    /// Parsing the result gives back the same command.
    pub fn to_line(&self) -> String {
        fn with_ref(app: &str, r: &Option<String>) -> String {
            match r {
                Some(r) => format!("{app}/{r}"),
                None => app.to_string(),
            }
        }
        match self {
            Command::Deploy(d) => {
                let mut s = d.task.clone();
                if d.emergency.is_some() {
                    s.push_str("!!");
                } else if d.force {
                    s.push('!');
                }
                s.push(' ');
                s.push_str(&with_ref(&d.app, &d.git_ref));
                if let Some(env) = &d.env {
                    s.push_str(" to ");
                    s.push_str(env);
                    if let Some(h) = &d.hosts {
                        s.push('/');
                        s.push_str(h);
                    }
                }
                if let Some(otp) = &d.otp {
                    s.push(' ');
                    s.push_str(otp);
                }
                if let Some(r) = &d.emergency {
                    s.push(' ');
                    s.push_str(r);
                }
                s
            }
            Command::Deploys { app, git_ref, env } => {
                let mut s = format!("deploys {}", with_ref(app, git_ref));
                if let Some(env) = env {
                    s.push_str(" in ");
                    s.push_str(env);
                }
                s
            }
            Command::Where { app } => format!("where can i deploy {app}"),
            Command::Lock {
                app,
                env,
                expires_in,
                reason,
            } => {
                let mut s = format!("lock {app} in {env}");
                if let Some(d) = expires_in {
                    s.push_str(" for ");
                    s.push_str(&format_duration(*d));
                }
                if let Some(r) = reason {
                    s.push(' ');
                    s.push_str(r);
                }
                s
            }
            Command::Unlock { app, env } => format!("unlock {app} in {env}"),
            Command::Cancel { app, env } => format!("cancel {app} in {env}"),
            Command::Rollback { app, env } => format!("rollback {app} in {env}"),
            Command::Status { app, git_ref } => format!("status {}", with_ref(app, git_ref)),
            Command::AutoDeploy {
                app,
                env,
                enabled,
                reason,
            } => {
                let mut s = format!("autodeploy {app}");
                if let (Some(env), Some(on)) = (env, enabled) {
                    s.push_str(&format!(" in {env} {}", if *on { "on" } else { "off" }));
                    if let Some(r) = reason {
                        s.push(' ');
                        s.push_str(r);
                    }
                }
                s
            }
            Command::Freeze {
                app,
                env,
                ends,
                reason,
            } => {
                let mut s = format!("freeze {}", app.as_deref().unwrap_or(ALL));
                if let Some(env) = env {
                    s.push_str(" in ");
                    s.push_str(env);
                }
                if let Some(e) = ends {
                    s.push(' ');
                    s.push_str(&e.to_string());
                }
                if let Some(r) = reason {
                    s.push(' ');
                    s.push_str(r);
                }
                s
            }
            Command::Unfreeze { app, env } => {
                let mut s = format!("unfreeze {}", app.as_deref().unwrap_or(ALL));
                if let Some(env) = env {
                    s.push_str(" in ");
                    s.push_str(env);
                }
                s
            }
            Command::Approve { id } => format!("approve {id}"),
            Command::Reject { id, reason } => match reason {
                Some(r) => format!("reject {id} {r}"),
                None => format!("reject {id}"),
            },
            Command::Version => "deploy:version".to_string(),
            Command::Help => "help".to_string(),
        }
    }
}

/// Field order follows the grammar (README, "Commands"): `command` first, then what the
/// command has, with `null` for what was not typed.
impl Serialize for Command {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut m = serializer.serialize_map(None)?;
        m.serialize_entry("command", self.name())?;
        match self {
            Command::Deploy(d) => {
                m.serialize_entry("task", &d.task)?;
                m.serialize_entry("force", &d.force)?;
                m.serialize_entry("app", &d.app)?;
                m.serialize_entry("ref", &d.git_ref)?;
                m.serialize_entry("env", &d.env)?;
                m.serialize_entry("hosts", &d.hosts)?;
                m.serialize_entry("otp", &d.otp)?;
                // Only for break-glass: `"emergency": "reason"`.
                if let Some(r) = &d.emergency {
                    m.serialize_entry("emergency", r)?;
                }
            }
            Command::Deploys { app, git_ref, env } => {
                m.serialize_entry("app", app)?;
                m.serialize_entry("ref", git_ref)?;
                m.serialize_entry("env", env)?;
            }
            Command::Where { app } => m.serialize_entry("app", app)?,
            Command::Lock {
                app,
                env,
                expires_in,
                reason,
            } => {
                m.serialize_entry("app", app)?;
                m.serialize_entry("env", env)?;
                // Only when typed: `"for": "2h"`.
                if let Some(d) = expires_in {
                    m.serialize_entry("for", &format_duration(*d))?;
                }
                m.serialize_entry("reason", reason)?;
            }
            Command::Unlock { app, env }
            | Command::Cancel { app, env }
            | Command::Rollback { app, env } => {
                m.serialize_entry("app", app)?;
                m.serialize_entry("env", env)?;
            }
            Command::Status { app, git_ref } => {
                m.serialize_entry("app", app)?;
                m.serialize_entry("ref", git_ref)?;
            }
            Command::AutoDeploy {
                app,
                env,
                enabled,
                reason,
            } => {
                m.serialize_entry("app", app)?;
                m.serialize_entry("env", env)?;
                m.serialize_entry("state", &enabled.map(|on| if on { "on" } else { "off" }))?;
                m.serialize_entry("reason", reason)?;
            }
            Command::Freeze {
                app,
                env,
                ends,
                reason,
            } => {
                m.serialize_entry("app", app.as_deref().unwrap_or(ALL))?;
                m.serialize_entry("env", env)?;
                match ends {
                    Some(FreezeEnd::For(d)) => m.serialize_entry("for", &format_span(*d))?,
                    Some(FreezeEnd::Until(u)) => m.serialize_entry("until", &u.to_string())?,
                    None => {}
                }
                m.serialize_entry("reason", reason)?;
            }
            Command::Unfreeze { app, env } => {
                m.serialize_entry("app", app.as_deref().unwrap_or(ALL))?;
                m.serialize_entry("env", env)?;
            }
            Command::Approve { id } => m.serialize_entry("id", id)?,
            Command::Reject { id, reason } => {
                m.serialize_entry("id", id)?;
                m.serialize_entry("reason", reason)?;
            }
            Command::Version | Command::Help => {}
        }
        m.end()
    }
}

const PREPOSITIONS: &[&str] = &["to", "in", "on"];

fn is_preposition(w: &str) -> bool {
    PREPOSITIONS.iter().any(|p| p.eq_ignore_ascii_case(w))
}

/// Parses the words of a command (the bot's address already removed).
pub(crate) fn parse_words(words: &[&str]) -> Result<Command, ParseError> {
    let Some((first, rest)) = words.split_first() else {
        return Err(ParseError::Empty);
    };
    if let Some(c) = words.iter().flat_map(|w| w.chars()).find(|c| is_hidden(*c)) {
        return Err(ParseError::invalid(
            "command",
            format!("the line contains the control or invisible character {c:?}; retype it"),
        ));
    }
    let word = first.to_lowercase();
    match word.as_str() {
        "deploys" => parse_deploys(rest),
        "where" => parse_where(rest),
        "lock" | "deploy:lock" => {
            let (app, env, reason) = app_in_env("lock", rest, true)?;
            let (expires_in, reason) = lock_expiry(reason);
            Ok(Command::Lock {
                app,
                env,
                expires_in,
                reason,
            })
        }
        "unlock" | "deploy:unlock" => {
            let (app, env, _) = app_in_env("unlock", rest, false)?;
            Ok(Command::Unlock { app, env })
        }
        "cancel" => {
            let (app, env, _) = app_in_env("cancel", rest, false)?;
            Ok(Command::Cancel { app, env })
        }
        "rollback" => {
            let (app, env, _) = app_in_env("rollback", rest, false)?;
            Ok(Command::Rollback { app, env })
        }
        "status" => parse_status(rest),
        "autodeploy" | "auto-deploy" => parse_autodeploy(rest),
        "freeze" => parse_freeze(rest),
        "unfreeze" => parse_unfreeze(rest),
        "approve" => {
            let (id, reason) = deployment_id("approve", rest)?;
            if let Some(extra) = reason {
                return Err(ParseError::invalid(
                    "approve",
                    format!(
                        "`approve` takes only the deployment's number, but I read `{}` after it: `approve <id>`",
                        extra.chars().take(60).collect::<String>()
                    ),
                ));
            }
            Ok(Command::Approve { id })
        }
        "reject" => {
            let (id, reason) = deployment_id("reject", rest)?;
            Ok(Command::Reject { id, reason })
        }
        "deploy:version" => no_arguments("deploy:version", rest, Command::Version),
        "help" => Ok(Command::Help),
        w if w.starts_with("deploy") => parse_deploy(w, rest),
        _ => Err(ParseError::UnknownCommand {
            suggestion: closest(&word, COMMAND_WORDS.iter().copied()),
            word: first.to_string(),
        }),
    }
}

/// The longest reason kept with a rejection.
pub const MAX_REJECT_REASON: usize = 500;

/// `<id> [words...]` of `approve` and `reject`: a deployment number (`12` or `#12`),
/// positive, at most 18 digits, and the words after it.
fn deployment_id(
    command: &'static str,
    rest: &[&str],
) -> Result<(i64, Option<String>), ParseError> {
    let usage = match command {
        "reject" => "`reject <id> [reason]`",
        _ => "`approve <id>`",
    };
    let Some((word, rest)) = rest.split_first() else {
        return Err(ParseError::invalid(
            command,
            format!("which deployment? {usage}, with the number its request showed"),
        ));
    };
    let digits = word.strip_prefix('#').unwrap_or(word);
    let id =
        (!digits.is_empty() && digits.len() <= 18 && digits.bytes().all(|b| b.is_ascii_digit()))
            .then(|| digits.parse::<i64>().ok())
            .flatten()
            .filter(|id| *id > 0);
    let Some(id) = id else {
        return Err(ParseError::invalid(
            command,
            format!(
                "`{}` is not a deployment number: {usage}, like `{command} 12`",
                word.chars().take(60).collect::<String>()
            ),
        ));
    };
    let reason = (!rest.is_empty()).then(|| rest.join(" "));
    if let Some(r) = &reason
        && r.chars().count() > MAX_REJECT_REASON
    {
        return Err(ParseError::invalid(
            command,
            format!("the reason is longer than {MAX_REJECT_REASON} characters; say it shorter"),
        ));
    }
    Ok((id, reason))
}

fn no_arguments(name: &'static str, rest: &[&str], c: Command) -> Result<Command, ParseError> {
    match rest.first() {
        None => Ok(c),
        Some(w) => Err(ParseError::invalid(
            name,
            format!("`{name}` takes nothing after it, but I read `{w}`"),
        )),
    }
}

/// Reads `deploy`, `deploy!`, `deploy!!`, `deploy:task`, `deploy:task!` and
/// `deploy:task!!` into (task, force, break-glass).
fn deploy_word(w: &str) -> Result<(String, bool, bool), ParseError> {
    let (task, force, glass) = match (w.strip_suffix("!!"), w.strip_suffix('!')) {
        (Some(t), _) => (t, true, true),
        (None, Some(t)) => (t, true, false),
        (None, None) => (w, false, false),
    };
    if task.ends_with('!') {
        return Err(ParseError::invalid(
            "deploy",
            format!("`{w}` has too many `!`: `deploy!` forces, `deploy!!` is break-glass"),
        ));
    }
    let Some(sub) = task.strip_prefix("deploy") else {
        return Err(unknown(w));
    };
    if sub.is_empty() {
        return Ok((task.to_string(), force, glass));
    }
    // A dry run (`deploy:noop`) skips nothing: `!` skips GitHub's merge and CI checks
    // to *ship* a commit anyway, and a dry run ships nothing. Refused rather than
    // ignored, so that nobody believes it forced anything.
    if force && sub == ":noop" {
        return Err(ParseError::invalid(
            "deploy",
            "`deploy:noop` is a dry run and cannot be forced with `!` or `!!` (it changes nothing, so nothing stands in its way); say `deploy:noop` without them",
        ));
    }
    if matches!(sub, ":lock" | ":unlock" | ":version") {
        return Err(ParseError::invalid(
            "deploy",
            format!("`{task}` cannot be forced with `!`; say `{task}` without it"),
        ));
    }
    let Some(parts) = sub.strip_prefix(':') else {
        return Err(unknown(w));
    };
    let valid_part = |p: &str| {
        !p.is_empty()
            && !p.starts_with('-')
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    };
    if parts.split(':').all(valid_part) && task.len() <= 100 {
        Ok((task.to_string(), force, glass))
    } else {
        Err(ParseError::invalid(
            "deploy",
            format!(
                "`{w}` is not a task I can run: a task is `deploy:<name>`, with names of letters, digits, `-`, `_` and `.`"
            ),
        ))
    }
}

fn unknown(w: &str) -> ParseError {
    ParseError::UnknownCommand {
        word: w.to_string(),
        suggestion: closest(w, COMMAND_WORDS.iter().copied()),
    }
}

/// Splits `<app>[/<ref>]` and checks both halves.
fn app_and_ref(command: &'static str, word: &str) -> Result<(String, Option<String>), ParseError> {
    let (app, git_ref) = match word.split_once('/') {
        Some((a, r)) => (a, Some(r)),
        None => (word, None),
    };
    let app = checked_slug(command, "app", app)?;
    let git_ref = match git_ref {
        None => None,
        Some("") => {
            return Err(ParseError::invalid(
                command,
                format!("I read `{word}` but no ref after the `/`"),
            ));
        }
        Some(r) => {
            check_ref(r).map_err(|why| {
                ParseError::invalid(command, format!("`{r}` is not a ref I will deploy: {why}"))
            })?;
            Some(r.to_string())
        }
    };
    Ok((app, git_ref))
}

fn checked_slug(command: &'static str, what: &str, s: &str) -> Result<String, ParseError> {
    if is_slug(s) {
        Ok(s.to_ascii_lowercase())
    } else {
        let shown: String = s.chars().take(60).collect();
        Err(ParseError::invalid(
            command,
            format!(
                "`{shown}` is not an {what} name: names are letters, digits, `-`, `_` and `.`, and start with a letter or digit"
            ),
        ))
    }
}

fn parse_deploy(word: &str, rest: &[&str]) -> Result<Command, ParseError> {
    let (task, force, glass) = deploy_word(word)?;
    if glass {
        return parse_break_glass(word, task, rest);
    }
    let Some((target, rest)) = rest.split_first() else {
        return Err(ParseError::invalid(
            "deploy",
            format!("`{word}` needs an app: `{word} <app>[/<ref>] [to <environment>]`"),
        ));
    };
    let (app, git_ref) = app_and_ref("deploy", target)?;
    let mut rest = rest.iter().copied().peekable();
    let (mut env, mut hosts, mut otp) = (None, None, None);

    if let Some(w) = rest.next_if(|w| is_preposition(w)) {
        let Some(dest) = rest.next() else {
            return Err(ParseError::invalid(
                "deploy",
                format!("I read `{w}` but no environment after it"),
            ));
        };
        let (e, h) = match dest.split_once('/') {
            Some((e, h)) => (e, Some(h)),
            None => (dest, None),
        };
        env = Some(checked_slug("deploy", "environment", e)?);
        if let Some(h) = h {
            check_hosts(h).map_err(|why| {
                ParseError::invalid(
                    "deploy",
                    format!("`{h}` is not a host filter I accept: {why}"),
                )
            })?;
            hosts = Some(h.to_string());
        }
    }
    if let Some(w) = rest.next() {
        if is_otp(w) {
            otp = Some(w.to_ascii_lowercase());
        } else {
            return Err(ParseError::invalid(
                "deploy",
                unexpected_after_deploy(w, env.is_some()),
            ));
        }
    }
    if let Some(w) = rest.next() {
        return Err(ParseError::invalid(
            "deploy",
            format!(
                "I read the one-time password but then `{w}`, which I don't understand; nothing was deployed"
            ),
        ));
    }
    Ok(Command::Deploy(Deploy {
        task,
        force,
        app,
        git_ref,
        env,
        hosts,
        otp,
        emergency: None,
    }))
}

/// `deploy!! <app>[/<ref>] to <env>[/<hosts>] [<otp>] <reason...>`: the environment is
/// named (never a default) and the reason is required: it is announced and recorded.
fn parse_break_glass(word: &str, task: String, rest: &[&str]) -> Result<Command, ParseError> {
    let usage = format!("`{word} <app>[/<ref>] to <environment> <reason>`");
    let Some((target, rest)) = rest.split_first() else {
        return Err(ParseError::invalid(
            "deploy",
            format!("`{word}` needs an app, an environment and a reason: {usage}"),
        ));
    };
    let (app, git_ref) = app_and_ref("deploy", target)?;
    let (dest, rest) = match rest {
        [p, dest, rest @ ..] if is_preposition(p) => (*dest, rest),
        [p] if is_preposition(p) => {
            return Err(ParseError::invalid(
                "deploy",
                format!("I read `{p}` but no environment after it"),
            ));
        }
        _ => {
            return Err(ParseError::invalid(
                "deploy",
                format!("break-glass names its environment: {usage}; nothing was deployed"),
            ));
        }
    };
    let (e, h) = match dest.split_once('/') {
        Some((e, h)) => (e, Some(h)),
        None => (dest, None),
    };
    let env = checked_slug("deploy", "environment", e)?;
    let hosts = match h {
        Some(h) => {
            check_hosts(h).map_err(|why| {
                ParseError::invalid(
                    "deploy",
                    format!("`{h}` is not a host filter I accept: {why}"),
                )
            })?;
            Some(h.to_string())
        }
        None => None,
    };
    let (otp, reason) = match rest {
        [w, reason @ ..] if is_otp(w) => (Some(w.to_ascii_lowercase()), reason),
        reason => (None, reason),
    };
    if reason.is_empty() {
        return Err(ParseError::invalid(
            "deploy",
            format!(
                "break-glass needs a reason, which is announced and recorded: {usage}; nothing was deployed"
            ),
        ));
    }
    let reason = checked_reason("deploy", reason)?;
    Ok(Command::Deploy(Deploy {
        task,
        force: true,
        app,
        git_ref,
        env: Some(env),
        hosts,
        otp,
        emergency: Some(reason),
    }))
}

/// A reason as typed: its words joined by one space, at most [`MAX_REASON_CHARS`].
fn checked_reason(command: &'static str, words: &[&str]) -> Result<String, ParseError> {
    let reason = words.join(" ");
    let chars = reason.chars().count();
    if chars > MAX_REASON_CHARS {
        return Err(ParseError::invalid(
            command,
            format!("the reason is {chars} characters long; the limit is {MAX_REASON_CHARS}"),
        ));
    }
    Ok(reason)
}

/// What `freeze` and `unfreeze` cover: the app and the environment (`None`: every
/// one), and the words after them.
type Scope<'w> = (Option<String>, Option<String>, &'w [&'w str]);

/// `<app>|all [in <env>]`, the start of `freeze` and `unfreeze`.
fn scope<'w>(
    command: &'static str,
    rest: &'w [&'w str],
    usage: &str,
) -> Result<Scope<'w>, ParseError> {
    let Some((app, rest)) = rest.split_first() else {
        return Err(ParseError::invalid(
            command,
            format!("`{command}` needs an app, or `all`: {usage}"),
        ));
    };
    if app.contains('/') {
        return Err(ParseError::invalid(
            command,
            format!("`{command}` works on whole environments, not a ref: {usage}"),
        ));
    }
    let app = if app.eq_ignore_ascii_case(ALL) {
        None
    } else {
        Some(checked_slug(command, "app", app)?)
    };
    match rest {
        [p] if is_preposition(p) => Err(ParseError::invalid(
            command,
            format!("I read `{p}` but no environment after it"),
        )),
        [p, env, rest @ ..] if is_preposition(p) => {
            let env = if env.eq_ignore_ascii_case(ALL) {
                None
            } else {
                Some(checked_slug(command, "environment", env)?)
            };
            Ok((app, env, rest))
        }
        rest => Ok((app, None, rest)),
    }
}

fn parse_freeze(rest: &[&str]) -> Result<Command, ParseError> {
    let usage = "`freeze <app>|all [in <environment>] [for 3d|until 2026-12-24] [reason]`";
    let (app, env, mut rest) = scope("freeze", rest, usage)?;
    let mut ends = None;
    loop {
        let end = match rest {
            [w, value, ..] if w.eq_ignore_ascii_case("for") => {
                match parse_freeze_duration(&value.to_ascii_lowercase()) {
                    Ok(d) => Some(FreezeEnd::For(d)),
                    // `for the release` is a reason; `for 3x` a mistake.
                    Err(why) if value.starts_with(|c: char| c.is_ascii_digit()) => {
                        return Err(ParseError::invalid("freeze", why));
                    }
                    Err(_) => None,
                }
            }
            [w, value, ..] if w.eq_ignore_ascii_case("until") => match parse_until(value) {
                Ok(u) => Some(FreezeEnd::Until(u)),
                Err(why) if value.starts_with(|c: char| c.is_ascii_digit()) => {
                    return Err(ParseError::invalid("freeze", why));
                }
                Err(_) => None,
            },
            _ => None,
        };
        let Some(end) = end else { break };
        if let Some(first) = ends {
            return Err(ParseError::invalid(
                "freeze",
                format!(
                    "I read `{first}` and then `{end}`: say when the freeze ends once: {usage}"
                ),
            ));
        }
        ends = Some(end);
        rest = &rest[2..];
    }
    if let Some(p) = rest.first().filter(|p| is_preposition(p)) {
        return Err(ParseError::invalid(
            "freeze",
            if env.is_some() {
                format!(
                    "I read `{p}` again after the environment: name one environment, first: {usage}"
                )
            } else {
                format!(
                    "the environment goes right after the app (`freeze <app> in <environment> for 3d`), not after `{p}` further on: {usage}"
                )
            },
        ));
    }
    let reason = match rest {
        [] => None,
        words => Some(checked_reason("freeze", words)?),
    };
    Ok(Command::Freeze {
        app,
        env,
        ends,
        reason,
    })
}

fn parse_unfreeze(rest: &[&str]) -> Result<Command, ParseError> {
    let usage = "`unfreeze <app>|all [in <environment>]`";
    let (app, env, rest) = scope("unfreeze", rest, usage)?;
    if let Some(w) = rest.first() {
        return Err(ParseError::invalid(
            "unfreeze",
            format!("`unfreeze` takes nothing after the environment, but I read `{w}`: {usage}"),
        ));
    }
    Ok(Command::Unfreeze { app, env })
}

fn unexpected_after_deploy(w: &str, had_env: bool) -> String {
    if w.bytes().all(|b| b.is_ascii_digit()) {
        return format!(
            "`{w}` is not a one-time password: it has {} digits, not 6; nothing was deployed",
            w.len()
        );
    }
    let hint = if had_env {
        "after the environment only a one-time password may follow".to_string()
    } else if let Some(p) = closest(w, PREPOSITIONS.iter().copied()) {
        format!("did you mean `{p}`? Say `deploy <app> to <environment>`")
    } else {
        "say `deploy <app> to <environment>`".to_string()
    };
    format!("I don't understand `{w}` there: {hint}; nothing was deployed")
}

fn parse_deploys(rest: &[&str]) -> Result<Command, ParseError> {
    let Some((target, rest)) = rest.split_first() else {
        return Err(ParseError::invalid(
            "deploys",
            "`deploys` needs an app: `deploys <app> [in <environment>]`",
        ));
    };
    let (app, git_ref) = app_and_ref("deploys", target)?;
    let env = match rest {
        [] => None,
        [p, e] if is_preposition(p) => Some(checked_slug("deploys", "environment", e)?),
        [p] if is_preposition(p) => {
            return Err(ParseError::invalid(
                "deploys",
                format!("I read `{p}` but no environment after it"),
            ));
        }
        [w, ..] => {
            return Err(ParseError::invalid(
                "deploys",
                format!("I don't understand `{w}` there: say `deploys <app> [in <environment>]`"),
            ));
        }
    };
    Ok(Command::Deploys { app, git_ref, env })
}

fn parse_where(rest: &[&str]) -> Result<Command, ParseError> {
    let usage = "say `where can i deploy <app>`";
    let mut words: Vec<&str> = rest.to_vec();
    if words.last() == Some(&"?") {
        words.pop();
    }
    if let Some(last) = words.last_mut() {
        *last = last.strip_suffix('?').unwrap_or(last);
    }
    match words.as_slice() {
        [can, i, deploy, app]
            if can.eq_ignore_ascii_case("can")
                && i.eq_ignore_ascii_case("i")
                && deploy.eq_ignore_ascii_case("deploy") =>
        {
            Ok(Command::Where {
                app: checked_slug("where", "app", app)?,
            })
        }
        [can, i, deploy]
            if can.eq_ignore_ascii_case("can")
                && i.eq_ignore_ascii_case("i")
                && deploy.eq_ignore_ascii_case("deploy") =>
        {
            Err(ParseError::invalid(
                "where",
                format!("`where can i deploy` needs an app: {usage}"),
            ))
        }
        _ => Err(ParseError::invalid(
            "where",
            format!("I read `where` but not a question I know: {usage}"),
        )),
    }
}

/// Reads `<app> in <env> [reason...]` for lock, unlock, cancel and rollback.
fn app_in_env(
    command: &'static str,
    rest: &[&str],
    takes_reason: bool,
) -> Result<(String, String, Option<String>), ParseError> {
    let usage = if takes_reason {
        format!("`{command} <app> in <environment> [for <duration>] [reason]`")
    } else {
        format!("`{command} <app> in <environment>`")
    };
    let Some((app, rest)) = rest.split_first() else {
        return Err(ParseError::invalid(
            command,
            format!("`{command}` needs an app and an environment: {usage}"),
        ));
    };
    if app.contains('/') {
        return Err(ParseError::invalid(
            command,
            format!("`{command}` works on a whole environment, not a ref: {usage}"),
        ));
    }
    let app = checked_slug(command, "app", app)?;
    let (env, rest) = match rest {
        [] => {
            return Err(ParseError::invalid(
                command,
                format!("which environment? {usage}"),
            ));
        }
        [p] if is_preposition(p) => {
            return Err(ParseError::invalid(
                command,
                format!("I read `{p}` but no environment after it"),
            ));
        }
        [p, env, rest @ ..] if is_preposition(p) => (env, rest),
        [w, ..] => {
            return Err(ParseError::invalid(
                command,
                format!("I don't understand `{w}` there: {usage}"),
            ));
        }
    };
    let env = checked_slug(command, "environment", env)?;
    let reason = match (rest, takes_reason) {
        ([], _) => None,
        (words, true) => Some(words.join(" ")),
        ([w, ..], false) => {
            return Err(ParseError::invalid(
                command,
                format!("`{command}` takes nothing after the environment, but I read `{w}`"),
            ));
        }
    };
    Ok((app, env, reason))
}

/// `lock app in env for 2h db work`: the expiry, when the reason starts with
/// `for <duration>`, and the rest of the reason. `for` followed by anything else
/// is part of the reason (`lock app in prod for the release`).
fn lock_expiry(reason: Option<String>) -> (Option<Duration>, Option<String>) {
    let Some(r) = reason else { return (None, None) };
    let mut words = r.split(' ');
    if let (Some(w), Some(d)) = (words.next(), words.next())
        && w == "for"
        && let Ok(d) = parse_duration(d)
    {
        let rest: Vec<&str> = words.collect();
        return (Some(d), (!rest.is_empty()).then(|| rest.join(" ")));
    }
    (None, Some(r))
}

fn parse_status(rest: &[&str]) -> Result<Command, ParseError> {
    match rest {
        [] => Err(ParseError::invalid(
            "status",
            "`status` needs an app: `status <app>[/<ref>]`",
        )),
        [target] => {
            let (app, git_ref) = app_and_ref("status", target)?;
            Ok(Command::Status { app, git_ref })
        }
        [_, w, ..] => Err(ParseError::invalid(
            "status",
            format!("`status` takes one `<app>[/<ref>]`, but then I read `{w}`"),
        )),
    }
}

fn parse_autodeploy(rest: &[&str]) -> Result<Command, ParseError> {
    let usage = "say `autodeploy <app>` or `autodeploy <app> in <environment> on|off [reason]`";
    let Some((app, rest)) = rest.split_first() else {
        return Err(ParseError::invalid(
            "autodeploy",
            format!("`autodeploy` needs an app: {usage}"),
        ));
    };
    let app = checked_slug("autodeploy", "app", app)?;
    match rest {
        [] => Ok(Command::AutoDeploy {
            app,
            env: None,
            enabled: None,
            reason: None,
        }),
        [p, env, switch, reason @ ..] if is_preposition(p) => {
            let env = checked_slug("autodeploy", "environment", env)?;
            let enabled = match switch.to_ascii_lowercase().as_str() {
                "on" => true,
                "off" => false,
                other => {
                    return Err(ParseError::invalid(
                        "autodeploy",
                        format!("I read `{other}` where `on` or `off` goes: {usage}"),
                    ));
                }
            };
            if enabled && !reason.is_empty() {
                return Err(ParseError::invalid(
                    "autodeploy",
                    format!("`on` takes no reason, but I read `{}`", reason[0]),
                ));
            }
            Ok(Command::AutoDeploy {
                app,
                env: Some(env),
                enabled: Some(enabled),
                reason: (!reason.is_empty()).then(|| reason.join(" ")),
            })
        }
        [p, env] if is_preposition(p) => Err(ParseError::invalid(
            "autodeploy",
            format!("`on` or `off` for {env}? {usage}"),
        )),
        [w, ..] => Err(ParseError::invalid(
            "autodeploy",
            format!("I don't understand `{w}` there: {usage}"),
        )),
    }
}
