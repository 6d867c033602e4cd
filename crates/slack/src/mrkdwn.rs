//! Slack's text format both ways (<https://api.slack.com/reference/surfaces/formatting>).
//!
//! Slack never hands an app the text a person typed: `&`, `<` and `>` arrive as `&amp;`,
//! `&lt;` and `&gt;`, host names and URLs as links (`<http://web1.example.com|web1.example.com>`),
//! people and channels as ids (`<@U123>`, `<#C123|deploys>`). [`decode`] gives the grammar
//! the typed line back. The other way, Slack reads `<...>` in what an app posts as markup
//! and drops what it cannot read: [`escape`] makes text show as written. Both live here,
//! in the Slack transport, so that the grammar and the bot core stay free of Slack's format
//! (the terminal adapter shows text as it is).
//!
//! [`cap`] keeps posted text within Slack's limits without breaking that markup.

/// Characters of a section block's text, at most
/// (<https://api.slack.com/reference/block-kit/blocks#section>: "Maximum length for the
/// text in this field is 3000 characters"; the same for text objects of context blocks,
/// <https://api.slack.com/reference/block-kit/composition-objects#text>).
pub const MAX_SECTION_CHARS: usize = 3000;

/// Blocks in one message, at most (<https://api.slack.com/reference/block-kit/blocks>:
/// "You can include up to 50 blocks in each message").
pub const MAX_BLOCKS: usize = 50;

/// Characters of a message's `text`, at most: beyond this `chat.postMessage` answers
/// `msg_too_long` (<https://api.slack.com/methods/chat.postMessage#errors>,
/// <https://api.slack.com/methods/chat.postMessage#truncating>: 40,000 characters).
pub const MAX_TEXT_CHARS: usize = 40_000;

/// Text as Slack shows it as written: `&`, `<` and `>` as entities
/// (<https://api.slack.com/reference/surfaces/formatting#escaping>). Nothing else is
/// escaped: `*bold*` and `` `code` `` stay mrkdwn.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// The line a person typed, from the text Slack sent
/// (<https://api.slack.com/reference/surfaces/formatting#retrieving-messages>):
///
/// * `&amp;` `&lt;` `&gt;` are `&` `<` `>` again (one pass: `&amp;lt;` is `&lt;`);
/// * a link with a label is its label (`<http://web1.example.com|web1.example.com>` and
///   `<mailto:a@b.c|a@b.c>` are what was typed); a link without one is its URL, without
///   `http://` when that is all Slack added to a bare host name (`<http://web1.example.com>`
///   is `web1.example.com`), and without `mailto:`;
/// * `<#C123|deploys>` is `#deploys`, `<!here>` is `@here`, `<@U123|bob>` is `@bob`
///   (`@U123` without a name);
/// * except a user mention that starts the line, kept as Slack sent it: `<@BOTID> deploy
///   ...` is how a line is addressed to the bot, and the grammar's addressing reads that
///   form (chima-command's `strip_address`). A leading mention of someone else addresses
///   no one, as before.
///
/// `<` without a closing `>` is not markup and is kept.
pub fn decode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find('<') {
        out.push_str(&decode_entities(&rest[..open]));
        let after = &rest[open + 1..];
        match after.find(['<', '>']) {
            Some(close) if after[close..].starts_with('>') => {
                let leading = out.trim().is_empty();
                out.push_str(&unwrap(&after[..close], leading));
                rest = &after[close + 1..];
            }
            // No markup: a `<` Slack did not escape (it always does; keep it anyway).
            _ => {
                out.push('<');
                rest = after;
            }
        }
    }
    out.push_str(&decode_entities(rest));
    out
}

/// One `<...>` of Slack's markup as typed.
fn unwrap(inner: &str, leading: bool) -> String {
    let (target, label) = match inner.split_once('|') {
        Some((target, label)) => (target, Some(label).filter(|l| !l.is_empty())),
        None => (inner, None),
    };
    if let Some(user) = target.strip_prefix('@') {
        if leading {
            return format!("<{inner}>");
        }
        return format!(
            "@{}",
            label
                .map(decode_entities)
                .unwrap_or_else(|| user.to_owned())
        );
    }
    if let Some(channel) = target.strip_prefix('#') {
        return format!(
            "#{}",
            label
                .map(decode_entities)
                .unwrap_or_else(|| channel.to_owned())
        );
    }
    if let Some(special) = target.strip_prefix('!') {
        // `<!here>`, `<!channel>`, `<!subteam^S123|@team>`, `<!date^...|fallback>`.
        return match label {
            Some(label) => decode_entities(label),
            None => format!("@{}", special.split('^').next().unwrap_or(special)),
        };
    }
    if let Some(label) = label {
        return decode_entities(label);
    }
    let url = decode_entities(target);
    if let Some(address) = url.strip_prefix("mailto:") {
        return address.to_owned();
    }
    match url.strip_prefix("http://") {
        Some(host) if is_bare_host(host) => host.to_owned(),
        _ => url,
    }
}

/// `web1.example.com`: what Slack turns into `http://web1.example.com` (letters, digits,
/// `-` and dots, at least one dot; no port, path or query).
fn is_bare_host(host: &str) -> bool {
    host.contains('.')
        && !host.starts_with('.')
        && !host.ends_with('.')
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
}

