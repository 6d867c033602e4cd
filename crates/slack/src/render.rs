//! The deployment messages (README, "Slack"), as plain text (what notifications
//! show, and hubot-deploy's users recognise) and as Block Kit.

use chima_deliver::{Deployment, DeploymentState};
use serde_json::{Value, json};

use crate::api::Message;
use crate::mrkdwn::{MAX_BLOCKS, MAX_SECTION_CHARS, MAX_TEXT_CHARS, cap, escape};

/// Log lines shown under a failed deployment, at most.
pub const MAX_LOG_LINES: usize = 10;

/// Characters of one log line shown, at most (longer lines end with `…`).
pub const MAX_LOG_LINE_CHARS: usize = 200;

/// The `action_id` of the Approve button of a deployment awaiting approval; its
/// `value` is the deployment's id.
pub const APPROVE_ACTION: &str = "approve";

/// The `action_id` of the Reject button; its `value` is the deployment's id.
pub const REJECT_ACTION: &str = "reject";

/// What a deployment message is made of.
#[derive(Debug, Clone, Copy)]
pub struct DeploymentView<'a> {
    /// The deployment the message reports.
    pub deployment: &'a Deployment,
    /// The deployment's log page (faseng's `/deployments/{id}`).
    pub log_url: Option<&'a str>,
    /// The last lines of its log, oldest first; shown when it failed or could not run.
    pub last_lines: &'a [String],
}

/// The message for the deployment's current state:
///
/// * `<user>'s deployment #<id> of <app>/<ref> to <env> is running. <log url>`
/// * `... was successful.`, `... failed.` (then the exit code and the last log lines in
///   a code block), `... could not run: <reason>.`, `... was cancelled: <reason>.`
///   (`... is queued.` before a worker takes it).
///
/// Block Kit: the sentence (user text escaped), the failure details, a context line
/// (state, sha, task, hosts, duration) and a "View log" button.
///
/// Within Slack's limits, so that Slack never refuses the message for its size: each
/// section's text at most [`MAX_SECTION_CHARS`] once escaped (older log lines dropped
/// first, then cut with a visible `…` note), at most [`MAX_BLOCKS`] blocks, the plain text
/// at most [`MAX_TEXT_CHARS`].
pub fn render(view: &DeploymentView<'_>) -> Message {
    let d = view.deployment;
    let log_url = view.log_url.map(clean_url).filter(|u| !u.is_empty());
    let lines = shown_lines(d, view.last_lines);
    let detail = detail(d);

    // Plain text. Slack reads `text` as mrkdwn too: user text is escaped.
    let mut text = escape(&sentence(d));
    if let Some(url) = &log_url {
        text.push(' ');
        text.push_str(url);
    }
    if let Some(detail) = &detail {
        text.push('\n');
        text.push_str(&escape(detail));
    }
    if !lines.is_empty() {
        text.push_str("\n```\n");
        text.push_str(&code_block(&lines));
        text.push_str("\n```");
    }

    // Every text is escaped once, where it is built, and capped once it is whole.
    let mut blocks = vec![section(format!(
        "{} {}",
        emoji(d.state),
        linked_sentence(d, log_url.as_deref())
    ))];
    if detail.is_some() || !lines.is_empty() {
        let detail = detail.as_deref().map(escape).unwrap_or_default();
        blocks.push(section(failure_body(&detail, &lines)));
    }
    blocks.push(json!({
        "type": "context",
        "elements": context(d).into_iter().map(|t| json!({"type": "mrkdwn", "text": cap(&t, MAX_SECTION_CHARS)})).collect::<Vec<_>>(),
    }));
    let mut actions = Vec::new();
    if d.state == DeploymentState::AwaitingApproval {
        // The clicker's identity comes from Slack's signed payload, never from the
        // message: the buttons carry only the deployment's id.
        actions.push(json!({
            "type": "button",
            "action_id": APPROVE_ACTION,
            "style": "primary",
            "text": {"type": "plain_text", "text": "Approve"},
            "value": d.id.to_string(),
        }));
        actions.push(json!({
            "type": "button",
            "action_id": REJECT_ACTION,
            "style": "danger",
            "text": {"type": "plain_text", "text": "Reject"},
            "value": d.id.to_string(),
        }));
    }
    if let Some(url) = &log_url {
        actions.push(json!({
            "type": "button",
            "action_id": "view_log",
            "text": {"type": "plain_text", "text": "View log"},
            "url": url,
        }));
    }
    if !actions.is_empty() {
        blocks.push(json!({
            "type": "actions",
            "block_id": "deployment",
            "elements": actions,
        }));
    }
    blocks.truncate(MAX_BLOCKS);
    Message {
        text: cap(&text, MAX_TEXT_CHARS),
        blocks: Some(Value::Array(blocks)),
    }
}

