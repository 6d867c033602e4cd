//! `faseng doctor`: checks the settings against the live services, one line per
//! check (`ok`, `FAIL ...: why. what to do`, or `skip`), and exits 0 only when no
//! check failed. A skipped check (a feature not configured) never fails the run.

use std::collections::BTreeSet;
use std::process::ExitCode;

use chima_config::Provider;

use crate::Args;
use crate::serve;

/// The outcome lines, printed as they come, and whether any failed.
#[derive(Default)]
pub struct Report {
    failed: bool,
}

impl Report {
    /// Prints a check that passed.
    pub fn ok(&mut self, what: &str) {
        println!("ok   {what}");
    }

    /// Prints a check that failed, why, and what to do; the run will exit non-zero.
    pub fn fail(&mut self, what: &str, why: &str, fix: &str) {
        self.failed = true;
        println!("FAIL {what}: {why}. {fix}");
    }

    /// Prints a check that did not run (its feature is not configured), and why.
    pub fn skip(&mut self, what: &str, why: &str) {
        println!("skip {what}: {why}");
    }

    /// Failure when any check failed, else success.
    pub fn exit_code(&self) -> ExitCode {
        if self.failed {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        }
    }
}

/// `faseng doctor`: runs every check against `args` and reports.
pub async fn run(mut args: Args) -> ExitCode {
    let mut r = Report::default();
    check_secrets(&mut args, &mut r);
    check_database(&args, &mut r).await;
    let apps = match serve::load_apps(&args.deploy.apps) {
        Ok(Some(apps)) => {
            r.ok(&format!("app.json {}", args.deploy.apps.display()));
            Some(apps)
        }
        Ok(None) => {
            r.skip(
                "app.json",
                "not found (only deployments that carry payload.config can run)",
            );
            None
        }
        Err(e) => {
            r.fail(
                &format!("app.json {}", args.deploy.apps.display()),
                &e.to_string(),
                "Fix the file (APPS_JSON)",
            );
            None
        }
    };
    let repos: BTreeSet<String> = apps
        .iter()
        .flat_map(|a| a.iter().map(|app| app.repository.clone()))
        .collect();
    let providers: BTreeSet<&'static str> = apps
        .iter()
        .flat_map(|a| a.iter().map(|app| app.provider.as_str()))
        .collect();
    check_github(&args, &repos, &mut r).await;
    for p in providers {
        match Provider::from_name(p) {
            Some(Provider::Fabric) => check_tool("fab", "Fabric", &mut r).await,
            Some(Provider::Capistrano) => {
                check_tool("bundle", "Bundler", &mut r).await;
                check_tool("cap", "Capistrano", &mut r).await;
            }
            _ => {}
        }
    }
    check_slack(&args, &mut r).await;
    r.exit_code()
}

fn check_secrets(args: &mut Args, r: &mut Report) {
    let min = chima_config::MIN_SECRET_BYTES;
    for (name, loaded) in serve::check_secrets(args) {
        match loaded {
            Err(e) => r.fail(name, e.trim_end_matches('.'), "Fix the setting"),
            Ok(()) => {
                let set = match name {
                    "GITHUB_WEBHOOK_SECRET" => args.webhook_secret.is_some(),
                    "FASENG_API_TOKEN" => args.keys.faseng_api_token.is_some(),
                    "CHIMA_SIGNING_KEY" => args.keys.chima_signing_key.is_some(),
                    "FASENG_METRICS_TOKEN" => args.metrics_token.is_some(),
                    // Tokens of other services are checked against their service below.
                    _ => continue,
                };
                if set {
                    r.ok(&format!("{name} set (at least {min} bytes)"));
                } else if name == "GITHUB_WEBHOOK_SECRET" {
                    r.fail(
                        name,
                        "not set, so GitHub's webhooks are refused",
                        &format!(
                            "Set it (or GITHUB_WEBHOOK_SECRET_FILE) to the webhook secret of the GitHub App or repository webhook, at least {min} bytes"
                        ),
                    );
                } else {
                    r.skip(name, "not configured");
                }
            }
        }
    }
    if serve::signing_key(args).is_none() {
        r.skip(
            "chima's signing key",
            "not configured (neither CHIMA_SIGNING_KEY nor FASENG_API_TOKEN is set: chima's requests cannot be verified, so every deployment counts as its GitHub creator only)",
        );
    }
}

