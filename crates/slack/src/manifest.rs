//! What chima and faseng ask of Slack, in one place: the Web API methods they call
//! with the scope each needs, the events chima subscribes to, its slash command and
//! its HTTP routes. [`crate::SlackApi`] calls the methods by these names and
//! [`crate::events_router`] serves these paths, and [`slack_manifest`] builds the
//! app manifest (<https://api.slack.com/reference/manifests>) from the same table,
//! so that the manifest cannot ask for less or more than the code uses.

use std::collections::BTreeSet;

/// `auth.test` (<https://api.slack.com/methods/auth.test>): no scope.
pub const AUTH_TEST: &str = "auth.test";
/// `chat.postMessage` (<https://api.slack.com/methods/chat.postMessage>).
pub const CHAT_POST_MESSAGE: &str = "chat.postMessage";
/// `chat.update` (<https://api.slack.com/methods/chat.update>).
pub const CHAT_UPDATE: &str = "chat.update";
/// `conversations.info` (<https://api.slack.com/methods/conversations.info>).
pub const CONVERSATIONS_INFO: &str = "conversations.info";
/// `conversations.list` (<https://api.slack.com/methods/conversations.list>).
pub const CONVERSATIONS_LIST: &str = "conversations.list";
/// `users.info` (<https://api.slack.com/methods/users.info>).
pub const USERS_INFO: &str = "users.info";
/// `users.list` (<https://api.slack.com/methods/users.list>).
pub const USERS_LIST: &str = "users.list";
/// `apps.connections.open` (<https://api.slack.com/methods/apps.connections.open>):
/// the app-level token (`xapp-...`), not the bot token.
pub const APPS_CONNECTIONS_OPEN: &str = "apps.connections.open";

/// Which token a method is called with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// `SLACK_BOT_TOKEN`: its scopes are the manifest's bot scopes.
    Bot,
    /// `SLACK_APP_TOKEN`: an app-level token, made by hand in the app's settings
    /// (a manifest cannot ask for its scopes).
    App,
}

/// A Web API method chima or faseng calls, with the scopes Slack's method page lists
/// for it (any one of several conversation scopes, depending on the conversation's
/// type: chima asks for all of them, since commands come from every kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiMethod {
    /// The method's name, e.g. `chat.postMessage`.
    pub name: &'static str,
    /// Which token it is called with.
    pub token: TokenKind,
    /// The scopes Slack lists for it (when several, the one for the conversation's type is needed); empty when none.
    pub scopes: &'static [&'static str],
}

const CONVERSATION_READ: &[&str] = &["channels:read", "groups:read", "im:read", "mpim:read"];

/// Every Web API method chima and faseng call. Posts to a slash command's
/// `response_url` are not Web API calls and need no scope.
pub const API_METHODS: &[ApiMethod] = &[
    ApiMethod {
        name: AUTH_TEST,
        token: TokenKind::Bot,
        scopes: &[],
    },
    ApiMethod {
        name: CHAT_POST_MESSAGE,
        token: TokenKind::Bot,
        scopes: &["chat:write"],
    },
    ApiMethod {
        name: CHAT_UPDATE,
        token: TokenKind::Bot,
        scopes: &["chat:write"],
    },
    ApiMethod {
        name: CONVERSATIONS_INFO,
        token: TokenKind::Bot,
        scopes: CONVERSATION_READ,
    },
    ApiMethod {
        name: CONVERSATIONS_LIST,
        token: TokenKind::Bot,
        scopes: CONVERSATION_READ,
    },
    ApiMethod {
        name: USERS_INFO,
        token: TokenKind::Bot,
        scopes: &["users:read"],
    },
    ApiMethod {
        name: USERS_LIST,
        token: TokenKind::Bot,
        scopes: &["users:read"],
    },
    ApiMethod {
        name: APPS_CONNECTIONS_OPEN,
        token: TokenKind::App,
        scopes: &["connections:write"],
    },
];

/// The `type` of a message event (<https://api.slack.com/events/message>).
pub const EVENT_MESSAGE: &str = "message";
/// The `type` of a mention of the bot (<https://api.slack.com/events/app_mention>).
pub const EVENT_APP_MENTION: &str = "app_mention";

/// An event subscription of chima's with the scope Slack requires for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BotEvent {
    /// The event's `type`, as [`crate::parse_payload`] matches it.
    pub event_type: &'static str,
    /// For `message`: the kind of conversation (`message.channels`, ...).
    pub conversation: Option<&'static str>,
    /// The bot scope Slack requires for the subscription.
    pub scope: &'static str,
}

impl BotEvent {
    /// The name subscribed to in the manifest (`message.im`, `app_mention`).
    pub fn subscription(&self) -> String {
        match self.conversation {
            Some(kind) => format!("{}.{kind}", self.event_type),
            None => self.event_type.to_owned(),
        }
    }
}

