//! The app.json model: what an app entry means once it has been checked.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use crate::windows::{DeployWindows, Zone};

/// How an app is deployed. hubot-deploy's apps.json names the provider; heaven
/// ran it. faseng runs these four.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// `./<deploy_script>` in the checkout (`shell`, or heaven's `script`).
    Shell,
    /// Fabric 2+: `fab [-H <hosts>] <task> --branch-name=<ref>`; Fabric 1:
    /// `fab -R <env> <task>:branch_name=<ref>`.
    Fabric,
    /// `bundle exec cap <env> <task>` (heaven's `capistrano` and `bundler_capistrano`).
    Capistrano,
    /// The Heroku Platform API build endpoint.
    Heroku,
}

impl Provider {
    /// The names accepted in app.json, with what they mean.
    pub const NAMES: &'static [(&'static str, Provider)] = &[
        ("shell", Provider::Shell),
        ("script", Provider::Shell),
        ("fabric", Provider::Fabric),
        ("capistrano", Provider::Capistrano),
        ("bundler_capistrano", Provider::Capistrano),
        ("heroku", Provider::Heroku),
    ];

    /// Reads a provider name as written in app.json or in a deployment payload.
    pub fn from_name(name: &str) -> Option<Provider> {
        Self::NAMES
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, p)| *p)
    }

    /// The canonical name, as [`Provider::from_name`] reads it back and payloads carry it.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Shell => "shell",
            Provider::Fabric => "fabric",
            Provider::Capistrano => "capistrano",
            Provider::Heroku => "heroku",
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One environment of an app. hubot-deploy accepted plain names and, later,
/// objects with these optional fields; both forms load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Environment {
    /// The name people type, lowercase.
    pub name: String,
    /// GitHub's `production_environment`, when written in the object form.
    pub production: Option<bool>,
    /// The provider's own name for it (a Heroku app, for example).
    pub provider_env_name: Option<String>,
    /// GitHub's `auto_inactive` for this environment's statuses, when written in the object
    /// form (hubot-deploy's field, kept so such files load).
    pub auto_inactive: Option<bool>,
    /// GitHub's `transient_environment`, when written in the object form.
    pub transient: Option<bool>,
}

/// When to deploy an environment by itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutoDeployRule {
    /// The branch whose head is deployed (default: the repository's default branch).
    pub git_ref: Option<String>,
    /// The contexts that must be green (default: every context reported on the commit).
    pub required_contexts: Option<Vec<String>>,
}

/// Who must approve a deployment to an environment before it runs (app.json
/// `approvals`, Samson's buddy check): `count` different people listed in `from`, none
/// of them the requester, within `expires`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalRule {
    /// Who may approve, as `allowed_users` names people: chat names, chat user ids
    /// (`U024BE7LH`) or `github:<login>`. After [`crate::Apps::resolve_chat_names`], the
    /// ids of the names are added (marked in [`ApprovalRule::written`]'s count).
    pub from: Vec<String>,
    /// How many of the entries of `from` were written in app.json (the rest are ids
    /// resolved from names, not shown to people).
    pub written: usize,
    /// How many different approvers must approve (default 1, at most `from`'s length).
    pub count: u32,
    /// How long the deployment waits before it is rejected ("approval expired").
    pub expires: Duration,
}

impl ApprovalRule {
    /// The default wait before an approval expires.
    pub const DEFAULT_EXPIRES: Duration = Duration::from_secs(3600);

    /// The approvers as written in app.json, for people to read.
    pub fn approvers(&self) -> &[String] {
        &self.from[..self.written.min(self.from.len())]
    }

    /// `waiting for 1 approval from alice, U024BE7LH, github:carol`: what a waiting
    /// deployment says (its reason while it waits, so its GitHub status and chat message
    /// say it too).
    pub fn describe(&self) -> String {
        let who = self.approvers().join(", ");
        match self.count {
            1 => format!("waiting for 1 approval from {who}"),
            n => format!("waiting for {n} approvals from {who}"),
        }
    }
}

