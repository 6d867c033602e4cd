//! The real `chima` binary on Slack (Socket Mode, the fake Slack), with lines sent the
//! way Slack encodes what people type, and replies read the way Slack reads them.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use chima_testkit::github::FakeGitHub;
use chima_testkit::slack::{self as fake_slack, Failure, FakeSlack, PostedMessage, Responded};

const APPS: &str = r#"{"app": {"provider": "shell", "repository": "example/app",
    "environments": ["production", "staging"]}}"#;

/// A running chima, killed when dropped.
struct Chima {
    child: tokio::process::Child,
    log: PathBuf,
}

impl Chima {
    /// Starts chima on the fake Slack: with GitHub credentials when `gh` is given (it
    /// creates GitHub deployments), else with the embedded engine on an SQLite file in
    /// `dir`. Returns once its Socket Mode connection is up.
    async fn start(dir: &Path, slack: &FakeSlack, gh: Option<&FakeGitHub>) -> Chima {
        Chima::start_with(dir, slack, gh, APPS).await
    }

    /// [`Chima::start`] with this app.json.
    async fn start_with(
        dir: &Path,
        slack: &FakeSlack,
        gh: Option<&FakeGitHub>,
        apps_json: &str,
    ) -> Chima {
        let apps = dir.join("app.json");
        std::fs::write(&apps, apps_json).expect("write app.json");
        let log = dir.join("chima.log");
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_chima"));
        command
            .env("APPS_JSON", &apps)
            .env("SLACK_BOT_TOKEN", fake_slack::BOT_TOKEN)
            .env("SLACK_APP_TOKEN", fake_slack::APP_TOKEN)
            .env("SLACK_API_URL", &slack.url)
            .env("DATABASE_URL", database_url(dir))
            .env("CHIMA_SIGNING_KEY", "chima-slack-test-signing-key")
            .env("RUST_LOG", "info")
            .env_remove("SLACK_SIGNING_SECRET")
            .env_remove("CHIMA_NAME")
            .env_remove("CHIMA_ALIASES")
            .env_remove("FASENG_URL")
            .env_remove("FASENG_API_TOKEN")
            .env_remove("GITHUB_TOKEN")
            .env_remove("GITHUB_APP_ID")
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(&log).expect("create the log"),
            ))
            .kill_on_drop(true);
        if let Some(gh) = gh {
            command
                .env("GITHUB_TOKEN", gh.token())
                .env("GITHUB_API_URL", &gh.url);
        }
        let child = command.spawn().expect("start chima");
        let chima = Chima { child, log };
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while slack.live_connections() == 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "chima did not connect to Socket Mode: {}",
                chima.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        chima
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

fn database_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("chima.db").display())
}

/// Generous: a loaded 2-core machine only makes the tests slower.
const PATIENCE: Duration = Duration::from_secs(60);

/// A line typed by alice in #deploys, as Slack sends it; its ts is the thread of the reply.
fn type_line(slack: &FakeSlack, line: &str, ts: &str) {
    slack.push_event(slack.typed_message(line, "C0DEPLOYS", "U0ALICE", ts, &format!("Ev{ts}")));
}

