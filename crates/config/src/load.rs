//! Reading and checking app.json. Every problem is collected (not just the
//! first) and points at file, line, column, app and field, so that a broken
//! config fails once, at start, with everything to fix.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use chima_command::{check_ref, closest, is_slug};
use serde_json::{Map, Value};

use crate::duration::parse_duration;
use crate::error::{ConfigError, ConfigErrors};
use crate::locate::Locator;
use crate::model::{App, AutoDeployRule, Environment, Provider, Secret, is_secret_field};

/// The largest app.json read. Real ones are a few kilobytes.
pub const MAX_CONFIG_BYTES: usize = 4 * 1024 * 1024;

/// Fields with a fixed name. `heroku_<env>_name` and `<env>_url` are also
/// accepted for each environment of the app.
pub const KNOWN_FIELDS: &[&str] = &[
    "provider",
    "repository",
    "environments",
    "auto_merge",
    "required_contexts",
    "allowed_rooms",
    "allowed_users",
    "github_api",
    "github_token",
    "heroku_name",
    "deploy_script",
    "default_environment",
    "default_ref",
    "aliases",
    "production_environments",
    "timeout",
    "clone_url",
    "fabric_task",
    "fabric_version",
    "command",
    "env_passthrough",
    "notify_room",
    "auto_deploy",
];

/// All apps of one app.json, by name.
#[derive(Debug, Clone)]
pub struct Apps {
    path: PathBuf,
    pub(crate) apps: BTreeMap<String, App>,
}

impl Apps {
    /// Reads and checks the file at `path`.
    pub fn load(path: &Path) -> Result<Apps, ConfigErrors> {
        let at_file = |message: String| {
            ConfigErrors(vec![ConfigError {
                path: path.to_path_buf(),
                line: 0,
                column: 0,
                app: None,
                field: None,
                message,
            }])
        };
        let meta = std::fs::metadata(path).map_err(|e| {
            at_file(format!(
                "cannot read it: {e}; set APPS_JSON or --apps to the app.json to use"
            ))
        })?;
        if meta.len() > MAX_CONFIG_BYTES as u64 {
            return Err(at_file(format!(
                "it is {} bytes; the limit is {MAX_CONFIG_BYTES}",
                meta.len()
            )));
        }
        let bytes = std::fs::read(path).map_err(|e| at_file(format!("cannot read it: {e}")))?;
        let text =
            String::from_utf8(bytes).map_err(|e| at_file(format!("it is not UTF-8 text: {e}")))?;
        Apps::parse(&text, path)
    }

