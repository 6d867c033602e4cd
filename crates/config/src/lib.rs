//! app.json: the list of apps chima may deploy and how, in hubot-deploy's
//! apps.json format extended as the "app.json" section of README.md describes.
//!
//! A bad file fails loudly at start, with every problem and its place
//! (`config/app.json:4:5: `project-x`: unknown field `enironments`, did you
//! mean `environments`?`), never message by message at deploy time.

#![warn(missing_docs)]

mod duration;
mod error;
mod load;
mod locate;
mod model;
mod resolve;
mod secret;
mod task;
mod windows;

pub use duration::{MAX_TIMEOUT, parse_duration};
pub use error::{ConfigError, ConfigErrors, Refusal};
pub use load::{Apps, KNOWN_FIELDS, MAX_CONFIG_BYTES, PLACEHOLDERS, redact_userinfo};
pub use model::{
    App, ApprovalRule, AutoDeployRule, Environment, Provider, Secret, is_secret_field,
};
pub use resolve::{DeploymentRequest, Requester, Target, is_room_id, is_user_id};
pub use secret::{MIN_SECRET_BYTES, SecretError, SecretKind, load_secret, read_secret};
pub use task::{DRY_RUN_TASK, is_dry_run};
pub use windows::{DeployWindows, MAX_WINDOWS, Window, Zone};
