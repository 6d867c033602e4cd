//! `chima slack-manifest`: the Slack app manifest for this chima, from the table of
//! what the code uses (`chima_slack::manifest`).

use std::process::ExitCode;

/// Prints the manifest for a bot called `name`; with `events_url`, for the Events API
/// at that public URL instead of Socket Mode.
pub fn slack_manifest(name: &str, events_url: Option<&str>) -> ExitCode {
    if let Some(url) = events_url {
        let rest = url.trim().strip_prefix("https://").unwrap_or("");
        if rest.is_empty() || rest.starts_with('/') || rest.contains(char::is_whitespace) {
            eprintln!(
                "chima: --events-url {url:?} is not an https:// URL (Slack sends events only \
                 over HTTPS): give chima's public URL, such as https://chima.example.com"
            );
            return ExitCode::from(2);
        }
    }
    // https://api.slack.com/reference/manifests: `display_information.name` is at
    // most 35 characters.
    if name.chars().count() > 35 {
        eprintln!(
            "chima: warning: Slack takes app names of at most 35 characters; shorten \
             CHIMA_NAME or edit `name` before creating the app"
        );
    }
    print!("{}", chima_slack::slack_manifest(name, events_url));
    ExitCode::SUCCESS
}
