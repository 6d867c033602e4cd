//! Deploy windows and freezes (issue 18): whether a deployment may start now. Asked
//! in one place by every path: the engine when it runs a deployment (whoever created
//! it), and early, before anything is created, by chima, faseng's API and auto-deploy,
//! so that their refusals say the same thing.
//!
//! Dry runs pass (they change nothing), as do break-glass deployments whose
//! emergency a verified request vouches for (the caller decides that: see
//! `execute.rs`). Times are said in the environment's timezone (its windows'
//! timezone, else UTC).

use std::fmt;

use chima_config::{App, Zone, is_dry_run};
use chima_store::{EVERY, Freeze, Store, StoreError};
use chrono::{DateTime, Utc};

/// Why a deployment may not start now.
#[derive(Debug, Clone, PartialEq)]
pub enum Blocked {
    /// A freeze in force covers it (the one that ends last, when several do).
    Frozen {
        /// The environment, as people name it.
        environment: String,
        /// The freeze.
        freeze: Freeze,
        /// The environment's timezone.
        zone: Zone,
        /// When this was decided, for "today"/"tomorrow".
        now: DateTime<Utc>,
    },
    /// It is outside the environment's deploy windows.
    Closed {
        /// The environment.
        environment: String,
        /// Its windows, as written, with the timezone.
        windows: String,
        /// When it opens next, if within a week.
        opens: Option<DateTime<Utc>>,
        /// The environment's timezone.
        zone: Zone,
        /// When this was decided.
        now: DateTime<Utc>,
    },
}

impl Blocked {
    /// Whether a freeze (rather than a window) blocks it.
    pub fn is_freeze(&self) -> bool {
        matches!(self, Blocked::Frozen { .. })
    }
}

impl fmt::Display for Blocked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Blocked::Frozen {
                environment,
                freeze,
                zone,
                now,
            } => {
                write!(f, "{environment} is frozen{}", scope(freeze))?;
                write!(
                    f,
                    " by {} until {}",
                    freeze.frozen_by,
                    zone.say(freeze.ends_at, *now)
                )?;
                match &freeze.reason {
                    Some(r) => write!(f, ": {r}"),
                    None => write!(f, " (no reason given)"),
                }
            }
            Blocked::Closed {
                environment,
                windows,
                opens,
                zone,
                now,
            } => {
                write!(f, "{environment} is outside its deploy windows ({windows})")?;
                match opens {
                    Some(t) => write!(f, ": {environment} opens {}", zone.say(*t, *now)),
                    None => write!(f, ": no window opens within a week"),
                }
            }
        }
    }
}

/// ` (every app)`, ` (every environment of web)`, ...: what a freeze covers, when it
/// is more than the one environment.
fn scope(f: &Freeze) -> String {
    match (f.app.as_str(), f.environment.as_str()) {
        (EVERY, EVERY) => " (every app, every environment)".to_string(),
        (EVERY, _) => " (every app)".to_string(),
        (app, EVERY) => format!(" (every environment of {app})"),
        _ => String::new(),
    }
}

/// The freeze of `freezes` (those in force covering the deployment) that blocks it.
pub fn frozen(
    app: &App,
    environment: &str,
    freezes: &[Freeze],
    now: DateTime<Utc>,
) -> Option<Blocked> {
    freezes
        .iter()
        .filter(|f| f.covers(&app.name, environment) && f.ends_at > now)
        .max_by_key(|f| f.ends_at)
        .map(|f| Blocked::Frozen {
            environment: environment.to_string(),
            freeze: f.clone(),
            zone: app.zone(environment),
            now,
        })
}

/// Whether app.json's windows close the environment at `now`.
pub fn closed(app: &App, environment: &str, now: DateTime<Utc>) -> Option<Blocked> {
    let w = app.windows.get(environment)?;
    if w.is_open(now) {
        return None;
    }
    Some(Blocked::Closed {
        environment: environment.to_string(),
        windows: w.describe(),
        opens: w.next_opening(now),
        zone: w.timezone.clone(),
        now,
    })
}

/// Why a deployment of `task` to `app`/`environment` may not start now: a freeze in
/// the store first, then app.json's windows. `None` when it may, and always for a dry
/// run.
pub async fn check(
    store: &dyn Store,
    app: &App,
    environment: &str,
    task: &str,
) -> Result<Option<Blocked>, StoreError> {
    if is_dry_run(task) {
        return Ok(None);
    }
    let now = Utc::now();
    let freezes = store.freezes_of(&app.name, environment).await?;
    Ok(frozen(app, environment, &freezes, now).or_else(|| closed(app, environment, now)))
}

/// A freeze as `where can i deploy` and the freeze replies show it: `frozen by alice
/// until Monday 09:00 HKT: holidays`.
pub fn describe_freeze(f: &Freeze, zone: &Zone, now: DateTime<Utc>) -> String {
    format!(
        "frozen{} by {} until {}{}",
        scope(f),
        f.frozen_by,
        zone.say(f.ends_at, now),
        f.reason
            .as_deref()
            .map(|r| format!(": {r}"))
            .unwrap_or_default()
    )
}
