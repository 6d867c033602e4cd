//! `chima doctor`: checks the settings against Slack, GitHub and faseng, one line
//! per check (`ok`, `FAIL ...: why. what to do`, or `skip`), and exits 0 only when
//! no check failed. A skipped check (a feature not configured) never fails the run.

use std::collections::BTreeSet;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request};
use serde_json::Value;

use crate::settings::Settings;

#[derive(Default)]
struct Report {
    failed: bool,
}

impl Report {
    fn ok(&mut self, what: &str) {
        println!("ok   {what}");
    }

    fn fail(&mut self, what: &str, why: &str, fix: &str) {
        self.failed = true;
        println!("FAIL {what}: {why}. {fix}");
    }

    fn skip(&mut self, what: &str, why: &str) {
        println!("skip {what}: {why}");
    }
}

pub fn main(s: &mut Settings) -> ExitCode {
    let Some(runtime) = crate::settings::runtime() else {
        return ExitCode::from(2);
    };
    let mut r = Report::default();
    runtime.block_on(run(s, &mut r));
    if r.failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

async fn run(s: &mut Settings, r: &mut Report) {
    let mut refused = BTreeSet::new();
    for (name, loaded) in s.check_secrets() {
        if let Err(e) = loaded {
            r.fail(name, e.trim_end_matches('.'), "Fix the setting");
            refused.insert(name);
        }
    }
    check_slack(s, &refused, r).await;
    check_github(s, r).await;
    check_faseng(s, r).await;
    if s.keys.chima_signing_key.is_some() || s.keys.faseng_api_token.is_some() {
        r.ok("signing key set (CHIMA_SIGNING_KEY, or derived from FASENG_API_TOKEN)");
    } else {
        r.skip(
            "signing key",
            "not configured (neither CHIMA_SIGNING_KEY nor FASENG_API_TOKEN is set: faseng cannot tell who asked for a deployment, so each counts as chima's GitHub login only, and allowed_users then need github:<login>)",
        );
    }
}

/// What a Slack Web API method answered: its JSON and the token's scopes
/// (`x-oauth-scopes`, sent on every Web API response for the token). A plain HTTP
/// call rather than `chima_slack::SlackApi`: slack-morphism does not expose response
/// headers, and the scopes are only in that header.
struct SlackAnswer {
    body: Value,
    scopes: Option<String>,
}

async fn slack_call(api_url: &str, method: &str, token: &str) -> anyhow::Result<SlackAnswer> {
    let client = crate::faseng_api::https_client()?;
    let url = format!("{}/{method}", api_url.trim_end_matches('/'));
    let req = Request::builder()
        .method(Method::POST)
        .uri(&url)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::new()))
        .context("cannot build the request to Slack")?;
    let resp = tokio::time::timeout(Duration::from_secs(15), client.request(req))
        .await
        .with_context(|| format!("Slack did not answer {method} in 15s"))?
        .with_context(|| format!("cannot reach Slack at {api_url} (SLACK_API_URL)"))?;
    let status = resp.status().as_u16();
    let scopes = resp
        .headers()
        .get("x-oauth-scopes")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let raw = resp
        .into_body()
        .collect()
        .await
        .context("cannot read Slack's answer")?
        .to_bytes();
    let body: Value = serde_json::from_slice(&raw)
        .with_context(|| format!("Slack answered {method} with HTTP {status} and no JSON"))?;
    if body["ok"] != Value::Bool(true) {
        anyhow::bail!(
            "Slack answered {method} with {}",
            body["error"].as_str().unwrap_or("an error")
        );
    }
    Ok(SlackAnswer { body, scopes })
}