/// The events chima reads commands from: messages in every kind of conversation the
/// bot is in, and mentions of it.
pub const BOT_EVENTS: &[BotEvent] = &[
    BotEvent {
        event_type: EVENT_APP_MENTION,
        conversation: None,
        scope: "app_mentions:read",
    },
    BotEvent {
        event_type: EVENT_MESSAGE,
        conversation: Some("channels"),
        scope: "channels:history",
    },
    BotEvent {
        event_type: EVENT_MESSAGE,
        conversation: Some("groups"),
        scope: "groups:history",
    },
    BotEvent {
        event_type: EVENT_MESSAGE,
        conversation: Some("im"),
        scope: "im:history",
    },
    BotEvent {
        event_type: EVENT_MESSAGE,
        conversation: Some("mpim"),
        scope: "mpim:history",
    },
];

/// chima's slash command.
pub const SLASH_COMMAND: &str = "/deploy";
/// The scope a slash command needs.
pub const SLASH_COMMAND_SCOPE: &str = "commands";

/// The Events API route of [`crate::events_router`].
pub const EVENTS_PATH: &str = "/slack/events";
/// The slash command route of [`crate::events_router`].
pub const COMMANDS_PATH: &str = "/slack/commands";
/// The interactivity route of [`crate::events_router`].
pub const INTERACTIVE_PATH: &str = "/slack/interactive";

/// The bot token scopes chima and faseng need, sorted: those of the bot-token
/// methods, of the events and of the slash command.
pub fn bot_scopes() -> Vec<&'static str> {
    let mut scopes = BTreeSet::new();
    for m in API_METHODS.iter().filter(|m| m.token == TokenKind::Bot) {
        scopes.extend(m.scopes.iter().copied());
    }
    scopes.extend(BOT_EVENTS.iter().map(|e| e.scope));
    scopes.insert(SLASH_COMMAND_SCOPE);
    scopes.into_iter().collect()
}

/// The Slack app manifest (YAML) for a bot called `name`: Socket Mode when
/// `events_url` is `None`, else the Events API with request URLs under `events_url`
/// (chima's public URL, such as `https://chima.example.com`).
pub fn slack_manifest(name: &str, events_url: Option<&str>) -> String {
    let base = events_url.map(|u| u.trim().trim_end_matches('/'));
    let mut y = String::new();
    y.push_str("# Slack app manifest for chima: https://api.slack.com/reference/manifests\n");
    y.push_str("_metadata:\n  major_version: 1\n  minor_version: 1\n");
    y.push_str("display_information:\n");
    line(&mut y, 2, "name", name);
    line(&mut y, 2, "description", "ChatOps deployments");
    y.push_str("features:\n  bot_user:\n");
    line(&mut y, 4, "display_name", name);
    y.push_str("    always_online: true\n");
    y.push_str("  slash_commands:\n");
    line(&mut y, 4, "- command", SLASH_COMMAND);
    line(
        &mut y,
        6,
        "description",
        "Deploy an app, or any chima command",
    );
    line(&mut y, 6, "usage_hint", "app/branch to environment");
    y.push_str("      should_escape: false\n");
    if let Some(base) = base {
        line(&mut y, 6, "url", &format!("{base}{COMMANDS_PATH}"));
    }
    y.push_str("oauth_config:\n  scopes:\n    bot:\n");
    for scope in bot_scopes() {
        item(&mut y, 6, scope);
    }
    y.push_str("settings:\n  event_subscriptions:\n");
    if let Some(base) = base {
        line(&mut y, 4, "request_url", &format!("{base}{EVENTS_PATH}"));
    }
    y.push_str("    bot_events:\n");
    for event in BOT_EVENTS {
        item(&mut y, 6, &event.subscription());
    }
    y.push_str("  interactivity:\n    is_enabled: true\n");
    if let Some(base) = base {
        line(
            &mut y,
            4,
            "request_url",
            &format!("{base}{INTERACTIVE_PATH}"),
        );
    }
    y.push_str("  org_deploy_enabled: false\n");
    y.push_str(&format!("  socket_mode_enabled: {}\n", base.is_none()));
    y.push_str("  token_rotation_enabled: false\n");
    y
}

fn line(out: &mut String, indent: usize, key: &str, value: &str) {
    out.push_str(&format!("{:indent$}{key}: {}\n", "", yaml_str(value)));
}

fn item(out: &mut String, indent: usize, value: &str) {
    out.push_str(&format!("{:indent$}- {}\n", "", yaml_str(value)));
}