/// A section block of mrkdwn (already escaped), within Slack's 3,000 characters.
fn section(text: String) -> Value {
    json!({"type": "section", "text": {"type": "mrkdwn", "text": cap(&text, MAX_SECTION_CHARS)}})
}

/// The failure details (escaped) and the last log lines in a code block. Escaping can
/// make ten lines of 200 characters five times longer than Slack shows in a section: the
/// oldest lines go first (the last ones say why it failed), replaced by a `…` line.
fn failure_body(detail: &str, lines: &[String]) -> String {
    let body = |from: usize| {
        let mut body = detail.to_owned();
        if lines.is_empty() {
            return body;
        }
        if !body.is_empty() {
            body.push('\n');
        }
        body.push_str("```\n");
        if from > 0 {
            body.push_str("… (earlier lines in the log)\n");
        }
        body.push_str(&code_block(&lines[from..]));
        body.push_str("\n```");
        body
    };
    (0..lines.len())
        .map(body)
        .find(|b| b.chars().count() <= MAX_SECTION_CHARS)
        // Even the last line alone does not fit (a long reason): `section` cuts it.
        .unwrap_or_else(|| body(lines.len().saturating_sub(1)))
}

fn head(d: &Deployment) -> String {
    format!(
        "{}'s {}{} #{} of {}/{} to {}",
        d.requester,
        emergency_word(d),
        kind(d),
        d.id,
        d.app,
        d.git_ref,
        d.environment
    )
}

/// `EMERGENCY (break-glass: <reason>) ` for a deployment a verified request made an
/// emergency (faseng's notes, never the sender's payload), else nothing.
fn emergency_word(d: &Deployment) -> String {
    chima_payload::DeploymentPayload::emergency_of(&d.payload)
        .map(|r| format!("EMERGENCY (break-glass: {r}) "))
        .unwrap_or_default()
}

/// The announcement of a break-glass deployment in the app's `notify_room` (mrkdwn,
/// every user text escaped).
pub fn announcement(d: &Deployment, reason: &str, log_url: &str) -> String {
    let link = clean_url(log_url);
    let number = if link.is_empty() {
        format!("#{}", d.id)
    } else {
        format!("<{link}|#{}>", d.id)
    };
    cap(
        &format!(
            ":rotating_light: *EMERGENCY (break-glass)*: {} deploys *{}/{}* to *{}* ({number}) past its deploy windows and freezes. Reason: {}",
            escape(&d.requester),
            escape(&d.app),
            escape(&d.git_ref),
            escape(&d.environment),
            escape(reason)
        ),
        MAX_TEXT_CHARS,
    )
}

/// `deployment`, or `dry run` for `deploy:noop` (issue 18): it changes nothing, and the
/// thread must not read as if it shipped.
fn kind(d: &Deployment) -> &'static str {
    if chima_config::is_dry_run(&d.task) {
        "dry run"
    } else {
        "deployment"
    }
}

/// The sentence, unescaped.
fn sentence(d: &Deployment) -> String {
    format!("{}{}", head(d), ending(d))
}

