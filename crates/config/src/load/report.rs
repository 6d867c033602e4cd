//! Where a problem of app.json is reported: each one is kept (not just the
//! first) with its file, line, column, app and field, found from the path of
//! keys that leads to it, so that the whole list can be printed at once.

use std::collections::BTreeSet;
use std::path::Path;

use chima_command::closest;
use serde_json::{Map, Value};

use super::KNOWN_FIELDS;
use super::rules::kind;
use crate::error::ConfigError;
use crate::locate::Locator;

pub(super) struct Checker<'a> {
    pub(super) path: &'a Path,
    pub(super) text: &'a str,
    pub(super) locator: Locator,
    pub(super) errors: Vec<ConfigError>,
}

impl Checker<'_> {
    pub(super) fn error(&mut self, app: Option<&str>, at: &[&str], message: String) {
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

    pub(super) fn unknown_field(&mut self, f: &Fields, key: &str, envs: &BTreeSet<String>) {
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

    pub(super) fn wrong_type(&mut self, f: &Fields, key: &str, expected: &str, got: &Value) {
        self.error(
            Some(f.app),
            &[f.app, key],
            format!("`{key}` must be {expected}, not {}", kind(got)),
        );
    }

    pub(super) fn no_such_environment(
        &mut self,
        f: &Fields,
        key: &str,
        env: &str,
        envs: &BTreeSet<String>,
    ) {
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

    pub(super) fn string<'v>(&mut self, f: &Fields, key: &str, v: &'v Value) -> Option<&'v str> {
        match v.as_str() {
            Some(s) => Some(s),
            None => {
                self.wrong_type(f, key, "a string", v);
                None
            }
        }
    }

    pub(super) fn strings(&mut self, f: &Fields, key: &str, v: &Value) -> Option<Vec<String>> {
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
}

/// The fields of one app entry, with the app's name for error messages.
pub(super) struct Fields<'a> {
    pub(super) app: &'a str,
    pub(super) map: &'a Map<String, Value>,
}

impl Fields<'_> {
    pub(super) fn get(&self, key: &str) -> Option<&Value> {
        self.map.get(key)
    }
}