/// `s` as a YAML scalar: plain when it cannot be read as anything but that string,
/// else double-quoted with every special character escaped.
pub fn yaml_str(s: &str) -> String {
    let plain_char = |c: char| c.is_ascii_alphanumeric() || "_./:-".contains(c);
    let reserved = [
        "true", "false", "yes", "no", "on", "off", "null", "y", "n", "~",
    ];
    let plain = !s.is_empty()
        && s.chars().all(plain_char)
        && s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '/')
        && !s.ends_with(':')
        && !reserved.contains(&s.to_ascii_lowercase().as_str());
    if plain {
        return s.to_owned();
    }
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars() {
        match c {
            '"' => q.push_str("\\\""),
            '\\' => q.push_str("\\\\"),
            '\n' => q.push_str("\\n"),
            '\t' => q.push_str("\\t"),
            c if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{feff}') => {
                q.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => q.push(c),
        }
    }
    q.push('"');
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every Web API method name the crate's source calls Slack with, read from the
    /// source itself: a method added to the code without a line in [`API_METHODS`]
    /// fails here.
    fn methods_in_source() -> BTreeSet<String> {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src");
        let mut found = BTreeSet::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.file_name().is_some_and(|n| n == "manifest.rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            // Only the code, not the tests at the end of the file.
            let code = text.split("#[cfg(test)]").next().unwrap_or("");
            for name in [
                "AUTH_TEST",
                "CHAT_POST_MESSAGE",
                "CHAT_UPDATE",
                "CONVERSATIONS_INFO",
                "CONVERSATIONS_LIST",
                "USERS_INFO",
                "USERS_LIST",
                "APPS_CONNECTIONS_OPEN",
            ] {
                if code.contains(&format!("manifest::{name}")) {
                    found.insert(name.to_owned());
                }
            }
            // A method named by a literal instead of a constant would escape the
            // table: there must be none.
            for m in API_METHODS {
                assert!(
                    !code.contains(&format!("\"{}\"", m.name)),
                    "{} names {} by a literal: use manifest's constant",
                    path.display(),
                    m.name
                );
            }
        }
        found
    }

    #[test]
    fn every_method_the_code_calls_is_in_the_table_and_no_other() {
        let used = methods_in_source();
        assert_eq!(used.len(), API_METHODS.len(), "{used:?}");
    }

    #[test]
    fn every_scope_is_needed_and_every_need_is_met() {
        let manifest = slack_manifest("chima", None);
        let scopes = bot_scopes();
        for m in API_METHODS.iter().filter(|m| m.token == TokenKind::Bot) {
            for s in m.scopes {
                assert!(scopes.contains(s), "{} needs {s}", m.name);
                assert!(manifest.contains(&format!("      - {s}\n")), "{s}");
            }
        }
        for e in BOT_EVENTS {
            assert!(scopes.contains(&e.scope));
            assert!(manifest.contains(&format!("      - {}\n", e.subscription())));
        }
        for s in &scopes {
            let needed = API_METHODS
                .iter()
                .filter(|m| m.token == TokenKind::Bot)
                .any(|m| m.scopes.contains(s))
                || BOT_EVENTS.iter().any(|e| e.scope == *s)
                || *s == SLASH_COMMAND_SCOPE;
            assert!(needed, "{s} is asked for but nothing needs it");
        }
        assert!(!scopes.contains(&"connections:write"));
        assert_eq!(
            scopes,
            [
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
            ]
        );
    }

    #[test]
    fn events_url_turns_socket_mode_off() {
        let m = slack_manifest("chima", Some("https://x.example/"));
        assert!(m.contains("socket_mode_enabled: false\n"));
        assert!(m.contains("url: https://x.example/slack/commands\n"));
        assert!(m.contains("request_url: https://x.example/slack/events\n"));
        assert!(m.contains("request_url: https://x.example/slack/interactive\n"));
        let m = slack_manifest("chima", None);
        assert!(m.contains("socket_mode_enabled: true\n"));
        assert!(!m.contains("url:"));
    }

    #[test]
    fn strings_are_quoted_when_yaml_would_read_them_otherwise() {
        assert_eq!(yaml_str("chat:write"), "chat:write");
        assert_eq!(yaml_str("/deploy"), "/deploy");
        assert_eq!(yaml_str("yes"), "\"yes\"");
        assert_eq!(yaml_str("123"), "\"123\"");
        assert_eq!(yaml_str(""), "\"\"");
        assert_eq!(yaml_str("a: b # c"), "\"a: b # c\"");
        assert_eq!(yaml_str("say \"hi\"\\\n"), "\"say \\\"hi\\\"\\\\\\n\"");
        assert_eq!(yaml_str("*bot"), "\"*bot\"");
        assert_eq!(yaml_str("a\u{7}"), "\"a\\u0007\"");
    }
}
