//! Deciding whether a chat line is meant for the bot, and where the command starts.

/// Who the bot is, for deciding whether a line is addressed to it.
///
/// Aliases come from configuration (`CHIMA_ALIASES`); none are built in, unlike
/// hubot-deploy, which answered to a hard-coded prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addressee {
    /// The bot's name (`CHIMA_NAME`, default `chima`).
    pub name: String,
    /// Other names the bot answers to.
    pub aliases: Vec<String>,
    /// The bot's chat user id (Slack `U...`), for `<@U...>` mentions.
    pub user_id: Option<String>,
    /// True in a direct message: every line is for the bot, no prefix needed.
    pub direct: bool,
}

impl Addressee {
    /// A bot with this name, no aliases, no user id, in a channel.
    pub fn named(name: impl Into<String>) -> Self {
        Addressee {
            name: name.into(),
            aliases: Vec::new(),
            user_id: None,
            direct: false,
        }
    }

    /// The same bot, in a direct message.
    pub fn in_direct_message(mut self) -> Self {
        self.direct = true;
        self
    }
}

/// Returns the text after the bot's address, or `None` when the line is not
/// addressed to the bot.
///
/// Accepted: leading whitespace, then the name or an alias (case-insensitive,
/// optionally after `@`), optionally followed by `:` or `,`; or a Slack mention
/// `<@ID>` / `<@ID|name>`. In a direct message an address is optional.
pub fn strip_address<'a>(line: &'a str, to: &Addressee) -> Option<&'a str> {
    let text = line.trim_start();
    if let Some(rest) = strip_mention(text, to.user_id.as_deref()) {
        return Some(strip_separator(rest));
    }
    let at = text.strip_prefix('@');
    let body = at.unwrap_or(text);
    // Longest name first, so that an alias that is a prefix of another name
    // does not win over the longer one.
    let mut names: Vec<&str> = std::iter::once(to.name.as_str())
        .chain(to.aliases.iter().map(String::as_str))
        .filter(|n| !n.is_empty())
        .collect();
    names.sort_by_key(|n| std::cmp::Reverse(n.len()));
    for name in names {
        if let Some(rest) = strip_name(body, name) {
            return Some(strip_separator(rest));
        }
    }
    if to.direct { Some(text) } else { None }
}

fn strip_mention<'a>(text: &'a str, user_id: Option<&str>) -> Option<&'a str> {
    let id = user_id?;
    let rest = text.strip_prefix("<@")?.strip_prefix(id)?;
    if let Some(rest) = rest.strip_prefix('>') {
        return Some(rest);
    }
    let rest = rest.strip_prefix('|')?;
    let end = rest.find('>')?;
    Some(&rest[end + 1..])
}

fn strip_name<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    let head = text.get(..name.len())?;
    if !head.eq_ignore_ascii_case(name) && head.to_lowercase() != name.to_lowercase() {
        return None;
    }
    let rest = &text[name.len()..];
    match rest.chars().next() {
        None => Some(rest),
        Some(c) if c.is_whitespace() || c == ':' || c == ',' => Some(rest),
        Some(_) => None,
    }
}

fn strip_separator(rest: &str) -> &str {
    let rest = rest.trim_start();
    let rest = rest
        .strip_prefix(':')
        .or_else(|| rest.strip_prefix(','))
        .unwrap_or(rest);
    rest.trim_start()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bot() -> Addressee {
        Addressee {
            name: "chima".into(),
            aliases: vec!["ch".into(), "deploybot".into()],
            user_id: Some("U0LAN0Z89".into()),
            direct: false,
        }
    }

    #[test]
    fn name_forms() {
        let b = bot();
        for line in [
            "chima deploy x",
            "  chima deploy x",
            "Chima: deploy x",
            "@chima deploy x",
            "CHIMA, deploy x",
            "chima:deploy x",
            "ch deploy x",
            "deploybot deploy x",
            "<@U0LAN0Z89> deploy x",
            "<@U0LAN0Z89|chima>: deploy x",
        ] {
            assert_eq!(strip_address(line, &b), Some("deploy x"), "{line}");
        }
    }

    #[test]
    fn not_addressed() {
        let b = bot();
        for line in [
            "deploy x",
            "chimadeploy x",
            "chimas deploy x",
            "hey chima deploy x",
            "<@U999> deploy x",
            "",
        ] {
            assert_eq!(strip_address(line, &b), None, "{line:?}");
        }
    }

    #[test]
    fn direct_message_needs_no_prefix() {
        let b = bot().in_direct_message();
        assert_eq!(strip_address("deploy x", &b), Some("deploy x"));
        assert_eq!(strip_address("chima deploy x", &b), Some("deploy x"));
    }

    #[test]
    fn bare_name_is_addressed_with_nothing_after() {
        assert_eq!(strip_address("chima", &bot()), Some(""));
    }

    #[test]
    fn non_ascii_text_does_not_panic() {
        let b = Addressee::named("ça");
        assert_eq!(strip_address("ÇA deploy x", &b), Some("deploy x"));
        assert_eq!(strip_address("é", &Addressee::named("chima")), None);
    }
}
