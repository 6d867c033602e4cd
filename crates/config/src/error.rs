//! Errors in app.json, each pointing at the place to fix.

use std::fmt;
use std::path::PathBuf;

/// One problem in app.json, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The app.json file.
    pub path: PathBuf,
    /// 1-based; 0 when the file could not be read at all.
    pub line: usize,
    /// 1-based; meaningful only when `line` is not 0.
    pub column: usize,
    /// The app entry the problem is in, if any.
    pub app: Option<String>,
    /// The field the problem is in, if any.
    pub field: Option<String>,
    /// What is wrong, and how to fix it when we can tell.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        write!(f, ": ")?;
        if let Some(app) = &self.app {
            write!(f, "`{app}`: ")?;
        }
        write!(f, "{}", self.message)
    }
}

/// Everything wrong with one app.json; never empty.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// Why a command that parsed is not carried out for this app, room or user.
/// Each is a reply to the person who typed it; checks run in this order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No app of that name in app.json.
    #[error("I don't know an app called `{app}`{}. Known apps: {}.", suggestion.as_ref().map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default(), list(known))]
    UnknownApp {
        /// The name as typed.
        app: String,
        /// The closest known name, when it looks like a typo.
        suggestion: Option<String>,
        /// Every app's name.
        known: Vec<String>,
    },
    /// The app has no environment (or alias) of that name.
    #[error("`{app}` has no environment `{env}`{}. Its environments: {}.", suggestion.as_ref().map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default(), list(known))]
    UnknownEnvironment {
        /// The app.
        app: String,
        /// The environment as typed (or defaulted).
        env: String,
        /// The closest environment or alias, when it looks like a typo.
        suggestion: Option<String>,
        /// The app's environments.
        known: Vec<String>,
    },
    /// The app's `allowed_rooms` does not include the room the command came from.
    #[error(
        "`{app}` cannot be deployed from {room}. Allowed rooms: {}.",
        list(allowed)
    )]
    RoomNotAllowed {
        /// The app.
        app: String,
        /// The room, as [`Requester::room_label`](crate::Requester::room_label) names it.
        room: String,
        /// The app's `allowed_rooms`.
        allowed: Vec<String>,
    },
    /// The environment's `allowed_users` does not include the requester.
    #[error(
        "{user} is not allowed to deploy `{app}` to {env}. Ask one of: {}.",
        list(allowed)
    )]
    UserNotAllowed {
        /// The app.
        app: String,
        /// The canonical environment name.
        env: String,
        /// The requester's name as people read it.
        user: String,
        /// The environment's `allowed_users`.
        allowed: Vec<String>,
    },
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        return "none".to_string();
    }
    items
        .iter()
        .map(|s| format!("`{s}`"))
        .collect::<Vec<_>>()
        .join(", ")
}
