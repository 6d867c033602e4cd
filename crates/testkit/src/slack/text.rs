//! Slack's text format: how Slack encodes what people type (entities, links,
//! mentions of users and channels) before the app sees it.

use std::collections::HashMap;

use super::{BOT_NAME, BOT_USER_ID};

/// People and channels [`encode`] knows by name: the fake's defaults.
pub(super) fn default_directory() -> Directory {
    Directory {
        users: vec![
            (BOT_NAME.to_owned(), BOT_USER_ID.to_owned()),
            ("alice".to_owned(), "U0ALICE".to_owned()),
        ],
        channels: vec![("deploys".to_owned(), "C0DEPLOYS".to_owned())],
    }
}

/// Names to ids, for mentions.
pub(super) struct Directory {
    pub(super) users: Vec<(String, String)>,
    pub(super) channels: Vec<(String, String)>,
}

pub(super) fn directory(
    users: &HashMap<String, String>,
    channels: &HashMap<String, String>,
) -> Directory {
    let mut d = default_directory();
    d.users
        .extend(users.iter().map(|(id, name)| (name.clone(), id.clone())));
    d.channels
        .extend(channels.iter().map(|(id, name)| (name.clone(), id.clone())));
    d
}

/// A line as Slack's clients and servers turn it into a message's `text`
/// (<https://api.slack.com/reference/surfaces/formatting>), for the fake's default users
/// (the bot `chima`, `alice`) and channel (`deploys`):
///
/// * `&` `<` `>` become `&amp;` `&lt;` `&gt;` (#escaping);
/// * a host name becomes `<http://web1.example.com|web1.example.com>`, a typed URL
///   `<https://x.example/a>`, an e-mail address `<mailto:a@b.example|a@b.example>`
///   (#linking-urls: Slack detects them server-side);
/// * `@chima`, `@alice` become `<@U0CHIMA>`, `<@U0ALICE>` (#mentioning-users),
///   `@here` `<!here>` (#special-mentions), `#deploys` `<#C0DEPLOYS|deploys>`
///   (#linking-channels).
///
/// Use [`FakeSlack::encode`](super::FakeSlack::encode) for the users and channels set up on a fake.
pub fn encode(line: &str) -> String {
    encode_with(line, &default_directory())
}

pub(super) fn encode_with(line: &str, dir: &Directory) -> String {
    let mut out = String::with_capacity(line.len() + 16);
    let mut word = String::new();
    for c in line.chars() {
        if c.is_whitespace() {
            out.push_str(&encode_word(&word, dir));
            word.clear();
            out.push(c);
        } else {
            word.push(c);
        }
    }
    out.push_str(&encode_word(&word, dir));
    out
}

/// Characters a name can end with before punctuation (`@chima:`, `#deploys,`).
pub(super) fn name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')
}

pub(super) fn encode_word(word: &str, dir: &Directory) -> String {
    if word.is_empty() {
        return String::new();
    }
    for (sigil, known) in [('@', &dir.users), ('#', &dir.channels)] {
        if let Some(rest) = word.strip_prefix(sigil) {
            let end = rest.find(|c| !name_char(c)).unwrap_or(rest.len());
            // A name does not end with a dot: `@chima.` is `@chima` then `.`.
            let name = rest[..end].trim_end_matches('.');
            let tail = &rest[name.len()..];
            if sigil == '@' && matches!(name, "here" | "channel" | "everyone") {
                return format!("<!{name}>{}", escape(tail));
            }
            if let Some((_, id)) = known.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)) {
                return if sigil == '@' {
                    format!("<@{id}>{}", escape(tail))
                } else {
                    format!("<#{id}|{name}>{}", escape(tail))
                };
            }
        }
    }
    if let Some(scheme) = word.find("://") {
        let start = word[..scheme]
            .rfind(|c: char| !c.is_ascii_alphabetic())
            .map(|i| i + 1)
            .unwrap_or(0);
        let (before, url) = word.split_at(start);
        let end = url.trim_end_matches(['.', ',', ')', '!', '?', ':']).len();
        let (url, after) = url.split_at(end);
        return format!("{}<{}>{}", escape(before), escape(url), escape(after));
    }
    // Host names and addresses between `/` and `,` (`prod/web1.example.com,web2.example.com`).
    let mut out = String::new();
    let mut piece = String::new();
    for c in word.chars() {
        if c == '/' || c == ',' {
            out.push_str(&linkify(&piece));
            piece.clear();
            out.push(c);
        } else {
            piece.push(c);
        }
    }
    out.push_str(&linkify(&piece));
    out
}

/// Top-level domains the fake's link detection knows (Slack's knows them all).
pub(super) const TLDS: &[&str] = &[
    "com", "net", "org", "io", "dev", "app", "co", "example", "internal", "local",
];

pub(super) fn is_host(text: &str) -> bool {
    let labels: Vec<&str> = text.split('.').collect();
    labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && !l.starts_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
        && labels
            .last()
            .is_some_and(|tld| TLDS.contains(&tld.to_ascii_lowercase().as_str()))
}

pub(super) fn linkify(piece: &str) -> String {
    let end = piece.trim_end_matches(['.', ')', '!', '?', ':', ';']).len();
    let (core, after) = piece.split_at(end);
    if let Some((local, host)) = core.split_once('@')
        && !local.is_empty()
        && is_host(host)
    {
        return format!("<mailto:{core}|{core}>{}", escape(after));
    }
    if is_host(core) {
        return format!("<http://{core}|{core}>{}", escape(after));
    }
    escape(piece)
}

pub(super) fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_lines_are_sent_as_slack_encodes_them() {
        assert_eq!(encode("chima deploy web"), "chima deploy web");
        assert_eq!(
            encode("chima deploy app to staging/web1.example.com,web2.example.com"),
            "chima deploy app to staging/<http://web1.example.com|web1.example.com>,<http://web2.example.com|web2.example.com>"
        );
        assert_eq!(
            encode("@chima: lock app in prod db & cache <b> see https://ci.example.com/b?a=1&b=2."),
            "<@U0CHIMA>: lock app in prod db &amp; cache &lt;b&gt; see <https://ci.example.com/b?a=1&amp;b=2>."
        );
        assert_eq!(
            encode("ask @alice or @bob in #deploys, @here ops@acme.example"),
            "ask <@U0ALICE> or @bob in <#C0DEPLOYS|deploys>, <!here> <mailto:ops@acme.example|ops@acme.example>"
        );
        assert_eq!(
            encode("web/v1.2.3 deploy:version a.b"),
            "web/v1.2.3 deploy:version a.b"
        );
    }
}
