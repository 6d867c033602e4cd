//! Checking one app entry of app.json, field by field: the required fields,
//! the per-environment names and URLs, and the rules that tie fields together
//! (a production environment must name its `auto_deploy` contexts).

use std::collections::{BTreeMap, BTreeSet};

use chima_command::{check_ref, closest, is_slug};
use serde_json::{Map, Value};

use super::report::{Checker, Fields};
use super::rules::{
    check_clone_url, check_passthrough, check_script_path, is_repository, kind, provider_names,
    redact_userinfo,
};
use crate::duration::parse_duration;
use crate::model::{App, Provider, Secret, is_secret_field};

impl Checker<'_> {
    pub(super) fn app(&mut self, name: &str, entry: &Value) -> Option<App> {
        let before = self.errors.len();
        if !is_slug(name) || name.chars().any(|c| c.is_ascii_uppercase()) {
            self.error(
                Some(name),
                &[name],
                "an app name must be lowercase letters, digits, `-`, `_` and `.`, starting with a letter or digit (people type it in chat)".into(),
            );
        }
        let Value::Object(fields) = entry else {
            self.error(
                Some(name),
                &[name],
                format!("an app must be an object of fields, not {}", kind(entry)),
            );
            return None;
        };
        let f = Fields {
            app: name,
            map: fields,
        };

        let provider = match f.get("provider") {
            None => {
                self.error(
                    Some(name),
                    &[name],
                    format!("missing field `provider` (one of {})", provider_names()),
                );
                None
            }
            Some(v) => match v.as_str() {
                Some(p) => match Provider::from_name(p) {
                    Some(p) => Some(p),
                    None => {
                        let hint = closest(p, Provider::NAMES.iter().map(|(n, _)| *n))
                            .map(|s| format!("did you mean `{s}`? "))
                            .unwrap_or_default();
                        self.error(
                            Some(name),
                            &[name, "provider"],
                            format!(
                                "unknown provider `{p}`: {hint}faseng runs {}",
                                provider_names()
                            ),
                        );
                        None
                    }
                },
                None => {
                    self.wrong_type(&f, "provider", "a string", v);
                    None
                }
            },
        };

        let repository =
            match f.get("repository") {
                None => {
                    self.error(
                        Some(name),
                        &[name],
                        "missing field `repository` (`owner/name` on GitHub)".into(),
                    );
                    None
                }
                Some(v) => {
                    match v.as_str() {
                        Some(r) if is_repository(r) => Some(r.to_string()),
                        Some(r) => {
                            self.error(Some(name), &[name, "repository"], format!(
                        "`repository` must be `owner/name`, like `atmos/heaven`; got `{r}`"));
                            None
                        }
                        None => {
                            self.wrong_type(&f, "repository", "a string", v);
                            None
                        }
                    }
                }
            };

        let environments = self.environments(&f);
        let env_names: BTreeSet<String> = environments.iter().map(|e| e.name.clone()).collect();

        let mut app = App {
            name: name.to_string(),
            provider: provider.unwrap_or(Provider::Shell),
            repository: repository.unwrap_or_default(),
            environments,
            auto_merge: true,
            required_contexts: None,
            allowed_rooms: None,
            allowed_users: BTreeMap::new(),
            github_api: None,
            github_token: None,
            heroku_name: None,
            heroku_env_names: BTreeMap::new(),
            env_urls: BTreeMap::new(),
            deploy_script: None,
            default_environment: None,
            default_ref: None,
            aliases: BTreeMap::new(),
            production_environments: Vec::new(),
            timeout: None,
            clone_url: None,
            fabric_task: None,
            fabric_version: None,
            env_passthrough: Vec::new(),
            command: None,
            notify_room: None,
            auto_deploy: BTreeMap::new(),
            windows: BTreeMap::new(),
            approvals: BTreeMap::new(),
            public_entry: Map::new(),
        };

        for (key, value) in fields {
            if !is_secret_field(key) {
                // Credentials in a clone URL (`https://user:token@host/...`) stay here:
                // the public entry goes into payloads, which anyone with read access to
                // the repository can list.
                let public = match (key.as_str(), value) {
                    ("clone_url", Value::String(u)) => Value::String(redact_userinfo(u)),
                    _ => value.clone(),
                };
                app.public_entry.insert(key.clone(), public);
            }
            match key.as_str() {
                "provider" | "repository" | "environments" => {}
                "auto_merge" => match value.as_bool() {
                    Some(b) => app.auto_merge = b,
                    None => self.wrong_type(&f, key, "true or false", value),
                },
                "required_contexts" => {
                    app.required_contexts = self.strings(&f, key, value);
                }
                "allowed_rooms" => {
                    app.allowed_rooms = self.strings(&f, key, value);
                    if app.allowed_rooms.as_ref().is_some_and(Vec::is_empty) {
                        self.error(Some(name), &[name, key], "`allowed_rooms` is empty, so no room could deploy this app; remove the field to allow every room".into());
                    }
                }
                "allowed_users" => app.allowed_users = self.allowed_users(&f, value, &env_names),
                "github_api" => {
                    if let Some(u) = self.string(&f, key, value) {
                        if u.starts_with("https://") || u.starts_with("http://") {
                            app.github_api = Some(u.trim_end_matches('/').to_string());
                        } else {
                            self.error(Some(name), &[name, key], format!(
                                "`github_api` must be an http(s) URL like `https://github.example.com/api/v3`; got `{u}`"));
                        }
                    }
                }
                "github_token" => app.github_token = self.string(&f, key, value).map(Secret::new),
                "heroku_name" => app.heroku_name = self.string(&f, key, value).map(str::to_string),
                "deploy_script" => {
                    if let Some(s) = self.string(&f, key, value) {
                        match check_script_path(s) {
                            Ok(()) => app.deploy_script = Some(s.to_string()),
                            Err(why) => self.error(
                                Some(name),
                                &[name, key],
                                format!("`deploy_script` {why}"),
                            ),
                        }
                    }
                }
                "default_environment" => {
                    if let Some(e) = self.string(&f, key, value) {
                        if env_names.contains(e) {
                            app.default_environment = Some(e.to_string());
                        } else {
                            self.no_such_environment(&f, key, e, &env_names);
                        }
                    }
                }
                "default_ref" => {
                    if let Some(r) = self.string(&f, key, value) {
                        match check_ref(r) {
                            Ok(()) => app.default_ref = Some(r.to_string()),
                            Err(why) => self.error(
                                Some(name),
                                &[name, key],
                                format!("`default_ref` `{r}` is not a ref I will deploy: {why}"),
                            ),
                        }
                    }
                }
                "aliases" => app.aliases = self.aliases(&f, value, &env_names),
                "production_environments" => {
                    let list = self.strings(&f, key, value).unwrap_or_default();
                    for e in &list {
                        if !env_names.contains(e) {
                            self.no_such_environment(&f, key, e, &env_names);
                        }
                    }
                    app.production_environments = list;
                }
                "timeout" => {
                    if let Some(t) = self.string(&f, key, value) {
                        match parse_duration(t) {
                            Ok(d) => app.timeout = Some(d),
                            Err(why) => {
                                self.error(Some(name), &[name, key], format!("`timeout`: {why}"))
                            }
                        }
                    }
                }
                "clone_url" => {
                    if let Some(u) = self.string(&f, key, value) {
                        match check_clone_url(u) {
                            Ok(()) => app.clone_url = Some(u.to_string()),
                            Err(why) => {
                                self.error(Some(name), &[name, key], format!("`clone_url` {why}"))
                            }
                        }
                    }
                }
                "fabric_task" => {
                    if let Some(t) = self.string(&f, key, value) {
                        if t.is_empty()
                            || t.starts_with('-')
                            || t.chars().any(|c| c.is_whitespace() || c.is_control())
                        {
                            self.error(Some(name), &[name, key], format!("`fabric_task` must be one task name without spaces or a leading `-`; got `{t}`"));
                        } else {
                            app.fabric_task = Some(t.to_string());
                        }
                    }
                }
                "command" => app.command = self.command(&f, value),
                "fabric_version" => match value.as_u64() {
                    Some(v @ 1..=3) => app.fabric_version = Some(v as u8),
                    _ => self.error(Some(name), &[name, key], format!(
                        "`fabric_version` must be 1, 2 or 3 (the major version of the `fab` on faseng's PATH); got {value}")),
                },
                "env_passthrough" => {
                    if let Some(names) = self.strings(&f, key, value) {
                        for n in &names {
                            if let Err(why) = check_passthrough(n) {
                                self.error(Some(name), &[name, key], why);
                            }
                        }
                        app.env_passthrough = names;
                    }
                }
                "auto_deploy" => app.auto_deploy = self.auto_deploy(&f, value, &env_names),
                "windows" => app.windows = self.windows(&f, value, &env_names),
                "approvals" => app.approvals = self.approvals(&f, value, &env_names),
                "notify_room" => {
                    app.notify_room = self
                        .string(&f, key, value)
                        .map(|r| r.trim_start_matches('#').to_string())
                }
                other => {
                    let heroku_env = other
                        .strip_prefix("heroku_")
                        .and_then(|r| r.strip_suffix("_name"))
                        .filter(|e| env_names.contains(*e));
                    if let Some(env) = heroku_env {
                        if let Some(s) = self.string(&f, key, value) {
                            app.heroku_env_names.insert(env.to_string(), s.to_string());
                        }
                        continue;
                    }
                    let url_env = other
                        .strip_suffix("_url")
                        .filter(|e| env_names.contains(*e));
                    if let Some(env) = url_env {
                        if let Some(s) = self.string(&f, key, value) {
                            app.env_urls.insert(env.to_string(), s.to_string());
                        }
                        continue;
                    }
                    self.unknown_field(&f, other, &env_names);
                }
            }
        }
        // A production environment deploys by itself only on named contexts:
        // "whatever CI reported" is too weak a gate there.
        for (env, rule) in &app.auto_deploy {
            if rule.required_contexts.is_none() && app.is_production(env) {
                self.error(Some(name), &[name, "auto_deploy", env], format!(
                    "`auto_deploy.{env}`: {env} is a production environment, so list its `required_contexts` explicitly"));
            }
        }
        if self.errors.len() == before {
            Some(app)
        } else {
            None
        }
    }
}
