//! Reading and checking app.json. Every problem is collected (not just the
//! first) and points at file, line, column, app and field, so that a broken
//! config fails once, at start, with everything to fix.
//!
//! This module reads the file and walks the top level; the checks are split by
//! what they look at: `report` places each problem at its line and column,
//! `app` checks one app entry field by field, `fields` the fields with a
//! structure of their own (environments, users, aliases, auto_deploy, command),
//! and `rules` the plain rules on single values (paths, URLs, names).

mod app;
mod fields;
mod report;
mod rules;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::{ConfigError, ConfigErrors};
use crate::locate::Locator;
use crate::model::App;
use report::Checker;

pub use rules::{PLACEHOLDERS, redact_userinfo};

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
    "windows",
    "approvals",
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

    /// The app called `name`, in any case (app names are lowercase).
    pub fn get(&self, name: &str) -> Option<&App> {
        self.apps.get(&name.to_ascii_lowercase())
    }

    /// Every app, by name.
    pub fn iter(&self) -> impl Iterator<Item = &App> {
        self.apps.values()
    }

    /// Every app's name, sorted.
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

impl Apps {
    /// Where the config was loaded from, for messages like `chima check`'s.
    pub fn describe(&self) -> String {
        format!("{} ({} apps)", self.path.display(), self.apps.len())
    }
}
