//! The app.json fields that have a structure of their own: `environments`
//! (names or objects), `allowed_users`, `aliases`, `auto_deploy` and
//! `command`, each checked in full before the app is accepted.

use std::collections::{BTreeMap, BTreeSet};

use chima_command::{check_ref, closest, is_slug};
use serde_json::{Map, Value};

use super::report::{Checker, Fields};
use super::rules::{check_placeholders, kind, plain_env};
use crate::model::{AutoDeployRule, Environment};
use crate::windows::{DeployWindows, MAX_WINDOWS, Window, Zone};

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
