//! The rules on single values of app.json (repository names, script paths,
//! clone URLs, placeholders, passed-through variables): plain functions, so
//! they can be tested one by one.

use serde_json::Value;

use crate::model::{Environment, Provider};

/// The placeholders a `command` argument may hold; each is replaced inside its one
/// argument (never split, never through a shell).
pub const PLACEHOLDERS: &[&str] = &["ref", "sha", "env", "hosts", "task", "app"];

/// `{word}` in a command argument must be a known placeholder: a typo such as
/// `{branch}` would otherwise reach the tool as is.
pub(super) fn check_placeholders(arg: &str) -> Result<(), String> {
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
pub(super) const OWN_SETTINGS: &[&str] = &[
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
pub(super) fn check_passthrough(name: &str) -> Result<(), String> {
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

pub(super) fn plain_env(name: &str) -> Environment {
    Environment {
        name: name.to_string(),
        production: None,
        provider_env_name: None,
        auto_inactive: None,
        transient: None,
    }
}

pub(super) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

pub(super) fn provider_names() -> String {
    Provider::NAMES
        .iter()
        .map(|(n, _)| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(super) fn is_repository(r: &str) -> bool {
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
pub(super) fn check_script_path(s: &str) -> Result<(), String> {
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
pub(super) fn check_clone_url(u: &str) -> Result<(), String> {
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::load::Apps;

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