/// chima's reply in the thread of `ts` whose text contains `needle`.
async fn reply(slack: &FakeSlack, chima: &Chima, ts: &str, needle: &str) -> PostedMessage {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(p) = slack.posted().into_iter().find(|p| {
            p.thread_ts.as_deref() == Some(ts) && p.text.as_deref().unwrap_or("").contains(needle)
        }) {
            return p;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no reply containing {needle:?} in thread {ts}: {:#?}\n{}",
            slack.posted(),
            chima.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_host_typed_in_slack_reaches_the_github_deployment_as_the_bare_host() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let gh = FakeGitHub::start().await;
    gh.add_repo("example/app", "main");
    let slack = FakeSlack::start().await;
    let chima = Chima::start(dir.path(), &slack, Some(&gh)).await;

    // Addressed with a mention, which Slack sends as `<@U0CHIMA>`: it still addresses
    // chima once the rest of the line is decoded.
    type_line(
        &slack,
        "@chima deploy app to staging/web1.example.com",
        "111.222",
    );
    // Slack turned the mention and the host name into markup, as it does.
    let sent = slack.sent_frames();
    assert_eq!(
        sent.last().expect("the envelope")["payload"]["event"]["text"],
        "<@U0CHIMA> deploy app to staging/<http://web1.example.com|web1.example.com>"
    );
    reply(&slack, &chima, "111.222", "Created GitHub deployment").await;
    let created = gh
        .deployments("example/app")
        .pop()
        .expect("the GitHub deployment");
    assert_eq!(created.body["environment"], "staging");
    assert_eq!(
        created.body["payload"]["hosts"], "web1.example.com",
        "{:#}",
        created.body
    );
    chima.stop().await;
}

#[tokio::test]
async fn help_on_slack_shows_its_placeholders_instead_of_markup() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let slack = FakeSlack::start().await;
    let chima = Chima::start(dir.path(), &slack, None).await;

    type_line(&slack, "chima help", "200.001");
    let help = reply(&slack, &chima, "200.001", "deploy").await;
    let text = help.text.unwrap_or_default();
    // Slack would read `<app>` as markup and show nothing: it must arrive escaped.
    assert!(
        text.contains("deploy[:task][!] &lt;app&gt;[/&lt;ref&gt;]"),
        "{text}"
    );
    assert!(
        !text.contains('<') && !text.contains('>'),
        "raw markup in the help: {text}"
    );
    assert!(!text.contains("&amp;lt;"), "escaped twice: {text}");
    chima.stop().await;
}

#[tokio::test]
async fn a_lock_reason_with_an_ampersand_is_kept_as_typed() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let slack = FakeSlack::start().await;
    let chima = Chima::start(dir.path(), &slack, None).await;

    type_line(
        &slack,
        "chima lock app in staging db & cache <migration>",
        "300.001",
    );
    let locked = reply(&slack, &chima, "300.001", "Locked app in staging").await;
    // Shown on Slack as typed: escaped once, so that Slack shows `&` and `<migration>`.
    assert_eq!(
        locked.text.as_deref(),
        Some(
            "Locked app in staging: db &amp; cache &lt;migration&gt;. Others cannot deploy there until `unlock app in staging`."
        )
    );
    chima.stop().await;

    // Stored as typed: the terminal (which shows text as it is) reads it back.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_chima"))
        .args(["run", "chima where can i deploy app"])
        .env("APPS_JSON", dir.path().join("app.json"))
        .env("DATABASE_URL", database_url(dir.path()))
        .env("USER", "tester")
        .env_remove("SLACK_BOT_TOKEN")
        .env_remove("GITHUB_TOKEN")
        .env_remove("CHIMA_NAME")
        .output()
        .await
        .expect("run chima on the terminal");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("staging (locked by alice: db & cache <migration>)"),
        "{text}"
    );
}

#[tokio::test]
async fn a_rate_limited_reply_is_posted_after_retry_after() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let slack = FakeSlack::start().await;
    let chima = Chima::start(dir.path(), &slack, None).await;
    // https://api.slack.com/apis/rate-limits: 429 with Retry-After (seconds).
    slack.fail_next(
        "chat.postMessage",
        1,
        Failure::RateLimited {
            retry_after_secs: 2,
        },
    );

    type_line(&slack, "chima deploy:version", "400.001");
    reply(&slack, &chima, "400.001", "chima ").await;
    let calls = slack.calls("chat.postMessage");
    assert_eq!(calls.len(), 2, "refused once, then posted: {calls:#?}");
    let waited = calls[1].at.duration_since(calls[0].at);
    assert!(
        waited >= Duration::from_secs(2),
        "posted again {waited:?} after the 429"
    );
    assert_eq!(slack.posted().len(), 1);
    chima.stop().await;
}

/// A DM between alice and someone else: the bot is not in it, so `chat.postMessage`
/// there answers `not_in_channel`, but `/deploy` can be typed there.
const DM: &str = "D0ALICEDM";

/// An app.json (notify_room `#deploys`) next to a git repository whose deploy script
/// waits for the file `go` in `dir`, so that a test can act while it runs.
fn gated_project(dir: &Path) -> String {
    use std::os::unix::fs::PermissionsExt;
    let repo = dir.join("repo");
    let script = repo.join("script/deploy");
    std::fs::create_dir_all(script.parent().expect("parent")).expect("mkdir");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho deploying\nwhile [ ! -f '{}' ]; do sleep 0.1; done\necho done\n",
            dir.join("go").display()
        ),
    )
    .expect("write the deploy script");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    for args in [
        vec!["init", "-q", "--initial-branch=main"],
        vec!["add", "-A"],
        vec![
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@e",
            "commit",
            "-qm",
            "x",
        ],
    ] {
        let ok = std::process::Command::new("git")
            .arg("-C")
            .arg(&repo)
            .args(&args)
            .status()
            .expect("git")
            .success();
        assert!(ok, "git {args:?}");
    }
    r#"{"app": {"provider": "shell", "repository": "example/app", "environments": ["staging"],
        "default_environment": "staging", "clone_url": "repo", "default_ref": "main",
        "notify_room": "C0DEPLOYS"}}"#
        .to_owned()
}