fn decode_entities(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        let (c, len) = if tail.starts_with("&amp;") {
            ('&', 5)
        } else if tail.starts_with("&lt;") {
            ('<', 4)
        } else if tail.starts_with("&gt;") {
            ('>', 4)
        } else {
            ('&', 1)
        };
        out.push(c);
        rest = &tail[len..];
    }
    out.push_str(rest);
    out
}

/// `text` (escaped mrkdwn) in at most `max` characters: when it is longer, cut on a
/// character boundary, never inside an entity (`&amp;`) or a `<...>` link, an open
/// ```` ``` ```` block closed again, then a line saying it was cut (`… (cut: ...)`), so
/// that the reader sees that something is missing and Slack does not refuse the message.
pub fn cap(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let note = format!("\n… (cut: Slack shows at most {max} characters here)");
    const FENCE: &str = "\n```";
    let room = max.saturating_sub(note.chars().count() + FENCE.len());
    let end = text
        .char_indices()
        .nth(room)
        .map(|(at, _)| at)
        .unwrap_or(text.len());
    let mut kept = &text[..end];
    // Not inside an entity: `&am` is no character.
    if let Some(amp) = kept.rfind('&')
        && !kept[amp..].contains(';')
        && kept.len() - amp < "&amp;".len()
    {
        kept = &kept[..amp];
    }
    // Not inside a link: `<http://x|#4` is no link.
    if let Some(open) = kept.rfind('<')
        && !kept[open..].contains('>')
    {
        kept = &kept[..open];
    }
    let mut out = kept.to_owned();
    if kept.matches("```").count() % 2 == 1 {
        out.push_str(FENCE);
    }
    if max > note.chars().count() {
        out.push_str(&note);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entities_decode_once() {
        assert_eq!(
            decode("lock app in prod db &amp; cache &lt;b&gt;"),
            "lock app in prod db & cache <b>"
        );
        assert_eq!(decode("a &amp;lt; b &x; &"), "a &lt; b &x; &");
    }

    #[test]
    fn links_are_what_was_typed() {
        assert_eq!(
            decode("chima deploy app to prod/<http://web1.example.com|web1.example.com>"),
            "chima deploy app to prod/web1.example.com"
        );
        assert_eq!(
            decode(
                "deploy app to prod/<http://web1.example.com>,<http://web2.example.com|web2.example.com>"
            ),
            "deploy app to prod/web1.example.com,web2.example.com"
        );
        // A URL typed with its scheme, or with a path, stays a URL.
        assert_eq!(
            decode("see <https://ci.example.com/b/1?a=1&amp;b=2>"),
            "see https://ci.example.com/b/1?a=1&b=2"
        );
        assert_eq!(
            decode("see <http://ci.example.com/b/1>"),
            "see http://ci.example.com/b/1"
        );
        assert_eq!(
            decode("<mailto:a@b.example|a@b.example> or <mailto:c@d.example>"),
            "a@b.example or c@d.example"
        );
    }

    #[test]
    fn mentions_read_as_names_except_the_addressing_one() {
        assert_eq!(decode("<@U0CHIMA> deploy x"), "<@U0CHIMA> deploy x");
        assert_eq!(
            decode("  <@U0CHIMA|chima>: deploy x"),
            "  <@U0CHIMA|chima>: deploy x"
        );
        assert_eq!(
            decode(
                "chima lock app in prod ask <@U0BOB|bob> or <@U0ALICE> in <#C0OPS|ops> <#C0X> <!here> <!subteam^S1|@oncall>"
            ),
            "chima lock app in prod ask @bob or @U0ALICE in #ops #C0X @here @oncall"
        );
        assert_eq!(decode("a < b"), "a < b");
        assert_eq!(decode("a <b <@U1>"), "a <b @U1");
    }

    #[test]
    fn escape_is_decodes_inverse_on_plain_text() {
        for typed in [
            "chima help",
            "db & cache <b> a&amp;b",
            "<app>/<ref> -> <env>",
        ] {
            assert_eq!(decode(&escape(typed)), typed);
        }
        assert_eq!(escape("<app> & <env>"), "&lt;app&gt; &amp; &lt;env&gt;");
    }

    #[test]
    fn cap_keeps_entities_links_and_code_blocks_whole() {
        assert_eq!(cap("short", 3000), "short");
        let text = format!("```\n{}\n```", "&amp;".repeat(1000));
        let capped = cap(&text, 3000);
        assert!(capped.chars().count() <= 3000, "{}", capped.chars().count());
        assert!(capped.contains("… (cut"), "{capped}");
        let body = capped.split("\n```").next().expect("the block");
        assert!(body.ends_with("&amp;"), "no entity cut in half: {body:?}");
        assert_eq!(capped.matches("```").count(), 2, "the block is closed");
        // Every cut point lands outside an entity.
        for max in 100..130 {
            let capped = cap(&"a&lt;".repeat(100), max);
            assert!(capped.chars().count() <= max);
            let kept = capped.split('\n').next().expect("kept");
            assert!(
                kept.ends_with("&lt;") || kept.ends_with('a'),
                "{max}: {kept:?}"
            );
        }
        let link = format!(
            "{}<http://faseng.test/deployments/42|#42>{}",
            "x".repeat(40),
            " more".repeat(20)
        );
        let capped = cap(&link, 100);
        assert!(capped.starts_with(&"x".repeat(40)), "{capped}");
        assert!(!capped.contains('<'), "no half link: {capped}");
        // Multi-byte characters are cut between characters.
        let capped = cap(&"é".repeat(5000), 3000);
        assert!(capped.chars().count() <= 3000);
    }
}
