//! `chima slack-manifest`, run as a user runs it, its YAML read back into keys and
//! lists.

use std::collections::BTreeMap;
use std::process::Command;

/// The manifest's YAML (block mappings and lists of scalars, as chima writes them)
/// as dotted key paths to scalars, and list paths to their items.
#[derive(Debug, Default)]
struct Yaml {
    scalars: BTreeMap<String, String>,
    lists: BTreeMap<String, Vec<String>>,
}

fn unquote(v: &str) -> String {
    let v = v.trim();
    match v.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        Some(inner) => inner.replace("\\\"", "\"").replace("\\\\", "\\"),
        None => v.to_owned(),
    }
}

fn read_yaml(text: &str) -> Yaml {
    let mut out = Yaml::default();
    // (indent, key) of the open mappings.
    let mut stack: Vec<(usize, String)> = Vec::new();
    for raw in text.lines() {
        if raw.trim().is_empty() || raw.trim_start().starts_with('#') {
            continue;
        }
        let indent = raw.len() - raw.trim_start().len();
        assert!(!raw.contains('\t'), "a tab in {raw:?}");
        let mut body = raw.trim_start();
        let mut indent_of_key = indent;
        while stack.last().is_some_and(|(i, _)| *i >= indent) {
            stack.pop();
        }
        let path = |stack: &[(usize, String)]| {
            stack
                .iter()
                .map(|(_, k)| k.as_str())
                .collect::<Vec<_>>()
                .join(".")
        };
        if let Some(item) = body.strip_prefix("- ") {
            let list = path(&stack);
            if !item.contains(": ") {
                out.lists.entry(list).or_default().push(unquote(item));
                continue;
            }
            // A list of mappings: `- key: value`, the rest of the item indented under it.
            let n = out.lists.entry(list.clone()).or_default();
            n.push(String::new());
            stack.push((indent, format!("{}", n.len() - 1)));
            body = item;
            indent_of_key = indent + 2;
        }
        let (key, value) = body
            .split_once(':')
            .unwrap_or_else(|| panic!("not `key: value`: {raw:?}"));
        assert!(!key.contains(' '), "odd key in {raw:?}");
        if value.trim().is_empty() {
            stack.push((indent_of_key, key.to_owned()));
        } else {
            let mut p = path(&stack);
            if !p.is_empty() {
                p.push('.');
            }
            p.push_str(key);
            assert!(
                out.scalars.insert(p, unquote(value)).is_none(),
                "{raw:?} twice"
            );
        }
    }
    out
}

fn manifest(args: &[&str], name: Option<&str>) -> Yaml {
    let mut c = Command::new(env!("CARGO_BIN_EXE_chima"));
    c.arg("slack-manifest").args(args);
    for var in ["CHIMA_NAME", "SLACK_BOT_TOKEN", "SLACK_APP_TOKEN"] {
        c.env_remove(var);
    }
    if let Some(name) = name {
        c.env("CHIMA_NAME", name);
    }
    let out = c.output().expect("chima runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    read_yaml(&stdout)
}

/// The scopes chima needs, from Slack's method and event pages: chat.postMessage and
/// chat.update (`chat:write`), conversations.info and .list (`*:read`), users.info
/// and .list (`users:read`), the `/deploy` command (`commands`), the `app_mention`
/// and `message.*` events (`app_mentions:read`, `*:history`).
const SCOPES: &[&str] = &[
    "app_mentions:read",
    "channels:history",
    "channels:read",
    "chat:write",
    "commands",
    "groups:history",
    "groups:read",
    "im:history",
    "im:read",
    "mpim:history",
    "mpim:read",
    "users:read",
];

const EVENTS: &[&str] = &[
    "app_mention",
    "message.channels",
    "message.groups",
    "message.im",
    "message.mpim",
];

#[test]
fn socket_mode_manifest_asks_for_what_chima_uses() {
    let y = manifest(&[], Some("deploybot"));
    let s = &y.scalars;
    assert_eq!(s["settings.socket_mode_enabled"], "true");
    assert_eq!(s["settings.interactivity.is_enabled"], "true");
    assert_eq!(s["display_information.name"], "deploybot");
    assert_eq!(s["features.bot_user.display_name"], "deploybot");
    assert_eq!(s["features.slash_commands.0.command"], "/deploy");
    assert_eq!(s["features.slash_commands.0.should_escape"], "false");
    assert_eq!(y.lists["oauth_config.scopes.bot"], SCOPES);
    assert_eq!(y.lists["settings.event_subscriptions.bot_events"], EVENTS);
    assert_eq!(
        y.lists["oauth_config.scopes.bot"],
        chima_slack::manifest::bot_scopes()
    );
    assert!(
        !s.keys().any(|k| k.ends_with("url")),
        "no request URL in Socket Mode: {s:?}"
    );
}

#[test]
fn events_url_gives_the_request_urls() {
    let y = manifest(&["--events-url", "https://x.example"], None);
    let s = &y.scalars;
    assert_eq!(s["display_information.name"], "chima");
    assert_eq!(s["settings.socket_mode_enabled"], "false");
    assert_eq!(
        s["settings.event_subscriptions.request_url"],
        "https://x.example/slack/events"
    );
    assert_eq!(
        s["features.slash_commands.0.url"],
        "https://x.example/slack/commands"
    );
    assert_eq!(
        s["settings.interactivity.request_url"],
        "https://x.example/slack/interactive"
    );
    assert_eq!(y.lists["oauth_config.scopes.bot"], SCOPES);
}

#[test]
fn a_name_yaml_would_misread_is_quoted() {
    let y = manifest(&[], Some("yes: \"no\" # really"));
    assert_eq!(
        y.scalars["display_information.name"],
        "yes: \"no\" # really"
    );
}

#[test]
fn a_non_https_events_url_is_refused() {
    let out = Command::new(env!("CARGO_BIN_EXE_chima"))
        .args(["slack-manifest", "--events-url", "http://x.example"])
        .output()
        .expect("chima runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("https://"));
}