/// Waits until the messages posted to response URLs satisfy `check`.
async fn responded_until(
    slack: &FakeSlack,
    chima: &Chima,
    what: &str,
    check: impl Fn(&[Responded]) -> bool,
) -> Vec<Responded> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let got = slack.responded();
        if check(&got) {
            return got;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: responded {got:#?}\nposted {:#?}\n{}",
            slack.posted(),
            chima.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn text_of(r: &Responded) -> &str {
    r.text.as_deref().unwrap_or("")
}

#[tokio::test]
async fn a_slash_command_in_a_dm_without_the_bot_is_answered_and_reported_at_its_response_url() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let slack = FakeSlack::start().await;
    slack.set_channel_without_bot(DM, "alice-and-bob");
    let apps = gated_project(dir.path());
    let chima = Chima::start_with(dir.path(), &slack, None, &apps).await;

    slack.push_event(slack.slash_command("/deploy", "app to staging", DM, "U0ALICE"));
    responded_until(
        &slack,
        &chima,
        "the running message at the response_url",
        |r| r.iter().any(|r| text_of(r).contains("is running")),
    )
    .await;
    std::fs::write(dir.path().join("go"), "").expect("open the gate");
    let got = responded_until(
        &slack,
        &chima,
        "the success edit at the response_url",
        |r| r.iter().any(|r| text_of(r).contains("was successful")),
    )
    .await;

    // chima's answer, then the deployment's message, edited in place.
    assert!(
        text_of(&got[0]).contains("Deployment #1 of app/main to staging is queued"),
        "{got:#?}"
    );
    assert!(!got[0].replace_original, "{got:#?}");
    assert!(
        !got[1].replace_original,
        "the deployment's first message is new: {got:#?}"
    );
    let last = got.last().expect("the success edit");
    assert!(text_of(last).contains("was successful"), "{got:#?}");
    assert!(
        last.replace_original,
        "the success replaces the message: {got:#?}"
    );
    assert!(got.len() <= 5, "Slack takes 5 posts: {got:#?}");
    for r in &got {
        assert_eq!(r.channel, DM, "{got:#?}");
        assert_eq!(r.url, 1, "{got:#?}");
        assert_eq!(r.response_type.as_deref(), Some("in_channel"), "{got:#?}");
    }
    // Nothing was tried where the bot cannot post, nor went to the notify_room.
    let tried: Vec<_> = slack
        .calls("chat.postMessage")
        .into_iter()
        .filter_map(|c| c.arg("channel").map(str::to_owned))
        .collect();
    assert!(tried.is_empty(), "posted in {tried:?}: {}", chima.log());
    chima.stop().await;
}

#[tokio::test]
async fn a_spent_response_url_sends_the_next_message_to_the_notify_room() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let slack = FakeSlack::start().await;
    slack.set_channel_without_bot(DM, "alice-and-bob");
    let apps = gated_project(dir.path());
    let chima = Chima::start_with(dir.path(), &slack, None, &apps).await;

    slack.push_event(slack.slash_command("/deploy", "app to staging", DM, "U0ALICE"));
    responded_until(
        &slack,
        &chima,
        "the running message at the response_url",
        |r| r.iter().any(|r| text_of(r).contains("is running")),
    )
    .await;
    // Its 5 posts are used up (Slack answers `used_url` from now on).
    slack.spend_response_url(1);
    std::fs::write(dir.path().join("go"), "").expect("open the gate");

    let deadline = tokio::time::Instant::now() + PATIENCE;
    let success = loop {
        // The next message goes to the notify_room as a new post: the success itself,
        // or a running update posted there first and then edited to the success.
        let updates = slack.updated();
        let ends_successful = |p: &chima_testkit::slack::PostedMessage| {
            let last = updates
                .iter()
                .rev()
                .find(|u| u.ts == p.ts && u.channel == p.channel)
                .and_then(|u| u.text.clone())
                .or_else(|| p.text.clone());
            last.unwrap_or_default().contains("was successful")
        };
        if let Some(p) = slack
            .posted()
            .into_iter()
            .find(|p| p.channel == "C0DEPLOYS" && ends_successful(p))
        {
            break p;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no success message in the notify_room: {:#?}\n{:#?}\n{}",
            slack.posted(),
            slack.responded(),
            chima.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(success.thread_ts, None);
    assert!(
        !slack
            .responded()
            .iter()
            .any(|r| text_of(r).contains("was successful")),
        "{:#?}",
        slack.responded()
    );
    chima.stop().await;
}

/// The Approve and Reject buttons of a deployment waiting for approval, clicked in the
/// fake Slack: the clicker is who Slack's payload names; someone not in `from` (or
/// the requester) is refused in a reply only they see, and nothing runs; an approver's
/// click runs the deploy, and the thread says who approved.
#[tokio::test]
async fn approval_buttons_refuse_outsiders_and_an_approvers_click_runs_the_deploy() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let slack = FakeSlack::start().await;
    slack.set_user("U0BOB", "bob");
    slack.set_user("U0MALLORY", "mallory");
    // The gate is open from the start: the deploy runs as soon as it may.
    std::fs::write(dir.path().join("go"), "").expect("open the gate");
    let apps = gated_project(dir.path()).replace(
        r#""notify_room": "C0DEPLOYS"}"#,
        r#""notify_room": "C0DEPLOYS",
            "approvals": {"staging": {"from": ["bob", "U0CAROL1"], "expires": "10m"}}}"#,
    );
    let chima = Chima::start_with(dir.path(), &slack, None, &apps).await;

    type_line(&slack, "chima deploy app to staging", "500.100");
    reply(
        &slack,
        &chima,
        "500.100",
        "Deployment #1 of app/main to staging is waiting for 1 approval from bob, U0CAROL1.",
    )
    .await;
    // The deployment's message, with its buttons, in the thread.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let request = loop {
        if let Some(p) = slack.posted().into_iter().find(|p| {
            p.thread_ts.as_deref() == Some("500.100")
                && p.blocks
                    .as_ref()
                    .is_some_and(|b| b.to_string().contains("\"action_id\":\"approve\""))
        }) {
            break p;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no message with an Approve button: {:#?}\n{}",
            slack.posted(),
            chima.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        request
            .text
            .as_deref()
            .unwrap_or("")
            .contains("is waiting for 1 approval from bob, U0CAROL"),
        "{request:#?}"
    );
    let click = |user: &str| {
        slack
            .click(&request.channel, &request.ts, "approve", user)
            .expect("the Approve button is there")
    };

    // mallory is not in `from`; alice asked for it: both refused, to them alone.
    slack.push_event(click("U0MALLORY"));
    slack.push_event(click("U0ALICE"));
    let got = responded_until(&slack, &chima, "two refusals", |r| r.len() >= 2).await;
    let texts: Vec<&str> = got.iter().map(text_of).collect();
    assert!(
        texts.contains(
            &"mallory may not approve deployments of app to staging; ask one of bob, U0CAROL1."
        ),
        "{got:#?}"
    );
    assert!(
        texts.contains(
            &"You asked for deployment #1; someone else from bob, U0CAROL1 must approve it."
        ),
        "{got:#?}"
    );
    for r in &got {
        assert_eq!(r.response_type.as_deref(), Some("ephemeral"), "{got:#?}");
        assert!(!r.replace_original, "{got:#?}");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !slack.posted().iter().chain(std::iter::empty()).any(|p| p
            .text
            .as_deref()
            .unwrap_or("")
            .contains("is running")),
        "nothing runs before an approver approves: {:#?}",
        slack.posted()
    );
    // A button that is not there cannot be clicked (the fake is as strict as Slack).
    assert!(
        slack
            .click(&request.channel, &request.ts, "approve-all", "U0BOB")
            .is_none()
    );

    // bob (listed by name, resolved to his id at start) approves: it runs.
    slack.push_event(click("U0BOB"));
    let got = responded_until(&slack, &chima, "bob's approval", |r| {
        r.iter()
            .any(|r| text_of(r).contains("bob approved deployment #1"))
    })
    .await;
    assert!(
        got.iter().any(|r| text_of(r)
            == "bob approved deployment #1 of app/main to staging; it is queued and runs next."),
        "{got:#?}"
    );
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let edited = slack
            .updated()
            .into_iter()
            .filter(|u| u.ts == request.ts)
            .filter_map(|u| u.text)
            .collect::<Vec<_>>();
        if edited.iter().any(|t| t.contains("was successful")) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the deploy did not succeed: {edited:#?}\n{}",
            chima.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Everyone in the thread sees who approved it.
    let posted = slack.posted();
    assert!(
        posted
            .iter()
            .any(|p| p.thread_ts.as_deref() == Some("500.100")
                && p.text.as_deref()
                    == Some("alice's deployment #1 of app/main to staging was approved by bob.")),
        "{posted:#?}"
    );
    // The buttons are gone once it is approved: a late click finds nothing to press.
    assert!(
        slack
            .click(&request.channel, &request.ts, "approve", "U0CAROL1")
            .is_none()
    );
    chima.stop().await;
}
