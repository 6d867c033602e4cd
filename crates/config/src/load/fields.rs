//! The app.json fields that have a structure of their own: `environments`
//! (names or objects), `allowed_users`, `aliases`, `auto_deploy` and
//! `command`, each checked in full before the app is accepted.

use std::collections::{BTreeMap, BTreeSet};

use chima_command::{check_ref, closest, is_slug};
use serde_json::{Map, Value};

use super::report::{Checker, Fields};
use super::rules::{check_placeholders, kind, plain_env};
use crate::duration::parse_duration;
use crate::model::{ApprovalRule, AutoDeployRule, Environment};
use crate::windows::{DeployWindows, MAX_WINDOWS, Window, Zone};

/// The most approvers one environment lists: more is a mistake (a pasted member list).
pub const MAX_APPROVERS: usize = 100;

/// The longest approver entry: a Slack id is 11 characters, a GitHub login 39.
pub const MAX_APPROVER_CHARS: usize = 100;

impl Checker<'_> {
    pub(super) fn environments(&mut self, f: &Fields) -> Vec<Environment> {
        let Some(v) = f.get("environments") else {
            return vec![plain_env("production")];
        };
        let Some(items) = v.as_array() else {
            self.wrong_type(f, "environments", "a list of environment names", v);
            return Vec::new();
        };
        if items.is_empty() {
            self.error(Some(f.app), &[f.app, "environments"], "`environments` is empty: list at least one, or remove the field for `[\"production\"]`".into());
        }
        let mut out: Vec<Environment> = Vec::new();
        for item in items {
            let env = match item {
                Value::String(s) => Some(plain_env(s)),
                Value::Object(o) => self.environment_object(f, o),
                other => {
                    self.error(
                        Some(f.app),
                        &[f.app, "environments"],
                        format!(
                            "`environments` must hold names or {{\"name\": ...}} objects, not {}",
                            kind(other)
                        ),
                    );
                    None
                }
            };
            let Some(env) = env else { continue };
            if !is_slug(&env.name) || env.name.chars().any(|c| c.is_ascii_uppercase()) {
                self.error(Some(f.app), &[f.app, "environments"], format!(
                    "environment `{}` is not a name people can type: use lowercase letters, digits, `-`, `_` and `.`, starting with a letter or digit", env.name));
                continue;
            }
            if out.iter().any(|e| e.name == env.name) {
                self.error(
                    Some(f.app),
                    &[f.app, "environments"],
                    format!("environment `{}` is listed twice", env.name),
                );
                continue;
            }
            out.push(env);
        }
        out
    }

    pub(super) fn environment_object(
        &mut self,
        f: &Fields,
        o: &Map<String, Value>,
    ) -> Option<Environment> {
        let Some(name) = o.get("name").and_then(Value::as_str) else {
            self.error(
                Some(f.app),
                &[f.app, "environments"],
                "an environment object needs a `name` string".into(),
            );
            return None;
        };
        let mut env = plain_env(name);
        for (k, v) in o {
            let ok = match k.as_str() {
                "name" => true,
                "production" => v.as_bool().map(|b| env.production = Some(b)).is_some(),
                "auto_inactive" => v.as_bool().map(|b| env.auto_inactive = Some(b)).is_some(),
                "transient" => v.as_bool().map(|b| env.transient = Some(b)).is_some(),
                "provider_env_name" => v
                    .as_str()
                    .map(|s| env.provider_env_name = Some(s.to_string()))
                    .is_some(),
                other => {
                    let fields = [
                        "name",
                        "production",
                        "provider_env_name",
                        "auto_inactive",
                        "transient",
                    ];
                    let hint = closest(other, fields)
                        .map(|s| format!(", did you mean `{s}`?"))
                        .unwrap_or_default();
                    self.error(
                        Some(f.app),
                        &[f.app, "environments"],
                        format!("environment `{name}`: unknown field `{other}`{hint}"),
                    );
                    continue;
                }
            };
            if !ok {
                self.error(
                    Some(f.app),
                    &[f.app, "environments"],
                    format!(
                        "environment `{name}`: `{k}` has the wrong type ({})",
                        kind(v)
                    ),
                );
            }
        }
        Some(env)
    }

    pub(super) fn allowed_users(
        &mut self,
        f: &Fields,
        v: &Value,
        envs: &BTreeSet<String>,
    ) -> BTreeMap<String, Vec<String>> {
        let mut out = BTreeMap::new();
        let Some(map) = v.as_object() else {
            self.wrong_type(
                f,
                "allowed_users",
                "an object of environment -> list of users",
                v,
            );
            return out;
        };
        for (env, users) in map {
            if !envs.contains(env) {
                let hint = closest(env, envs.iter().map(String::as_str))
                    .map(|s| format!(" (did you mean `{s}`?)"))
                    .unwrap_or_default();
                let list: Vec<&str> = envs.iter().map(String::as_str).collect();
                self.error(Some(f.app), &[f.app, "allowed_users", env], format!(
                    "`allowed_users` names `{env}`, which is not one of the app's environments{hint}: {}", list.join(", ")));
                continue;
            }
            match users.as_array().map(|a| a.iter().map(Value::as_str).collect::<Option<Vec<_>>>()) {
                Some(Some(list)) if !list.is_empty() => {
                    out.insert(env.clone(), list.into_iter().map(str::to_string).collect());
                }
                Some(Some(_)) => self.error(Some(f.app), &[f.app, "allowed_users", env], format!(
                    "`allowed_users.{env}` is empty, so nobody could deploy there; remove it to allow everyone, or lock the environment")),
                _ => self.error(Some(f.app), &[f.app, "allowed_users", env], format!(
                    "`allowed_users.{env}` must be a list of user ids or names")),
            }
        }
        out
    }

    pub(super) fn aliases(
        &mut self,
        f: &Fields,
        v: &Value,
        envs: &BTreeSet<String>,
    ) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let Some(map) = v.as_object() else {
            self.wrong_type(f, "aliases", "an object of alias -> environment", v);
            return out;
        };
        for (alias, target) in map {
            let Some(target) = target.as_str() else {
                self.error(
                    Some(f.app),
                    &[f.app, "aliases", alias],
                    format!("alias `{alias}` must name an environment as a string"),
                );
                continue;
            };
            if !is_slug(alias) || alias.chars().any(|c| c.is_ascii_uppercase()) {
                self.error(Some(f.app), &[f.app, "aliases", alias], format!(
                    "alias `{alias}` is not a name people can type (lowercase letters, digits, `-`, `_`, `.`)"));
            } else if envs.contains(alias) {
                self.error(Some(f.app), &[f.app, "aliases", alias], format!(
                    "alias `{alias}` is also an environment's name; an alias must not hide an environment"));
            } else if !envs.contains(target) {
                let list: Vec<&str> = envs.iter().map(String::as_str).collect();
                self.error(Some(f.app), &[f.app, "aliases", alias], format!(
                    "alias `{alias}` points to `{target}`, which is not one of the app's environments: {}", list.join(", ")));
            } else {
                out.insert(alias.clone(), target.to_string());
            }
        }
        out
    }

    pub(super) fn auto_deploy(
        &mut self,
        f: &Fields,
        v: &Value,
        envs: &BTreeSet<String>,
    ) -> BTreeMap<String, AutoDeployRule> {
        let mut out = BTreeMap::new();
        let Some(map) = v.as_object() else {
            self.wrong_type(
                f,
                "auto_deploy",
                "an object of environment -> {\"ref\", \"required_contexts\"}",
                v,
            );
            return out;
        };
        for (env, rule) in map {
            let at = [f.app, "auto_deploy", env.as_str()];
            if !envs.contains(env) {
                let list: Vec<&str> = envs.iter().map(String::as_str).collect();
                self.error(Some(f.app), &at, format!(
                    "`auto_deploy` names `{env}`, which is not one of the app's environments: {}", list.join(", ")));
                continue;
            }
            let Some(rule) = rule.as_object() else {
                self.error(Some(f.app), &at, format!("`auto_deploy.{env}` must be an object like {{\"ref\": \"main\", \"required_contexts\": [\"ci/build\"]}}"));
                continue;
            };
            let mut parsed = AutoDeployRule {
                git_ref: None,
                required_contexts: None,
            };
            for (k, v) in rule {
                match (k.as_str(), v) {
                    ("ref", Value::String(r)) => match check_ref(r) {
                        Ok(()) => parsed.git_ref = Some(r.clone()),
                        Err(why) => self.error(
                            Some(f.app),
                            &at,
                            format!(
                                "`auto_deploy.{env}.ref` `{r}` is not a ref I will deploy: {why}"
                            ),
                        ),
                    },
                    ("required_contexts", Value::Array(items)) => {
                        match items.iter().map(|i| i.as_str().filter(|s| !s.trim().is_empty()).map(str::to_string)).collect::<Option<Vec<_>>>() {
                            Some(list) if !list.is_empty() => parsed.required_contexts = Some(list),
                            _ => self.error(Some(f.app), &at, format!("`auto_deploy.{env}.required_contexts` must list at least one context name")),
                        }
                    }
                    (other, _) if other == "ref" || other == "required_contexts" => {
                        self.error(
                            Some(f.app),
                            &at,
                            format!(
                                "`auto_deploy.{env}.{other}` has the wrong type ({})",
                                kind(v)
                            ),
                        );
                    }
                    (other, _) => {
                        let hint = closest(other, ["ref", "required_contexts"])
                            .map(|s| format!(", did you mean `{s}`?"))
                            .unwrap_or_default();
                        self.error(
                            Some(f.app),
                            &at,
                            format!("`auto_deploy.{env}`: unknown field `{other}`{hint}"),
                        );
                    }
                }
            }
            out.insert(env.clone(), parsed);
        }
        out
    }

    /// `"windows": {"production": {"allow": ["Mon-Thu 09:00-17:00"], "timezone": "Asia/Hong_Kong"}}`.
    pub(super) fn windows(
        &mut self,
        f: &Fields,
        v: &Value,
        envs: &BTreeSet<String>,
    ) -> BTreeMap<String, DeployWindows> {
        let mut out = BTreeMap::new();
        let Some(map) = v.as_object() else {
            self.wrong_type(
                f,
                "windows",
                "an object of environment -> {\"allow\": [...], \"timezone\": ...}",
                v,
            );
            return out;
        };
        for (env, rule) in map {
            let at = [f.app, "windows", env.as_str()];
            if !envs.contains(env) {
                let hint = closest(env, envs.iter().map(String::as_str))
                    .map(|s| format!(" (did you mean `{s}`?)"))
                    .unwrap_or_default();
                let list: Vec<&str> = envs.iter().map(String::as_str).collect();
                self.error(Some(f.app), &at, format!(
                    "`windows` names `{env}`, which is not one of the app's environments{hint}: {}", list.join(", ")));
                continue;
            }
            let Some(rule) = rule.as_object() else {
                self.error(Some(f.app), &at, format!("`windows.{env}` must be an object like {{\"allow\": [\"Mon-Fri 09:00-17:00\"], \"timezone\": \"Europe/London\"}}"));
                continue;
            };
            let mut allow: Option<Vec<Window>> = None;
            let mut timezone = Zone::utc();
            let mut ok = true;
            for (k, v) in rule {
                match (k.as_str(), v) {
                    ("allow", Value::Array(items)) => {
                        if items.is_empty() {
                            self.error(Some(f.app), &at, format!("`windows.{env}.allow` is empty, so {env} could never be deployed; remove `windows.{env}` to allow any time, or freeze it"));
                            ok = false;
                            continue;
                        }
                        if items.len() > MAX_WINDOWS {
                            self.error(Some(f.app), &at, format!("`windows.{env}.allow` lists {} windows; the limit is {MAX_WINDOWS}", items.len()));
                            ok = false;
                            continue;
                        }
                        let mut list = Vec::new();
                        for item in items {
                            match item.as_str().map(Window::parse) {
                                Some(Ok(w)) => {
                                    if list.iter().any(|o: &Window| o.text == w.text) {
                                        self.error(
                                            Some(f.app),
                                            &at,
                                            format!(
                                                "`windows.{env}.allow` lists `{}` twice",
                                                w.text
                                            ),
                                        );
                                        ok = false;
                                    }
                                    list.push(w);
                                }
                                Some(Err(why)) => {
                                    let shown: String = item
                                        .as_str()
                                        .unwrap_or_default()
                                        .chars()
                                        .take(40)
                                        .collect();
                                    self.error(
                                        Some(f.app),
                                        &at,
                                        format!("`windows.{env}.allow`: window `{shown}`: {why}"),
                                    );
                                    ok = false;
                                }
                                None => {
                                    self.error(Some(f.app), &at, format!("`windows.{env}.allow` must hold strings like \"Mon-Fri 09:00-17:00\", not {}", kind(item)));
                                    ok = false;
                                }
                            }
                        }
                        allow = Some(list);
                    }
                    ("timezone", Value::String(name)) => match Zone::get(name) {
                        Ok(z) => timezone = z,
                        Err(why) => {
                            self.error(
                                Some(f.app),
                                &at,
                                format!("`windows.{env}.timezone`: {why}"),
                            );
                            ok = false;
                        }
                    },
                    (other @ ("allow" | "timezone"), _) => {
                        self.error(
                            Some(f.app),
                            &at,
                            format!("`windows.{env}.{other}` has the wrong type ({})", kind(v)),
                        );
                        ok = false;
                    }
                    (other, _) => {
                        let hint = closest(other, ["allow", "timezone"])
                            .map(|s| format!(", did you mean `{s}`?"))
                            .unwrap_or_default();
                        self.error(
                            Some(f.app),
                            &at,
                            format!("`windows.{env}`: unknown field `{other}`{hint}"),
                        );
                        ok = false;
                    }
                }
            }
            match allow {
                Some(allow) if ok => {
                    out.insert(env.clone(), DeployWindows { allow, timezone });
                }
                Some(_) => {}
                None if ok => self.error(Some(f.app), &at, format!("`windows.{env}` needs `allow`, a list of windows like \"Mon-Fri 09:00-17:00\"")),
                None => {}
            }
        }
        out
    }

    pub(super) fn approvals(
        &mut self,
        f: &Fields,
        v: &Value,
        envs: &BTreeSet<String>,
    ) -> BTreeMap<String, ApprovalRule> {
        let mut out = BTreeMap::new();
        let Some(map) = v.as_object() else {
            self.wrong_type(
                f,
                "approvals",
                "an object of environment -> {\"from\": [...], \"count\": 1, \"expires\": \"1h\"}",
                v,
            );
            return out;
        };
        for (env, rule) in map {
            let at = [f.app, "approvals", env.as_str()];
            if !envs.contains(env) {
                let hint = closest(env, envs.iter().map(String::as_str))
                    .map(|s| format!(" (did you mean `{s}`?)"))
                    .unwrap_or_default();
                let list: Vec<&str> = envs.iter().map(String::as_str).collect();
                self.error(Some(f.app), &at, format!(
                    "`approvals` names `{env}`, which is not one of the app's environments{hint}: {}", list.join(", ")));
                continue;
            }
            let Some(rule) = rule.as_object() else {
                self.error(Some(f.app), &at, format!(
                    "`approvals.{env}` must be an object like {{\"from\": [\"alice\", \"github:carol\"], \"count\": 1, \"expires\": \"1h\"}}, not {}", kind(rule)));
                continue;
            };
            let before = self.errors.len();
            let mut from: Option<Vec<String>> = None;
            let mut count: Option<u64> = None;
            let mut expires = ApprovalRule::DEFAULT_EXPIRES;
            for (k, v) in rule {
                match k.as_str() {
                    "from" => from = self.approvers(f, env, v),
                    "count" => match v.as_u64() {
                        Some(n) if n >= 1 => count = Some(n),
                        _ => self.error(Some(f.app), &at, format!(
                            "`approvals.{env}.count` must be a whole number of approvers, at least 1; got {}", cut(&v.to_string()))),
                    },
                    "expires" => match v.as_str() {
                        Some(t) => match parse_duration(t) {
                            Ok(d) => expires = d,
                            Err(why) => self.error(Some(f.app), &at, format!(
                                "`approvals.{env}.expires`: {}", why.replace(": a deploy needs some time", ": an approval needs some time"))),
                        },
                        None => self.error(Some(f.app), &at, format!(
                            "`approvals.{env}.expires` must be a duration like \"1h\" or \"30m\", not {}", kind(v))),
                    },
                    other => {
                        let hint = closest(other, ["from", "count", "expires"])
                            .map(|s| format!(", did you mean `{s}`?"))
                            .unwrap_or_default();
                        self.error(Some(f.app), &at, format!(
                            "`approvals.{env}`: unknown field `{}`{hint}", cut(other)));
                    }
                }
            }
            let Some(from) = from else {
                if self.errors.len() == before {
                    self.error(Some(f.app), &at, format!(
                        "`approvals.{env}` needs `from`: the people who may approve (names, chat user ids or `github:<login>`)"));
                }
                continue;
            };
            let count = count.unwrap_or(1);
            if count > from.len() as u64 {
                self.error(Some(f.app), &at, format!(
                    "`approvals.{env}.count` is {count} but `from` lists only {} approver{}: nobody could ever deploy there; list more people or lower the count",
                    from.len(), if from.len() == 1 { "" } else { "s" }));
                continue;
            }
            if self.errors.len() != before {
                continue;
            }
            out.insert(
                env.clone(),
                ApprovalRule {
                    written: from.len(),
                    from,
                    count: u32::try_from(count).unwrap_or(u32::MAX),
                    expires,
                },
            );
        }
        out
    }

    /// `approvals.<env>.from`: a non-empty list of distinct approvers, each a chat
    /// name, a chat user id or `github:<login>`.
    fn approvers(&mut self, f: &Fields, env: &str, v: &Value) -> Option<Vec<String>> {
        let at = [f.app, "approvals", env];
        let Some(items) = v.as_array() else {
            self.error(Some(f.app), &at, format!(
                "`approvals.{env}.from` must be a list of approvers (names, chat user ids or `github:<login>`), not {}", kind(v)));
            return None;
        };
        if items.is_empty() {
            self.error(
                Some(f.app),
                &at,
                format!(
                    "`approvals.{env}.from` is empty, so nobody could approve a deployment there"
                ),
            );
            return None;
        }
        if items.len() > MAX_APPROVERS {
            self.error(
                Some(f.app),
                &at,
                format!(
                    "`approvals.{env}.from` lists {} approvers; the limit is {MAX_APPROVERS}",
                    items.len()
                ),
            );
            return None;
        }
        let mut out: Vec<String> = Vec::new();
        let mut ok = true;
        for item in items {
            let Some(entry) = item.as_str() else {
                self.error(
                    Some(f.app),
                    &at,
                    format!(
                        "`approvals.{env}.from` must hold strings, not {}",
                        kind(item)
                    ),
                );
                ok = false;
                continue;
            };
            let trimmed = entry.trim().trim_start_matches('@');
            let login = trimmed.strip_prefix("github:");
            let valid = !trimmed.is_empty()
                && trimmed.chars().count() <= MAX_APPROVER_CHARS
                && !trimmed
                    .chars()
                    .any(|c| c.is_control() || c.is_whitespace() || c == ',')
                && login.is_none_or(|l| {
                    !l.is_empty()
                        && !l.starts_with('-')
                        && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                });
            if !valid {
                self.error(Some(f.app), &at, format!(
                    "`approvals.{env}.from` entry `{}` is not an approver: write a chat name, a chat user id like `U024BE7LH`, or `github:<login>` (at most {MAX_APPROVER_CHARS} characters, no spaces or commas)", cut(entry)));
                ok = false;
                continue;
            }
            if out.iter().any(|o| o.eq_ignore_ascii_case(trimmed)) {
                self.error(
                    Some(f.app),
                    &at,
                    format!(
                        "`approvals.{env}.from` lists `{trimmed}` twice; an approver counts once"
                    ),
                );
                ok = false;
                continue;
            }
            out.push(trimmed.to_string());
        }
        ok.then_some(out)
    }

    pub(super) fn command(&mut self, f: &Fields, v: &Value) -> Option<Vec<String>> {
        let argv = match v {
            Value::String(_) => {
                self.error(Some(f.app), &[f.app, "command"], "`command` must be a list of arguments like [\"make\", \"deploy\"]: it is never run through a shell, so a string would be ambiguous".into());
                return None;
            }
            other => self.strings(f, "command", other)?,
        };
        match argv.first() {
            None => {
                self.error(
                    Some(f.app),
                    &[f.app, "command"],
                    "`command` is empty: give the program and its arguments".into(),
                );
                None
            }
            Some(p) if p.starts_with('-') => {
                self.error(
                    Some(f.app),
                    &[f.app, "command"],
                    format!("`command` must start with a program, not the option `{p}`"),
                );
                None
            }
            Some(_) => {
                for arg in &argv {
                    if let Err(why) = check_placeholders(arg) {
                        self.error(Some(f.app), &[f.app, "command"], why);
                        return None;
                    }
                }
                Some(argv)
            }
        }
    }
}

/// A value from app.json as quoted in a message: at most 60 characters.
fn cut(s: &str) -> String {
    let mut out: String = s.chars().take(60).collect();
    if s.chars().count() > 60 {
        out.push('…');
    }
    out
}