    /// Checks app.json text; `path` is only used in error messages.
    pub fn parse(text: &str, path: &Path) -> Result<Apps, ConfigErrors> {
        let mut cx = Checker {
            path,
            text,
            locator: Locator::default(),
            errors: Vec::new(),
        };
        if text.len() > MAX_CONFIG_BYTES {
            cx.error(
                None,
                &[],
                format!(
                    "it is {} bytes; the limit is {MAX_CONFIG_BYTES}",
                    text.len()
                ),
            );
            return Err(ConfigErrors(cx.errors));
        }
        let root: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                let msg = e.to_string();
                // serde_json appends " at line L column C"; we print it in front.
                let msg = msg
                    .rsplit_once(" at line ")
                    .map(|(m, _)| m.to_string())
                    .unwrap_or(msg);
                return Err(ConfigErrors(vec![ConfigError {
                    path: path.to_path_buf(),
                    line: e.line(),
                    column: e.column(),
                    app: None,
                    field: None,
                    message: format!("not valid JSON: {msg}"),
                }]));
            }
        };
        cx.locator = Locator::new(text);
        for (key_path, offsets) in cx.locator.duplicates() {
            let (line, _) = cx.locator.line_col(text, offsets[0]);
            let (l2, c2) = cx.locator.line_col(text, offsets[offsets.len() - 1]);
            let app = (key_path.len() > 1).then(|| key_path[0].clone());
            let name = key_path.last().cloned().unwrap_or_default();
            cx.errors.push(ConfigError {
                path: path.to_path_buf(),
                line: l2,
                column: c2,
                field: app.as_ref().map(|_| name.clone()),
                app,
                message: format!(
                    "`{name}` is given more than once (first on line {line}); JSON keeps only the last, so say it once"
                ),
            });
        }
        let Value::Object(entries) = root else {
            cx.error(
                None,
                &[],
                "the top level must be an object of apps: {\"my-app\": {\"provider\": ..., \"repository\": ...}}".into(),
            );
            return Err(ConfigErrors(cx.errors));
        };
        if entries.is_empty() {
            cx.error(None, &[], "it holds no apps".into());
        }
        let mut apps = BTreeMap::new();
        for (name, entry) in &entries {
            if let Some(app) = cx.app(name, entry) {
                apps.insert(name.clone(), app);
            }
        }
        if cx.errors.is_empty() {
            Ok(Apps {
                path: path.to_path_buf(),
                apps,
            })
        } else {
            cx.errors.sort_by_key(|e| (e.line, e.column));
            Err(ConfigErrors(cx.errors))
        }
    }

    /// The file the apps came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn get(&self, name: &str) -> Option<&App> {
        self.apps.get(&name.to_ascii_lowercase())
    }

    pub fn iter(&self) -> impl Iterator<Item = &App> {
        self.apps.values()
    }

    pub fn names(&self) -> Vec<String> {
        self.apps.keys().cloned().collect()
    }

    /// The apps that deploy a GitHub repository (`owner/name`, case-insensitive), by
    /// name. faseng finds a deployment's app this way, never by a name in its payload:
    /// the payload may only choose among these.
    pub fn for_repository(&self, repository: &str) -> Vec<&App> {
        self.apps
            .values()
            .filter(|a| a.repository.eq_ignore_ascii_case(repository))
            .collect()
    }
}

struct Checker<'a> {
    path: &'a Path,
    text: &'a str,
    locator: Locator,
    errors: Vec<ConfigError>,
}

