//! `faseng github-app-manifest`: the GitHub App manifest for faseng
//! (<https://docs.github.com/en/apps/sharing-github-apps/registering-a-github-app-from-a-manifest>),
//! built from what the code uses (the permissions of `chima_github`'s calls, the
//! events of the webhook handler and of autodeploy), and the flow's last step, which
//! exchanges GitHub's code for the App's settings.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use serde_json::{Map, Value, json};

/// The webhook route of faseng (`web/mod.rs`).
pub const WEBHOOK_PATH: &str = "/webhooks/github";

/// The arguments of `faseng github-app-manifest`: one of its two steps.
#[derive(Debug, Clone, Args)]
#[command(group(clap::ArgGroup::new("step").required(true).args(["url", "exchange"])))]
pub struct ManifestArgs {
    /// faseng's public URL: print the manifest, with the webhook at URL/webhooks/github.
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// The App's name on GitHub (unique on the GitHub instance; GitHub lets you edit
    /// it before creating the App).
    #[arg(long, default_value = "faseng", requires = "url")]
    pub name: String,
    /// Exchange the `code` GitHub redirected to (it lasts an hour) for the App's id,
    /// webhook secret and private key, and print the settings for faseng.
    #[arg(long, value_name = "CODE", conflicts_with = "url")]
    pub exchange: Option<String>,
    /// Where `--exchange` writes the App's private key (mode 0600).
    #[arg(long, value_name = "PATH", default_value = "./github-app.pem")]
    pub key_file: PathBuf,
}

/// The webhook events faseng acts on: deployments, and the events autodeploy watches.
/// (`ping` is sent to every new webhook unasked.)
pub fn events() -> Vec<&'static str> {
    let mut events = vec![chima_github::webhook::DEPLOYMENT_EVENT];
    events.extend_from_slice(crate::autodeploy::EVENTS);
    events
}

/// The manifest for faseng reachable at `url`.
pub fn manifest(name: &str, url: &str) -> Value {
    let url = url.trim().trim_end_matches('/');
    let permissions: Map<String, Value> = chima_github::app_permissions()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), Value::from(v)))
        .collect();
    json!({
        "name": name,
        "url": url,
        "description": "faseng: runs the deployments chima creates",
        "hook_attributes": {"url": format!("{url}{WEBHOOK_PATH}"), "active": true},
        // GitHub sends the browser here with `?code=...`: faseng's front page.
        "redirect_url": format!("{url}/"),
        "public": false,
        "default_permissions": permissions,
        "default_events": events(),
    })
}

/// `faseng github-app-manifest`.
pub fn main(args: &ManifestArgs, api_url: &str) -> ExitCode {
    if let Some(code) = &args.exchange {
        return exchange(code, &args.key_file, api_url);
    }
    let url = args.url.as_deref().unwrap_or_default();
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .unwrap_or("");
    if rest.is_empty() || rest.starts_with('/') || rest.contains(char::is_whitespace) {
        eprintln!(
            "faseng: --url {url:?} is not an http(s) URL: give faseng's public URL, such as \
             https://faseng.example.com (GitHub posts webhooks to URL{WEBHOOK_PATH})"
        );
        return ExitCode::from(2);
    }
    match serde_json::to_string_pretty(&manifest(&args.name, url)) {
        Ok(json) => {
            println!("{json}");
            eprintln!(
                "faseng: post this as the `manifest` field of a form to \
                 https://github.com/settings/apps/new (or .../organizations/ORG/settings/apps/new), \
                 then run `faseng github-app-manifest --exchange CODE` with the code GitHub \
                 redirects to"
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("faseng: cannot print the manifest: {e}");
            ExitCode::from(2)
        }
    }
}

fn exchange(code: &str, key_file: &Path, api_url: &str) -> ExitCode {
    // Before the exchange: the code works once, and the key comes only with it.
    if key_file.exists() {
        eprintln!(
            "faseng: {} already exists (another App's key?): move it away or pass \
             --key-file PATH; the code was not used",
            key_file.display()
        );
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("faseng: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let app = match runtime.block_on(chima_github::convert_app_manifest(api_url, code)) {
        Ok(app) => app,
        Err(e) => {
            eprintln!("faseng: cannot exchange the manifest code at {api_url}: {e}");
            return ExitCode::from(1);
        }
    };
    let key_path = std::path::absolute(key_file).unwrap_or_else(|_| key_file.to_owned());
    println!("GITHUB_APP_ID={}", app.id);
    println!("GITHUB_WEBHOOK_SECRET={}", app.webhook_secret.expose());
    if let Err(e) = write_key(&key_path, app.pem.expose()) {
        eprintln!(
            "faseng: GitHub created App {} (id {}), but its private key cannot be written \
             to {}: {e}; generate a new private key in the App's settings on GitHub",
            app.slug,
            app.id,
            key_path.display()
        );
        return ExitCode::from(2);
    }
    println!("GITHUB_APP_PRIVATE_KEY_FILE={}", key_path.display());
    eprintln!(
        "faseng: created GitHub App {} (id {}); its private key is in {} (mode 0600). \
         Put the lines above in faseng's environment file, then install the App on the \
         repositories to deploy",
        app.slug,
        app.id,
        key_path.display()
    );
    ExitCode::SUCCESS
}

/// Writes `pem` to a new file readable by its owner only; an existing file is not
/// overwritten (it may be another App's key).
fn write_key(path: &Path, pem: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(pem.as_bytes())?;
    if !pem.ends_with('\n') {
        file.write_all(b"\n")?;
    }
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_those_the_webhook_acts_on() {
        let events = events();
        for e in &events {
            assert!(
                *e == chima_github::webhook::DEPLOYMENT_EVENT
                    || crate::autodeploy::EVENTS.contains(e),
                "{e}"
            );
        }
        assert_eq!(
            events,
            ["deployment", "status", "check_run", "check_suite", "push"]
        );
    }
}