/// What follows the head: ` is running.`, ` failed.`, ...
fn ending(d: &Deployment) -> String {
    let reason = d
        .reason
        .as_deref()
        .map(|r| r.trim().trim_end_matches('.').to_owned())
        .filter(|r| !r.is_empty());
    match d.state {
        DeploymentState::AwaitingApproval => match reason {
            // The store keeps who may approve as the waiting deployment's reason.
            Some(r) if r.starts_with("waiting for ") => format!(" is {r}."),
            _ => " is waiting for approval.".to_owned(),
        },
        DeploymentState::Queued => match reason {
            Some(r) if r.starts_with("approved by ") => format!(" was {r} and is queued."),
            _ => " is queued.".to_owned(),
        },
        DeploymentState::Running => " is running.".to_owned(),
        DeploymentState::Succeeded if chima_config::is_dry_run(&d.task) => {
            " was successful; nothing was changed.".to_owned()
        }
        DeploymentState::Succeeded => " was successful.".to_owned(),
        DeploymentState::Failed => " failed.".to_owned(),
        DeploymentState::Errored => match reason {
            Some(r) => format!(" could not run: {r}."),
            None => " could not run.".to_owned(),
        },
        DeploymentState::Cancelled => match reason {
            // The store's default reason is "cancelled by <who>".
            Some(r) if r.starts_with("cancelled by ") => format!(" was {r}."),
            Some(r) => format!(" was cancelled: {r}."),
            None => " was cancelled.".to_owned(),
        },
        DeploymentState::Rejected => match reason {
            Some(r) if r.starts_with("rejected by ") => format!(" was {r}."),
            Some(r) => format!(" was rejected: {r}."),
            None => " was rejected.".to_owned(),
        },
    }
}

/// The sentence in mrkdwn, the deployment number linking to its log.
fn linked_sentence(d: &Deployment, log_url: Option<&str>) -> String {
    let number = match log_url {
        Some(url) => format!("<{url}|#{}>", d.id),
        None => format!("#{}", d.id),
    };
    format!(
        "{}'s {}{} {number} of *{}/{}* to *{}*{}",
        escape(&d.requester),
        escape(&emergency_word(d)),
        kind(d),
        escape(&d.app),
        escape(&d.git_ref),
        escape(&d.environment),
        escape(&ending(d)),
    )
}

/// The exit code and the reason of a failure, unescaped.
fn detail(d: &Deployment) -> Option<String> {
    if d.state != DeploymentState::Failed {
        return None;
    }
    let reason = d
        .reason
        .as_deref()
        .map(|r| r.trim().trim_end_matches('.'))
        .filter(|r| !r.is_empty());
    Some(match (d.exit_code, reason) {
        (Some(code), Some(r))
            if r == format!("exited with code {code}")
                || r == format!("failed with exit code {code}") =>
        {
            format!("Exit code {code}.")
        }
        (Some(code), Some(r)) => format!("Exit code {code}: {r}."),
        (Some(code), None) => format!("Exit code {code}."),
        (None, Some(r)) => format!("No exit code: {r}."),
        (None, None) => "No exit code.".to_owned(),
    })
}

fn shown_lines(d: &Deployment, lines: &[String]) -> Vec<String> {
    if !matches!(d.state, DeploymentState::Failed | DeploymentState::Errored) {
        return Vec::new();
    }
    let start = lines.len().saturating_sub(MAX_LOG_LINES);
    lines[start..]
        .iter()
        .map(|line| truncate(line.trim_end(), MAX_LOG_LINE_CHARS))
        .collect()
}

/// Lines for a ``` block: escaped, and unable to close the block early.
fn code_block(lines: &[String]) -> String {
    lines
        .iter()
        .map(|l| escape(&l.replace("```", "`\u{200b}``")))
        .collect::<Vec<_>>()
        .join("\n")
}