/// A value that must never be printed, logged or copied into a payload.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret read from app.json or a setting.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// One app of app.json, checked.
#[derive(Debug, Clone)]
pub struct App {
    /// The key in app.json: the name people type in chat.
    pub name: String,
    /// How it is deployed.
    pub provider: Provider,
    /// `owner/name` on GitHub.
    pub repository: String,
    /// The environments it may be deployed to, in app.json's order.
    pub environments: Vec<Environment>,
    /// Merge the default branch into the ref before deploying (GitHub's auto-merge).
    pub auto_merge: bool,
    /// `None`: all contexts must pass (GitHub's default). `Some([])`: none.
    pub required_contexts: Option<Vec<String>>,
    /// `None`: every room may deploy. Channel names or ids.
    pub allowed_rooms: Option<Vec<String>>,
    /// Per environment, who may deploy there (user ids or names). Environments
    /// not listed are open to everyone in an allowed room.
    pub allowed_users: BTreeMap<String, Vec<String>>,
    /// hubot-deploy's per-app `github_api`, kept so hubot-deploy files load.
    pub github_api: Option<String>,
    /// hubot-deploy's per-app `github_token`, kept so hubot-deploy files load; a secret,
    /// so never copied into payloads.
    pub github_token: Option<Secret>,
    /// heaven's `heroku_name`: the Heroku app when the environment has no `heroku_<env>_name`.
    pub heroku_name: Option<String>,
    /// `heroku_<env>_name`, by environment.
    pub heroku_env_names: BTreeMap<String, String>,
    /// `<env>_url`, by environment: the deployed site, for `environment_url`.
    pub env_urls: BTreeMap<String, String>,
    /// The `shell` provider's script, relative to the checkout (default `script/deploy`).
    pub deploy_script: Option<String>,
    /// The environment used when the command names none.
    pub default_environment: Option<String>,
    /// The ref used when the command names none (else the repository's default branch).
    pub default_ref: Option<String>,
    /// Alias -> environment (`"prod": "production"`).
    pub aliases: BTreeMap<String, String>,
    /// The environments GitHub treats as production; empty means `production` only
    /// (see [`App::is_production`]).
    pub production_environments: Vec<String>,
    /// How long a deploy may run before it is stopped (the engine's default when `None`).
    pub timeout: Option<Duration>,
    /// Where to clone from when the repository is not on GitHub (a URL or a
    /// local path), as in the embedded mode.
    pub clone_url: Option<String>,
    /// The Fabric task to run instead of the deployment's task.
    pub fabric_task: Option<String>,
    /// The major version of Fabric on faseng's PATH, when the app says so (else
    /// faseng asks `fab --version`).
    pub fabric_version: Option<u8>,
    /// Names of faseng's environment variables the provider also gets (never one of
    /// faseng's own secrets).
    pub env_passthrough: Vec<String>,
    /// An argv that replaces the provider's command; `{ref}`, `{sha}`, `{env}`,
    /// `{hosts}`, `{task}` and `{app}` are replaced inside each argument.
    pub command: Option<Vec<String>>,
    /// The chat channel for deployments that did not come from chat (made on
    /// GitHub directly, by the API, by auto-deploy).
    pub notify_room: Option<String>,
    /// Per environment: deploy the head of a ref by itself once CI is green.
    pub auto_deploy: BTreeMap<String, AutoDeployRule>,
    /// Per environment: when deploys may start there, in its timezone. Environments
    /// not listed may be deployed at any time.
    pub windows: BTreeMap<String, DeployWindows>,
    /// Per environment: who must approve a deployment before it runs.
    pub approvals: BTreeMap<String, ApprovalRule>,
    /// The entry as written, minus secrets: what goes into `payload.config`.
    pub(crate) public_entry: serde_json::Map<String, serde_json::Value>,
}

impl App {
    /// The environment called `name` (canonical names only; see
    /// [`App::canonical_environment`] for aliases).
    pub fn environment(&self, name: &str) -> Option<&Environment> {
        self.environments.iter().find(|e| e.name == name)
    }

    /// The environments' names, in app.json's order.
    pub fn environment_names(&self) -> Vec<String> {
        self.environments.iter().map(|e| e.name.clone()).collect()
    }

    /// The environment a typed name means: itself, or what an alias points to.
    pub fn canonical_environment(&self, typed: &str) -> Option<&str> {
        let typed = typed.to_ascii_lowercase();
        if let Some(e) = self.environment(&typed) {
            return Some(&e.name);
        }
        self.aliases.get(&typed).map(String::as_str)
    }

    /// Whether GitHub should treat deployments to `env` as production.
    /// Explicit settings win; otherwise only `production` is.
    pub fn is_production(&self, env: &str) -> bool {
        if let Some(p) = self.environment(env).and_then(|e| e.production) {
            return p;
        }
        if !self.production_environments.is_empty() {
            return self.production_environments.iter().any(|p| p == env);
        }
        env == "production"
    }

    /// The timezone times about `env` are said in: its windows' timezone, else UTC.
    pub fn zone(&self, env: &str) -> Zone {
        self.windows
            .get(env)
            .map(|w| w.timezone.clone())
            .unwrap_or_else(Zone::utc)
    }

    /// The approval a deployment of `task` to `env` needs, if any. Dry runs
    /// (`deploy:noop`) change nothing and lock tasks run nothing: they need none.
    pub fn approval_for(&self, env: &str, task: &str) -> Option<&ApprovalRule> {
        if crate::is_dry_run(task) || task == "deploy:lock" || task == "deploy:unlock" {
            return None;
        }
        self.approvals.get(env)
    }

    /// The app entry without secrets, for `payload.config`.
    pub fn public_config(&self) -> serde_json::Value {
        serde_json::Value::Object(self.public_entry.clone())
    }
}

/// True for field names that hold secrets, which are never copied anywhere.
pub fn is_secret_field(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    ["token", "secret", "password", "api_key", "private_key"]
        .iter()
        .any(|s| n.ends_with(s))
}