async fn check_slack(s: &Settings, refused: &BTreeSet<&str>, r: &mut Report) {
    let Some(bot) = s.slack.bot_token() else {
        r.skip("Slack (SLACK_BOT_TOKEN)", "not configured");
        return;
    };
    match slack_call(&s.slack.slack_api_url, chima_slack::manifest::AUTH_TEST, bot).await {
        Ok(answer) => {
            r.ok(&format!(
                "Slack token valid (bot {})",
                answer.body["user"].as_str().unwrap_or("?")
            ));
            match answer.scopes {
                Some(granted) => {
                    let granted: BTreeSet<&str> = granted
                        .split(',')
                        .map(str::trim)
                        .filter(|x| !x.is_empty())
                        .collect();
                    let missing: Vec<&str> = chima_slack::manifest::bot_scopes()
                        .into_iter()
                        .filter(|x| !granted.contains(x))
                        .collect();
                    if missing.is_empty() {
                        r.ok("Slack bot scopes: every scope of the manifest granted");
                    } else {
                        r.fail(
                            "Slack bot scopes",
                            &format!("missing {}", missing.join(", ")),
                            "Add them under OAuth & Permissions (or update the app from `chima slack-manifest`) and reinstall the app to the workspace",
                        );
                    }
                }
                None => r.skip(
                    "Slack bot scopes",
                    "Slack sent no x-oauth-scopes header, so they cannot be checked",
                ),
            }
        }
        Err(e) => r.fail(
            "Slack token (SLACK_BOT_TOKEN)",
            &format!("{e:#}"),
            "Set SLACK_BOT_TOKEN to the app's Bot User OAuth Token (xoxb-...) from its OAuth & Permissions page",
        ),
    }
    let app_token = s
        .slack_in
        .slack_app_token
        .as_ref()
        .filter(|t| !t.is_empty());
    // A refused signing secret is already reported, and still means the Events API.
    let events =
        s.slack_in.slack_signing_secret.is_some() || refused.contains("SLACK_SIGNING_SECRET");
    match app_token {
        Some(token) => {
            match slack_call(
                &s.slack.slack_api_url,
                chima_slack::manifest::APPS_CONNECTIONS_OPEN,
                token,
            )
            .await
            {
                Ok(_) => r.ok("Slack Socket Mode connection opens (SLACK_APP_TOKEN)"),
                Err(e) => r.fail(
                    "Slack Socket Mode (SLACK_APP_TOKEN)",
                    &format!("{e:#}"),
                    "Turn Socket Mode on and set SLACK_APP_TOKEN to an app-level token (xapp-...) with connections:write (Basic Information, App-Level Tokens)",
                ),
            }
        }
        None if events => r.skip("Slack Socket Mode (SLACK_APP_TOKEN)", "not configured"),
        None => r.fail(
            "Slack connection",
            "neither SLACK_APP_TOKEN (Socket Mode) nor SLACK_SIGNING_SECRET (Events API) is set, so chima hears nothing",
            "Set SLACK_APP_TOKEN (Socket Mode) or SLACK_SIGNING_SECRET (Events API)",
        ),
    }
    if refused.contains("SLACK_SIGNING_SECRET") {
        // Reported with the secrets above.
    } else if events {
        r.ok("Slack signing secret set (Events API)");
    } else {
        r.skip(
            "Slack signing secret (SLACK_SIGNING_SECRET)",
            "not configured (no Events API)",
        );
    }
}

/// A client the settings may configure: what it is, what its absence means, and
/// the fix when its settings are wrong.
struct Client {
    what: &'static str,
    unset: &'static str,
    fix: &'static str,
}

const GITHUB: Client = Client {
    what: "GitHub credentials",
    unset: "not configured (GITHUB_TOKEN or GITHUB_APP_ID): deployments run in chima's embedded engine",
    fix: "Fix GITHUB_TOKEN or GITHUB_APP_ID / GITHUB_APP_PRIVATE_KEY",
};

const FASENG: Client = Client {
    what: "faseng (FASENG_URL)",
    unset: "not configured (no locks, cancel or history)",
    fix: "Set FASENG_API_TOKEN to faseng's FASENG_API_TOKEN",
};

/// The client, if configured: `skip` when it is not, `fail` when its settings are wrong.
fn configured<T>(r: &mut Report, got: anyhow::Result<Option<T>>, c: &Client) -> Option<T> {
    match got {
        Ok(Some(t)) => Some(t),
        Ok(None) => {
            r.skip(c.what, c.unset);
            None
        }
        Err(e) => {
            r.fail(c.what, &format!("{e:#}"), c.fix);
            None
        }
    }
}

async fn check_github(s: &Settings, r: &mut Report) {
    let Some(gh) = configured(r, s.github(), &GITHUB) else {
        return;
    };
    let apps = match chima_config::Apps::load(&s.deploy.apps) {
        Ok(apps) => apps,
        Err(e) => {
            r.fail(
                &format!("app.json {}", s.deploy.apps.display()),
                &e.to_string(),
                "Fix the file (APPS_JSON), `chima check` shows each error",
            );
            return;
        }
    };
    let repos: BTreeSet<String> = apps.iter().map(|a| a.repository.clone()).collect();
    let fix = if s.github.github_app_id.is_some() {
        "Install the GitHub App (GITHUB_APP_ID) on that repository, with deployments write access"
    } else {
        "Give GITHUB_TOKEN access to that repository (or fix the repository in app.json)"
    };
    for repo in repos {
        match gh.describe_access(&repo).await {
            Ok(line) => r.ok(&line),
            Err((what, why)) => r.fail(&what, &why, fix),
        }
    }
}

async fn check_faseng(s: &Settings, r: &mut Report) {
    let Some(api) = configured(r, s.faseng(), &FASENG) else {
        return;
    };
    let url = s.faseng_url.clone().unwrap_or_default();
    match api.locks().await {
        Ok(_) => r.ok(&format!("faseng answers at {url} with the token")),
        Err(e) => {
            let e = format!("{e:#}");
            // The client says so in these words; a port such as 44017 must not match.
            let fix = if e.contains("(check FASENG_API_TOKEN)") {
                "Set FASENG_API_TOKEN to the same value as faseng's FASENG_API_TOKEN"
            } else if e.contains("(check FASENG_URL)") {
                "Check that FASENG_URL is faseng's base URL"
            } else {
                "Start faseng, or set FASENG_URL to where it listens (FASENG_LISTEN / FASENG_PUBLIC_URL)"
            };
            r.fail(&format!("faseng at {url}"), &e, fix);
        }
    }
}