async fn check_database(args: &Args, r: &mut Report) {
    let what = "database (DATABASE_URL)";
    match chima_store::open(&args.deploy.database_url).await {
        Ok(store) => match store.ping().await {
            Ok(()) => r.ok("database reachable and migrated"),
            Err(e) => r.fail(
                what,
                &e.to_string(),
                "Check that the database server is up and DATABASE_URL is right",
            ),
        },
        Err(e) => r.fail(
            what,
            &format!("cannot open or migrate it: {e}"),
            "Check that the database exists, the server is up, DATABASE_URL is right, and run `faseng migrate`",
        ),
    }
}

async fn check_github(args: &Args, repos: &BTreeSet<String>, r: &mut Report) {
    let gh = match serve::github_client(args) {
        Ok(Some(gh)) => gh,
        Ok(None) => {
            r.skip(
                "GitHub credentials",
                "not configured (GITHUB_TOKEN, or GITHUB_APP_ID with GITHUB_APP_PRIVATE_KEY): no deployment statuses are posted",
            );
            return;
        }
        Err(e) => {
            r.fail(
                "GitHub credentials",
                &e.to_string(),
                "Fix GITHUB_TOKEN or GITHUB_APP_ID / GITHUB_APP_PRIVATE_KEY",
            );
            return;
        }
    };
    let fix = if args.github.github_app_id.is_some() {
        "Install the GitHub App (GITHUB_APP_ID) on that repository, with metadata read access"
    } else {
        "Give GITHUB_TOKEN access to that repository (or fix the repository in app.json)"
    };
    for repo in repos {
        match gh.describe_access(repo).await {
            Ok(line) => r.ok(&line),
            Err((what, why)) => r.fail(&what, &why, fix),
        }
    }
}

/// `tool --version` runs; for Fabric, its major version too.
async fn check_tool(tool: &str, name: &str, r: &mut Report) {
    let out = tokio::process::Command::new(tool)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .output()
        .await;
    let what = format!("{tool} ({name})");
    match out {
        Ok(out) if out.status.success() => {
            let text = String::from_utf8_lossy(&out.stdout);
            let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
            if tool == "fab" {
                match chima_engine::providers::fabric::parse_version(&text) {
                    Some(major) => r.ok(&format!("{what} on PATH: {first} (Fabric {major})")),
                    None => r.fail(
                        &what,
                        &format!("cannot read Fabric's version from `fab --version`: {first:?}"),
                        "Install Fabric (pip install fabric) so that `fab --version` prints it",
                    ),
                }
            } else {
                r.ok(&format!("{what} on PATH: {}", first.trim()));
            }
        }
        Ok(out) => r.fail(
            &what,
            &format!("`{tool} --version` exited with {}", out.status),
            &format!("Repair the {name} installation"),
        ),
        Err(e) => r.fail(
            &what,
            &format!("not found on PATH ({e})"),
            &format!("Install {name} for the user faseng runs as, or add its folder to PATH"),
        ),
    }
}

async fn check_slack(args: &Args, r: &mut Report) {
    let Some(token) = args.slack.bot_token() else {
        r.skip("Slack (SLACK_BOT_TOKEN)", "not configured");
        return;
    };
    let mut cfg = chima_slack::SlackConfig::new(chima_config::Secret::new(token.to_string()));
    cfg.api_url = args.slack.slack_api_url.clone();
    let result = match chima_slack::SlackApi::new(&cfg) {
        Ok(api) => api.auth_test().await.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    match result {
        Ok(who) => r.ok(&format!("Slack token valid (bot {})", who.name)),
        Err(e) => r.fail(
            "Slack token (SLACK_BOT_TOKEN)",
            &format!("auth.test failed: {e}"),
            "Set SLACK_BOT_TOKEN to the app's Bot User OAuth Token (xoxb-...) from its OAuth & Permissions page",
        ),
    }
}