impl Checker<'_> {
    fn error(&mut self, app: Option<&str>, at: &[&str], message: String) {
        let (line, column) = if self.text.is_empty() {
            (0, 0)
        } else {
            self.locator.position(self.text, at)
        };
        self.errors.push(ConfigError {
            path: self.path.to_path_buf(),
            line,
            column,
            app: app.map(str::to_string),
            field: at.get(1).map(|s| s.to_string()),
            message,
        });
    }

    fn app(&mut self, name: &str, entry: &Value) -> Option<App> {
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

    fn unknown_field(&mut self, f: &Fields, key: &str, envs: &BTreeSet<String>) {
        let mut candidates: Vec<String> = KNOWN_FIELDS.iter().map(|s| s.to_string()).collect();
        for e in envs {
            candidates.push(format!("heroku_{e}_name"));
            candidates.push(format!("{e}_url"));
        }
        let hint = closest(key, candidates.iter().map(String::as_str))
            .map(|s| format!(", did you mean `{s}`?"))
            .unwrap_or_else(|| {
                let per_env = if key.ends_with("_url") || key.ends_with("_name") {
                    " (`heroku_<env>_name` and `<env>_url` need an environment the app lists)"
                } else {
                    ""
                };
                format!("{per_env}; known fields: {}", KNOWN_FIELDS.join(", "))
            });
        self.error(
            Some(f.app),
            &[f.app, key],
            format!("unknown field `{key}`{hint}"),
        );
    }

    fn wrong_type(&mut self, f: &Fields, key: &str, expected: &str, got: &Value) {
        self.error(
            Some(f.app),
            &[f.app, key],
            format!("`{key}` must be {expected}, not {}", kind(got)),
        );
    }

    fn no_such_environment(&mut self, f: &Fields, key: &str, env: &str, envs: &BTreeSet<String>) {
        let hint = closest(env, envs.iter().map(String::as_str))
            .map(|s| format!(" (did you mean `{s}`?)"))
            .unwrap_or_default();
        let list: Vec<&str> = envs.iter().map(String::as_str).collect();
        self.error(
            Some(f.app),
            &[f.app, key],
            format!(
                "`{key}` names `{env}`, which is not one of the app's environments{hint}: {}",
                list.join(", ")
            ),
        );
    }

    fn string<'v>(&mut self, f: &Fields, key: &str, v: &'v Value) -> Option<&'v str> {
        match v.as_str() {
            Some(s) => Some(s),
            None => {
                self.wrong_type(f, key, "a string", v);
                None
            }
        }
    }

    fn strings(&mut self, f: &Fields, key: &str, v: &Value) -> Option<Vec<String>> {
        let Some(items) = v.as_array() else {
            self.wrong_type(f, key, "a list of strings", v);
            return None;
        };
        let mut out = Vec::new();
        for item in items {
            match item.as_str() {
                Some(s) if !s.trim().is_empty() => out.push(s.to_string()),
                _ => {
                    self.error(
                        Some(f.app),
                        &[f.app, key],
                        format!(
                            "`{key}` must hold non-empty strings; it holds {}",
                            kind(item)
                        ),
                    );
                    return None;
                }
            }
        }
        Some(out)
    }

    fn environments(&mut self, f: &Fields) -> Vec<Environment> {
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

    fn environment_object(&mut self, f: &Fields, o: &Map<String, Value>) -> Option<Environment> {
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

    fn allowed_users(
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

    fn aliases(
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

    fn auto_deploy(
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

    fn command(&mut self, f: &Fields, v: &Value) -> Option<Vec<String>> {
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

/// The placeholders a `command` argument may hold; each is replaced inside its one
/// argument (never split, never through a shell).
pub const PLACEHOLDERS: &[&str] = &["ref", "sha", "env", "hosts", "task", "app"];

/// `{word}` in a command argument must be a known placeholder: a typo such as
/// `{branch}` would otherwise reach the tool as is.
fn check_placeholders(arg: &str) -> Result<(), String> {
    let mut rest = arg;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else { break };
        let word = &after[..close];
        if !word.is_empty()
            && word.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            && !PLACEHOLDERS.contains(&word)
        {
            return Err(format!(
                "`command` argument `{arg}` names the placeholder `{{{word}}}`, which does not exist; the placeholders are {}",
                PLACEHOLDERS
                    .iter()
                    .map(|p| format!("{{{p}}}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        rest = &after[close + 1..];
    }
    Ok(())
}

/// Settings of faseng and chima themselves: never handed to a provider, whatever
/// `env_passthrough` says.
const OWN_SETTINGS: &[&str] = &[
    "DATABASE_URL",
    "GITHUB_TOKEN",
    "GITHUB_APP_ID",
    "GITHUB_APP_PRIVATE_KEY",
    "GITHUB_WEBHOOK_SECRET",
    "FASENG_API_TOKEN",
    "FASENG_METRICS_TOKEN",
    "CHIMA_SIGNING_KEY",
    "SLACK_BOT_TOKEN",
    "SLACK_APP_TOKEN",
    "SLACK_SIGNING_SECRET",
    "HEROKU_API_KEY",
];

/// An `env_passthrough` name: an environment variable name that is not one of
/// faseng's own secrets (nor their `*_FILE` forms).
fn check_passthrough(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !valid {
        return Err(format!(
            "`env_passthrough` entry `{name}` is not an environment variable name (letters, digits and `_`)"
        ));
    }
    let base = name.strip_suffix("_FILE").unwrap_or(name);
    if OWN_SETTINGS.contains(&base) {
        return Err(format!(
            "`env_passthrough` entry `{name}` is one of faseng's own secrets: it is never given to a provider"
        ));
    }
    Ok(())
}

struct Fields<'a> {
    app: &'a str,
    map: &'a Map<String, Value>,
}

impl Fields<'_> {
    fn get(&self, key: &str) -> Option<&Value> {
        self.map.get(key)
    }
}

fn plain_env(name: &str) -> Environment {
    Environment {
        name: name.to_string(),
        production: None,
        provider_env_name: None,
        auto_inactive: None,
        transient: None,
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn provider_names() -> String {
    Provider::NAMES
        .iter()
        .map(|(n, _)| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn is_repository(r: &str) -> bool {
    let part = |p: &str| {
        !p.is_empty()
            && p.len() <= 100
            && !p.starts_with(['-', '.'])
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    };
    matches!(r.split_once('/'), Some((o, n)) if part(o) && part(n))
}

/// A deploy script is run from the checkout: it must be a relative path that
/// stays inside it.
fn check_script_path(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("is empty".into());
    }
    if s.starts_with('/') {
        return Err(format!(
            "`{s}` is absolute; it must be a path inside the repository, like `script/deploy`"
        ));
    }
    if s.starts_with('-') {
        return Err(format!("`{s}` starts with `-`"));
    }
    if s.split('/').any(|p| p == "..") {
        return Err(format!("`{s}` leaves the repository with `..`"));
    }
    if s.chars().any(char::is_control) {
        return Err("contains a control character".into());
    }
    Ok(())
}

/// A clone URL reaches `git clone` as an argument: refuse what git would read
/// as an option and the transports that run commands (`ext::`, `fd::`).
fn check_clone_url(u: &str) -> Result<(), String> {
    if u.is_empty() {
        return Err("is empty".into());
    }
    if u.starts_with('-') {
        return Err(format!(
            "`{u}` starts with `-`, which git would read as an option"
        ));
    }
    let lower = u.to_ascii_lowercase();
    if lower.starts_with("ext::") || lower.starts_with("fd::") {
        return Err(format!(
            "`{u}` uses a git transport that runs commands; use a path, https:// or ssh:// URL"
        ));
    }
    if u.chars().any(char::is_control) {
        return Err("contains a control character".into());
    }
    Ok(())
}

/// `url` with any `user:password@` replaced by `***@`, for text that may be seen.
pub fn redact_userinfo(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{}://***@{}", &url[..scheme_end], &rest[at + 1..]),
        None => url.to_string(),
    }
}

impl Apps {
    /// Where the config was loaded from, for messages like `chima check`'s.
    pub fn describe(&self) -> String {
        format!("{} ({} apps)", self.path.display(), self.apps.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repositories() {
        assert!(is_repository("atmos/heaven"));
        assert!(is_repository("Org-1/my.repo_x"));
        for bad in [
            "heaven", "a/b/c", "/b", "a/", "-a/b", "a b/c", "a/..", "a/$(x)",
        ] {
            assert!(!is_repository(bad), "{bad}");
        }
    }

    #[test]
    fn clone_urls() {
        assert!(check_clone_url(".").is_ok());
        assert!(check_clone_url("https://github.com/a/b.git").is_ok());
        assert!(check_clone_url("--upload-pack=touch x").is_err());
        assert!(check_clone_url("ext::sh -c touch% /tmp/pwned").is_err());
        assert!(check_clone_url("FD::3").is_err());
    }

    #[test]
    fn script_paths() {
        assert!(check_script_path("script/deploy").is_ok());
        assert!(check_script_path("/bin/sh").is_err());
        assert!(check_script_path("../x").is_err());
        assert!(check_script_path("a/../../x").is_err());
    }

    #[test]
    fn credentials_in_clone_urls_never_reach_the_public_entry() {
        assert_eq!(
            redact_userinfo("https://x-access-token:ghs_abc@git.example.com/a/b.git"),
            "https://***@git.example.com/a/b.git"
        );
        assert_eq!(redact_userinfo("https://h/a@b"), "https://h/a@b");
        assert_eq!(redact_userinfo("../repo"), "../repo");
        let apps = Apps::parse(
            r#"{"a": {"provider": "shell", "repository": "o/r",
                      "clone_url": "https://bot:s3cr3t-token@git.example.com/o/r.git"}}"#,
            Path::new("app.json"),
        )
        .unwrap();
        let public = apps.get("a").unwrap().public_config().to_string();
        assert!(!public.contains("s3cr3t"), "{public}");
        assert_eq!(
            apps.get("a").unwrap().clone_url.as_deref(),
            Some("https://bot:s3cr3t-token@git.example.com/o/r.git")
        );
    }
}