fn context(d: &Deployment) -> Vec<String> {
    let mut parts = vec![format!("State: *{}*", d.state)];
    if let Some(sha) = d.sha.as_deref().filter(|s| !s.is_empty()) {
        let short: String = sha.chars().take(7).collect();
        parts.push(format!("Commit `{}`", escape(&short)));
    }
    if d.task != "deploy" {
        parts.push(format!("Task `{}`", escape(&d.task)));
    }
    if let Some(hosts) = d.hosts.as_deref().filter(|h| !h.is_empty()) {
        parts.push(format!("Hosts `{}`", escape(hosts)));
    }
    if let (Some(start), Some(end)) = (d.started_at, d.finished_at)
        && end >= start
    {
        parts.push(format!(
            "Took {}",
            duration((end - start).num_seconds().max(0))
        ));
    }
    // A context block takes at most 10 elements; one line reads better anyway.
    vec![parts.join("  ·  ")]
}

/// `1h 2m`, `3m 4s`, `5s`.
fn duration(secs: i64) -> String {
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    if h > 0 {
        format!("{h}h {m}m")
    } else if m > 0 {
        format!("{m}m {s}s")
    } else {
        format!("{s}s")
    }
}

fn emoji(state: DeploymentState) -> &'static str {
    match state {
        DeploymentState::AwaitingApproval => ":raised_hand:",
        DeploymentState::Queued => ":hourglass_flowing_sand:",
        DeploymentState::Running => ":rocket:",
        DeploymentState::Succeeded => ":white_check_mark:",
        DeploymentState::Failed => ":x:",
        DeploymentState::Errored => ":warning:",
        DeploymentState::Cancelled => ":no_entry_sign:",
        DeploymentState::Rejected => ":no_entry:",
    }
}

/// A URL that cannot break out of Slack's `<url|label>` markup.
fn clean_url(url: &str) -> String {
    url.trim()
        .chars()
        .filter(|c| !c.is_control() && !c.is_whitespace())
        .map(|c| match c {
            '<' => "%3C".to_owned(),
            '>' => "%3E".to_owned(),
            '|' => "%7C".to_owned(),
            c => c.to_string(),
        })
        .collect()
}

fn truncate(line: &str, max: usize) -> String {
    if line.chars().count() <= max {
        return line.to_owned();
    }
    let mut out: String = line.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use slack_morphism::blocks::SlackBlock;

    fn deployment(state: DeploymentState) -> Deployment {
        let at = Utc
            .with_ymd_and_hms(2026, 11, 30, 12, 0, 0)
            .single()
            .expect("time");
        Deployment {
            id: 42,
            source_key: "k".to_owned(),
            github_deployment_id: None,
            state,
            requester: "alice".to_owned(),
            app: "web".to_owned(),
            environment: "production".to_owned(),
            repository: "acme/web".to_owned(),
            git_ref: "feature/x".to_owned(),
            sha: Some("0123456789abcdef".to_owned()),
            task: "deploy".to_owned(),
            hosts: None,
            payload: json!({}),
            created_at: at,
            started_at: (state != DeploymentState::Queued).then_some(at),
            finished_at: state
                .is_terminal()
                .then(|| at + chrono::Duration::seconds(83)),
            exit_code: None,
            reason: None,
        }
    }

    fn view(d: &Deployment) -> Message {
        render(&DeploymentView {
            deployment: d,
            log_url: Some("http://faseng.test/deployments/42"),
            last_lines: &[],
        })
    }

    #[test]
    fn sentences_are_hubot_deploys() {
        let url = " http://faseng.test/deployments/42";
        let running = view(&deployment(DeploymentState::Running));
        assert_eq!(
            running.text,
            format!("alice's deployment #42 of web/feature/x to production is running.{url}")
        );
        let ok = view(&deployment(DeploymentState::Succeeded));
        assert_eq!(
            ok.text,
            format!("alice's deployment #42 of web/feature/x to production was successful.{url}")
        );
        let mut d = deployment(DeploymentState::Errored);
        d.reason = Some("checkout failed: no such ref.".to_owned());
        assert_eq!(
            view(&d).text,
            format!(
                "alice's deployment #42 of web/feature/x to production could not run: checkout failed: no such ref.{url}"
            )
        );
        let mut d = deployment(DeploymentState::Cancelled);
        d.reason = Some("cancelled by bob".to_owned());
        assert!(view(&d).text.contains("production was cancelled by bob."));
        d.reason = Some("superseded".to_owned());
        assert!(
            view(&d)
                .text
                .contains("production was cancelled: superseded.")
        );
        let queued = render(&DeploymentView {
            deployment: &deployment(DeploymentState::Queued),
            log_url: None,
            last_lines: &[],
        });
        assert_eq!(
            queued.text,
            "alice's deployment #42 of web/feature/x to production is queued."
        );
    }

    #[test]
    fn a_failure_shows_the_exit_code_and_the_last_lines() {
        let mut d = deployment(DeploymentState::Failed);
        d.exit_code = Some(2);
        d.reason = Some("exited with code 2".to_owned());
        let lines: Vec<String> = (1..=14)
            .map(|i| format!("line {i} <b>&"))
            .chain(["x".repeat(500)])
            .collect();
        let msg = render(&DeploymentView {
            deployment: &d,
            log_url: Some("http://faseng.test/deployments/42"),
            last_lines: &lines,
        });
        assert!(msg.text.starts_with(
            "alice's deployment #42 of web/feature/x to production failed. http://faseng.test/deployments/42\nExit code 2.\n```\n"
        ), "{}", msg.text);
        assert!(!msg.text.contains("line 5 "), "only the last 10 lines");
        assert!(msg.text.contains("line 6 &lt;b&gt;&amp;"), "{}", msg.text);
        assert!(msg.text.contains(&format!("{}…", "x".repeat(199))));
        assert!(!msg.text.contains(&"x".repeat(200)));
        assert!(msg.text.ends_with("\n```"));

        d.reason = Some("timed out after 20m".to_owned());
        let msg = view(&d);
        assert!(
            msg.text.contains("\nExit code 2: timed out after 20m."),
            "{}",
            msg.text
        );
        d.exit_code = None;
        d.reason = Some("killed by a signal".to_owned());
        assert!(
            view(&d)
                .text
                .contains("\nNo exit code: killed by a signal.")
        );
    }

    #[test]
    fn a_dry_run_is_called_one_and_changed_nothing() {
        let mut d = deployment(DeploymentState::Succeeded);
        d.task = chima_config::DRY_RUN_TASK.to_owned();
        let msg = render(&DeploymentView {
            deployment: &d,
            log_url: Some("http://faseng.test/deployments/42"),
            last_lines: &[],
        });
        assert!(
            msg.text
                .starts_with("alice's dry run #42 of web/feature/x to production was successful; nothing was changed."),
            "{}",
            msg.text
        );
        let blocks = msg.blocks.expect("blocks").to_string();
        assert!(
            blocks.contains("alice's dry run <http://faseng.test/deployments/42|#42>"),
            "{blocks}"
        );
        assert!(blocks.contains("Task `deploy:noop`"), "{blocks}");
        d.state = DeploymentState::Running;
        let running = render(&DeploymentView {
            deployment: &d,
            log_url: None,
            last_lines: &[],
        });
        assert!(
            running.text.starts_with("alice's dry run #42"),
            "{}",
            running.text
        );
    }

    #[test]
    fn user_text_is_escaped_and_urls_cannot_break_links() {
        let mut d = deployment(DeploymentState::Succeeded);
        d.requester = "<!channel>".to_owned();
        d.git_ref = "a&b".to_owned();
        let msg = render(&DeploymentView {
            deployment: &d,
            log_url: Some("http://x/a|b>c"),
            last_lines: &[],
        });
        assert!(
            msg.text
                .starts_with("&lt;!channel&gt;'s deployment #42 of web/a&amp;b")
        );
        let blocks = msg.blocks.expect("blocks").to_string();
        assert!(!blocks.contains("<!channel>"), "{blocks}");
        assert!(blocks.contains("<http://x/a%7Cb%3Ec|#42>"), "{blocks}");
    }

    #[test]
    fn blocks_are_valid_block_kit() {
        for state in DeploymentState::ALL {
            let mut d = deployment(state);
            d.exit_code = Some(1);
            d.reason = Some("why".to_owned());
            d.task = "deploy:migrations".to_owned();
            d.hosts = Some("web1".to_owned());
            let lines = vec!["boom".to_owned()];
            for log_url in [None, Some("http://faseng.test/deployments/42")] {
                let msg = render(&DeploymentView {
                    deployment: &d,
                    log_url,
                    last_lines: &lines,
                });
                let blocks = msg.blocks.expect("blocks");
                let typed: Vec<SlackBlock> =
                    serde_json::from_value(blocks.clone()).expect("slack-morphism reads them");
                // Nothing is lost on the way through slack-morphism's model.
                let again = serde_json::to_value(&typed).expect("serialise");
                assert_eq!(again, blocks, "{state}");
                let text = blocks.to_string();
                assert_eq!(text.contains("View log"), log_url.is_some());
                assert!(text.contains("Commit `0123456`"), "{text}");
                assert!(text.contains("Task `deploy:migrations`"), "{text}");
                if state.is_terminal() {
                    assert!(text.contains("Took 1m 23s"), "{text}");
                }
                assert_eq!(
                    text.contains("boom"),
                    matches!(state, DeploymentState::Failed | DeploymentState::Errored)
                );
            }
        }
    }

    fn section_texts(msg: &Message) -> Vec<String> {
        msg.blocks
            .as_ref()
            .and_then(Value::as_array)
            .expect("blocks")
            .iter()
            .filter(|b| b["type"] == "section")
            .map(|b| b["text"]["text"].as_str().expect("section text").to_owned())
            .collect()
    }

    #[test]
    fn huge_log_lines_fit_a_section_keeping_the_last_ones() {
        let mut d = deployment(DeploymentState::Failed);
        d.exit_code = Some(1);
        // 200 `&` are 1,000 characters once escaped: ten such lines are 10,000.
        let lines: Vec<String> = (0..10).map(|i| format!("{i}{}", "&".repeat(300))).collect();
        let msg = render(&DeploymentView {
            deployment: &d,
            log_url: Some("http://faseng.test/deployments/42"),
            last_lines: &lines,
        });
        let sections = section_texts(&msg);
        assert_eq!(sections.len(), 2);
        for text in &sections {
            assert!(
                text.chars().count() <= MAX_SECTION_CHARS,
                "{}",
                text.chars().count()
            );
        }
        let body = &sections[1];
        assert!(
            body.starts_with("Exit code 1.\n```\n… (earlier lines in the log)\n"),
            "{body}"
        );
        assert!(
            body.contains("\n9&amp;&amp;"),
            "the last line is kept: {body}"
        );
        assert!(!body.contains("\n0&amp;"), "the oldest ones go: {body}");
        assert!(body.ends_with("\n```"), "{body}");
        assert!(!body.contains("&amp;amp;"), "escaped once: {body}");
        assert!(msg.text.chars().count() <= MAX_TEXT_CHARS);
    }

    #[test]
    fn a_huge_reason_is_cut_visibly_and_escaped_once() {
        let mut d = deployment(DeploymentState::Errored);
        d.requester = "a&b".to_owned();
        d.reason = Some("<x> & ".repeat(2000));
        let msg = view(&d);
        let sections = section_texts(&msg);
        let first = &sections[0];
        assert!(
            first.chars().count() <= MAX_SECTION_CHARS,
            "{}",
            first.chars().count()
        );
        assert!(first.contains("a&amp;b's deployment"), "{first}");
        assert!(first.contains("&lt;x&gt; &amp; "), "{first}");
        assert!(
            !first.contains("&amp;amp;") && !first.contains("&amp;lt;"),
            "{first}"
        );
        assert!(first.ends_with("characters here)"), "{first}");
        assert!(msg.text.starts_with("a&amp;b's deployment"), "{}", msg.text);
        // Slack's own model still reads the blocks.
        let blocks = msg.blocks.expect("blocks");
        let _: Vec<SlackBlock> = serde_json::from_value(blocks).expect("valid Block Kit");
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(duration(5), "5s");
        assert_eq!(duration(83), "1m 23s");
        assert_eq!(duration(3720), "1h 2m");
    }
}
