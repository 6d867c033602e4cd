//! The chat deliverer, run by the outbox loop, with a real SQLite store and the fake Slack: one message per
//! deployment, edited in place; rate limits, outages and permanent errors.

use std::sync::Arc;
use std::time::Duration;

use chima_outbox::{OutboxOptions, StoreChatRecords};
use chima_slack::ChatDeliverer;
use chima_store::{NewDeployment, NewLogLine, Outcome, Store, Stream};
use chima_testkit::slack::{Failure, FakeSlack, PostedMessage, UpdatedMessage};
use serde_json::json;
use tempfile::TempDir;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::harness::{PATIENCE, api, eventually};

const LEASE: Duration = Duration::from_secs(300);

struct Env {
    _dir: TempDir,
    store: Arc<dyn Store>,
    slack: FakeSlack,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// The log link faseng would give.
fn log_url(id: i64) -> String {
    format!("http://faseng.test/deployments/{id}")
}

impl Env {
    async fn start(fallback: Option<&'static str>) -> Env {
        let dir = tempfile::tempdir().expect("temporary folder");
        let store = chima_store::open(&format!(
            "sqlite://{}",
            dir.path().join("store.db").display()
        ))
        .await
        .expect("an SQLite store");
        let slack = FakeSlack::start().await;
        // The channels the cases post in, with the bot in them (the fake refuses others,
        // as Slack does).
        for (id, name) in [
            ("C1", "ops"),
            ("C0DOWN", "down"),
            ("C0FALLBACK", "fallback"),
        ] {
            slack.set_channel(id, name);
        }
        let (stop, shutdown) = watch::channel(false);
        let deliverer = ChatDeliverer::new(
            Arc::new(StoreChatRecords(Arc::clone(&store))),
            api(&slack),
            Arc::new(log_url),
            Arc::new(move |app: &str| {
                fallback.map(|channel| {
                    assert_eq!(app, "web", "the fallback is asked for the deployment's app");
                    channel.to_owned()
                })
            }),
        );
        let task = tokio::spawn(chima_outbox::run(
            Arc::clone(&store),
            Arc::new(deliverer),
            shutdown,
            OutboxOptions::chat(),
        ));
        Env {
            _dir: dir,
            store,
            slack,
            stop,
            task,
        }
    }

    /// Queues a deployment of `web` to `environment` whose chat target faseng decided
    /// from `notify` (`{adapter, room, thread_ts}`), as its intake records it.
    async fn create(&self, key: &str, environment: &str, notify: serde_json::Value) -> i64 {
        self.create_with(key, environment, notify, None).await
    }

    /// [`Env::create`], made an emergency (break-glass) with `emergency` as its reason.
    async fn create_with(
        &self,
        key: &str,
        environment: &str,
        notify: serde_json::Value,
        emergency: Option<&str>,
    ) -> i64 {
        let text = |k: &str| notify.get(k).and_then(|v| v.as_str()).map(str::to_owned);
        let chat = text("room").map(|room| chima_payload::ChatTarget {
            adapter: text("adapter").unwrap_or_else(|| "slack".to_owned()),
            room,
            thread_ts: text("thread_ts"),
        });
        let notes = chima_payload::FasengNotes {
            delivery: None,
            identity: chima_payload::Identity::github("alice"),
            chat,
            notes: Vec::new(),
            emergency: emergency.map(str::to_owned),
        };
        let payload = chima_payload::DeploymentPayload::with_notes(
            &json!({"name": "web", "notify": notify, "config": {}}),
            &notes,
        );
        let new = NewDeployment {
            source_key: key.to_owned(),
            requester: "alice".to_owned(),
            app: "web".to_owned(),
            environment: environment.to_owned(),
            repository: "acme/web".to_owned(),
            git_ref: "main".to_owned(),
            sha: Some("0123456789abcdef0123456789abcdef01234567".to_owned()),
            task: "deploy".to_owned(),
            hosts: None,
            provider: "script".to_owned(),
            payload,
            github_deployment_id: None,
            notify: vec!["chat".to_owned()],
            timeout_secs: None,
        };
        self.store
            .create_deployment(new)
            .await
            .expect("create")
            .deployment
            .id
    }

    async fn run(&self, id: i64) {
        let claimed = self
            .store
            .claim("worker-1", LEASE)
            .await
            .expect("claim")
            .expect("a claimable deployment");
        assert_eq!(claimed.id, id);
    }

    async fn finish(&self, id: i64, outcome: Outcome) {
        self.store
            .finish(id, "worker-1", outcome)
            .await
            .expect("finish");
    }

    /// Waits until every chat event of the deployment is delivered.
    async fn delivered(&self, id: i64) {
        let store = Arc::clone(&self.store);
        eventually(
            &format!("the chat events of deployment {id} delivered"),
            PATIENCE,
            || {
                let store = Arc::clone(&store);
                async move {
                    let entries = store.outbox_for_deployment(id).await.expect("outbox");
                    (!entries.is_empty() && entries.iter().all(|e| e.delivered_at.is_some()))
                        .then_some(())
                }
            },
        )
        .await;
    }

    async fn posted_where(&self, what: &str, pred: impl Fn(&PostedMessage) -> bool) {
        self.slack
            .wait_for(what, PATIENCE, |s| s.posted().iter().any(&pred))
            .await;
    }

    async fn updated_where(&self, what: &str, pred: impl Fn(&UpdatedMessage) -> bool) {
        self.slack
            .wait_for(what, PATIENCE, |s| s.updated().iter().any(&pred))
            .await;
    }

    async fn stop(self) -> (FakeSlack, Arc<dyn Store>) {
        let _ = self.stop.send(true);
        tokio::time::timeout(PATIENCE, self.task)
            .await
            .expect("the sender stops when told")
            .expect("the sender did not panic");
        (self.slack, self.store)
    }
}

fn text(message: Option<&String>) -> &str {
    message.map(String::as_str).unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_message_in_the_thread_then_edits_until_success() {
    let env = Env::start(None).await;
    let id = env
        .create(
            "ok-1",
            "production",
            json!({"adapter": "slack", "room": "C1", "user": "U0ALICE", "user_name": "alice", "thread_ts": "111.222"}),
        )
        .await;
    let head = format!("alice's deployment #{id} of web/main to production");
    env.posted_where("the queued message", |p| {
        text(p.text.as_ref()).starts_with(&format!("{head} is queued."))
    })
    .await;

    env.run(id).await;
    env.updated_where("the running edit", |u| {
        text(u.text.as_ref()).starts_with(&format!("{head} is running. {}", log_url(id)))
    })
    .await;

    env.finish(id, Outcome::succeeded(0)).await;
    env.delivered(id).await;
    let (slack, store) = env.stop().await;

    let posted = slack.posted();
    assert_eq!(posted.len(), 1, "one message per deployment: {posted:?}");
    let post = &posted[0];
    assert_eq!(post.channel, "C1");
    assert_eq!(post.thread_ts.as_deref(), Some("111.222"));
    let updates = slack.updated();
    assert!(!updates.is_empty());
    assert!(
        updates.iter().all(|u| u.channel == "C1" && u.ts == post.ts),
        "{updates:?}"
    );
    let last = updates.last().expect("a last edit");
    assert_eq!(
        text(last.text.as_ref()),
        format!("{head} was successful. {}", log_url(id))
    );
    let blocks = last.blocks.as_ref().expect("blocks").to_string();
    assert!(blocks.contains("View log"), "{blocks}");
    assert!(blocks.contains(&log_url(id)), "{blocks}");
    let saved = store
        .chat_message(id)
        .await
        .expect("read")
        .expect("the message ids are saved");
    assert_eq!(
        (saved.channel.as_str(), saved.ts.as_str()),
        ("C1", post.ts.as_str())
    );
    // Every call carried the bot token.
    assert!(slack.all_calls().iter().all(|c| c.authorization.as_deref()
        == Some(format!("Bearer {}", chima_testkit::slack::BOT_TOKEN).as_str())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_shows_the_last_log_lines_and_the_exit_code() {
    let env = Env::start(None).await;
    let id = env
        .create("fail-1", "staging", json!({"room": "C0DEPLOYS"}))
        .await;
    env.run(id).await;
    let lines: Vec<NewLogLine> = (1..=15)
        .map(|i| NewLogLine {
            stream: if i % 2 == 0 {
                Stream::Stderr
            } else {
                Stream::Stdout
            },
            line: format!("step {i} <done>"),
            at: chrono::Utc::now(),
        })
        .collect();
    env.store.append_logs(id, &lines).await.expect("append");
    env.finish(id, Outcome::failed(Some(3), "exited with code 3"))
        .await;
    env.delivered(id).await;
    let (slack, _store) = env.stop().await;

    assert_eq!(slack.posted().len(), 1);
    let last = slack
        .updated()
        .last()
        .cloned()
        .or_else(|| {
            slack.posted().last().map(|p| UpdatedMessage {
                channel: p.channel.clone(),
                ts: p.ts.clone(),
                text: p.text.clone(),
                blocks: p.blocks.clone(),
            })
        })
        .expect("a final message");
    let final_text = text(last.text.as_ref());
    assert!(
        final_text.starts_with(&format!(
            "alice's deployment #{id} of web/main to staging failed. {}\nExit code 3.\n```\n",
            log_url(id)
        )),
        "{final_text}"
    );
    assert!(final_text.contains("step 15 &lt;done&gt;"), "{final_text}");
    assert!(final_text.contains("step 6 "), "{final_text}");
    assert!(
        !final_text.contains("step 5 "),
        "only the last 10 lines: {final_text}"
    );
    let blocks = last.blocks.expect("blocks").to_string();
    assert!(blocks.contains("Exit code 3."), "{blocks}");
    assert!(blocks.contains("step 15"), "{blocks}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_are_waited_out_and_messages_stay_in_order() {
    let env = Env::start(None).await;
    env.slack.fail_next(
        "chat.postMessage",
        2,
        Failure::RateLimited {
            retry_after_secs: 1,
        },
    );
    let id = env
        .create(
            "rl-1",
            "production",
            json!({"room": "C1", "thread_ts": "111.222"}),
        )
        .await;
    env.run(id).await;
    env.finish(id, Outcome::succeeded(0)).await;
    env.delivered(id).await;
    let (slack, store) = env.stop().await;

    let calls = slack.calls("chat.postMessage");
    assert_eq!(calls.len(), 3, "two answered 429, the third posted");
    let posted = slack.posted();
    assert_eq!(posted.len(), 1);
    assert_eq!(posted[0].thread_ts.as_deref(), Some("111.222"));
    // The last word is the final state, whichever entry carried it.
    let last_text = slack
        .updated()
        .last()
        .and_then(|u| u.text.clone())
        .or_else(|| posted[0].text.clone())
        .expect("a text");
    assert!(last_text.contains("was successful."), "{last_text}");
    let entries = store.outbox_for_deployment(id).await.expect("outbox");
    assert_eq!(entries[0].attempts, 2, "{entries:?}");
    assert!(
        entries[0]
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("rate-limited")),
        "{entries:?}"
    );
    assert!(entries.iter().all(|e| e.delivered_at.is_some()));
    // Delivered in order: each entry after the one before it.
    for pair in entries.windows(2) {
        assert!(pair[0].delivered_at <= pair[1].delivered_at, "{entries:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_loses_nothing_and_does_not_hold_up_other_deployments() {
    let env = Env::start(None).await;
    // Slack is down for channel C0DOWN (5xx for every call there), fine elsewhere.
    env.slack.fail_channel("C0DOWN", Failure::Status(503));
    let down = env
        .create("down-1", "production", json!({"room": "C0DOWN"}))
        .await;
    env.run(down).await;
    env.finish(down, Outcome::succeeded(0)).await;
    let up = env.create("up-1", "staging", json!({"room": "C1"})).await;
    env.run(up).await;
    env.finish(up, Outcome::succeeded(0)).await;

    // The other deployment goes out while the first one's keep failing.
    env.delivered(up).await;
    let store = Arc::clone(&env.store);
    eventually("a failed attempt recorded", PATIENCE, || {
        let store = Arc::clone(&store);
        async move {
            let entries = store.outbox_for_deployment(down).await.expect("outbox");
            (entries[0].attempts >= 1).then_some(entries)
        }
    })
    .await;
    let entries = env.store.outbox_for_deployment(down).await.expect("outbox");
    assert!(
        entries.iter().all(|e| e.delivered_at.is_none()),
        "{entries:?}"
    );
    assert!(
        entries[0]
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("503")),
        "{entries:?}"
    );

    // Slack is back: everything is delivered, once.
    env.slack.clear_failures();
    env.delivered(down).await;
    let (slack, _store) = env.stop().await;
    let posted = slack.posted();
    assert_eq!(
        posted.iter().filter(|p| p.channel == "C0DOWN").count(),
        1,
        "{posted:?}"
    );
    assert_eq!(posted.iter().filter(|p| p.channel == "C1").count(), 1);
    let final_down = slack
        .updated()
        .into_iter()
        .rfind(|u| u.channel == "C0DOWN")
        .and_then(|u| u.text)
        .or_else(|| {
            posted
                .iter()
                .find(|p| p.channel == "C0DOWN")
                .and_then(|p| p.text.clone())
        })
        .expect("a text");
    assert!(final_down.contains("was successful."), "{final_down}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_room_nothing_is_sent_unless_the_app_has_a_fallback() {
    let env = Env::start(None).await;
    let id = env.create("none-1", "production", json!(null)).await;
    env.run(id).await;
    env.finish(id, Outcome::succeeded(0)).await;
    // A deployment from chima's shell adapter has a room, but not a Slack one.
    let shell = env
        .create(
            "shell-1",
            "staging",
            json!({"adapter": "shell", "room": "shell"}),
        )
        .await;
    env.delivered(id).await;
    env.delivered(shell).await;
    let (slack, store) = env.stop().await;
    assert!(slack.calls("chat.postMessage").is_empty());
    assert!(slack.calls("chat.update").is_empty());
    assert_eq!(store.chat_message(id).await.expect("read"), None);

    let env = Env::start(Some("C0FALLBACK")).await;
    let id = env.create("fallback-1", "production", json!({})).await;
    env.run(id).await;
    env.finish(id, Outcome::succeeded(0)).await;
    env.delivered(id).await;
    let (slack, _store) = env.stop().await;
    let posted = slack.posted();
    assert_eq!(posted.len(), 1);
    assert_eq!(posted[0].channel, "C0FALLBACK");
    assert_eq!(posted[0].thread_ts, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_errors_are_given_up_and_deleted_messages_posted_anew() {
    let env = Env::start(None).await;
    // A channel Slack does not know (channel_not_found), and one the bot is not in
    // (not_in_channel): both refused by the fake as by Slack.
    env.slack.set_channel_without_bot("C0PRIVATE", "private");
    for (key, room) in [("gone-1", "C0GONE"), ("private-1", "C0PRIVATE")] {
        let gone = env.create(key, "production", json!({ "room": room })).await;
        env.run(gone).await;
        env.finish(gone, Outcome::succeeded(0)).await;
        env.delivered(gone).await;
        let entries = env.store.outbox_for_deployment(gone).await.expect("outbox");
        assert!(
            entries.iter().all(|e| e.attempts == 0),
            "given up at once: {entries:?}"
        );
    }
    assert!(env.slack.posted().is_empty());
    let refusals: Vec<_> = env.slack.calls("chat.postMessage");
    assert!(!refusals.is_empty());

    // Someone deleted the message: the next state change is posted anew.
    let id = env
        .create(
            "deleted-1",
            "staging",
            json!({"room": "C1", "thread_ts": "111.222"}),
        )
        .await;
    env.posted_where("the first message", |p| p.channel == "C1")
        .await;
    env.slack.fail_next(
        "chat.update",
        1,
        Failure::Error("message_not_found".to_owned()),
    );
    env.run(id).await;
    env.finish(id, Outcome::succeeded(0)).await;
    env.delivered(id).await;
    let (slack, store) = env.stop().await;
    let posted: Vec<_> = slack
        .posted()
        .into_iter()
        .filter(|p| p.channel == "C1")
        .collect();
    assert_eq!(posted.len(), 2, "{posted:?}");
    assert!(
        posted
            .iter()
            .all(|p| p.thread_ts.as_deref() == Some("111.222"))
    );
    let saved = store.chat_message(id).await.expect("read").expect("saved");
    assert_eq!(
        saved.ts, posted[1].ts,
        "the new message is the one edited from now on"
    );
}

/// The final message of deployment `id`'s thread: the last edit, else the post.
fn final_message(slack: &FakeSlack) -> UpdatedMessage {
    slack
        .updated()
        .last()
        .cloned()
        .or_else(|| {
            slack.posted().last().map(|p| UpdatedMessage {
                channel: p.channel.clone(),
                ts: p.ts.clone(),
                text: p.text.clone(),
                blocks: p.blocks.clone(),
            })
        })
        .expect("a final message")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_log_lines_stay_within_slacks_limits_and_are_accepted() {
    let env = Env::start(None).await;
    let id = env
        .create("huge-1", "staging", json!({"room": "C0DEPLOYS"}))
        .await;
    env.run(id).await;
    // Lines of `&` and `<`: five times longer once escaped, 10 of them far over the
    // 3,000 characters Slack takes in a section.
    let lines: Vec<NewLogLine> = (1..=15)
        .map(|i| NewLogLine {
            stream: Stream::Stdout,
            line: format!("line {i} {}", "&<".repeat(400)),
            at: chrono::Utc::now(),
        })
        .collect();
    env.store.append_logs(id, &lines).await.expect("append");
    env.finish(id, Outcome::failed(Some(3), "exited with code 3"))
        .await;
    env.delivered(id).await;
    let (slack, store) = env.stop().await;

    // Every post and edit was accepted as sent (no refusal, no text-only fallback).
    let calls = slack.calls("chat.postMessage").len() + slack.calls("chat.update").len();
    assert_eq!(calls, slack.posted().len() + slack.updated().len());
    let entries = store.outbox_for_deployment(id).await.expect("outbox");
    assert!(entries.iter().all(|e| e.attempts == 0), "{entries:?}");
    let last = final_message(&slack);
    let blocks = last.blocks.expect("the blocks were kept");
    let sections: Vec<&str> = blocks
        .as_array()
        .expect("blocks")
        .iter()
        .filter(|b| b["type"] == "section")
        .filter_map(|b| b["text"]["text"].as_str())
        .collect();
    assert_eq!(sections.len(), 2, "{blocks}");
    for text in &sections {
        assert!(
            text.chars().count() <= chima_slack::MAX_SECTION_CHARS,
            "{} characters",
            text.chars().count()
        );
    }
    let failure = sections[1];
    assert!(
        failure.starts_with("Exit code 3.\n```\n… (earlier lines in the log)"),
        "{failure}"
    );
    assert!(
        failure.contains("line 15 &amp;&lt;"),
        "the last line is shown: {failure}"
    );
    assert!(failure.ends_with("\n```"), "{failure}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocks_refused_as_too_long_fall_back_to_text() {
    let env = Env::start(None).await;
    // https://api.slack.com/methods/chat.postMessage#errors: `msg_blocks_too_long`.
    env.slack.fail_next(
        "chat.postMessage",
        1,
        Failure::Error("msg_blocks_too_long".to_owned()),
    );
    let id = env
        .create(
            "long-1",
            "staging",
            json!({"room": "C1", "thread_ts": "1.2"}),
        )
        .await;
    env.posted_where("the text-only message", |p| p.blocks.is_none())
        .await;
    env.delivered(id).await;
    let (slack, _store) = env.stop().await;
    let posted = slack.posted();
    assert_eq!(posted.len(), 1, "{posted:?}");
    assert!(
        text(posted[0].text.as_ref()).contains(&format!(
            "deployment #{id} of web/main to staging is queued."
        )),
        "{posted:?}"
    );
    assert_eq!(
        slack.calls("chat.postMessage").len(),
        2,
        "blocks, then text"
    );
}

/// A break-glass deployment is marked EMERGENCY with its reason in its own message (in
/// the command's thread) and announced once in the app's notify_room, every user text
/// escaped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn break_glass_is_marked_and_announced_in_the_notify_room_once() {
    let env = Env::start(Some("C0FALLBACK")).await;
    let id = env
        .create_with(
            "glass-1",
            "production",
            json!({"adapter": "slack", "room": "C1", "thread_ts": "111.222"}),
            Some("db <down> & out"),
        )
        .await;
    env.posted_where("the announcement", |p| {
        p.channel == "C0FALLBACK" && text(p.text.as_ref()).contains("EMERGENCY (break-glass)")
    })
    .await;
    env.run(id).await;
    env.finish(id, Outcome::succeeded(0)).await;
    env.delivered(id).await;
    let (slack, _) = env.stop().await;
    let posted = slack.posted();
    assert_eq!(
        posted.len(),
        2,
        "the message and one announcement: {posted:#?}"
    );
    let own = posted
        .iter()
        .find(|p| p.channel == "C1")
        .expect("the thread's message");
    assert_eq!(own.thread_ts.as_deref(), Some("111.222"));
    assert!(
        text(own.text.as_ref()).starts_with(&format!(
            "alice's EMERGENCY (break-glass: db &lt;down&gt; &amp; out) deployment #{id} of web/main to production"
        )),
        "{own:?}"
    );
    let announced = posted
        .iter()
        .find(|p| p.channel == "C0FALLBACK")
        .expect("the announcement");
    assert_eq!(announced.thread_ts, None);
    let t = text(announced.text.as_ref());
    assert!(
        t.contains("*EMERGENCY (break-glass)*: alice deploys *web/main* to *production*"),
        "{t}"
    );
    assert!(t.contains("Reason: db &lt;down&gt; &amp; out"), "{t}");
    assert!(t.contains(&log_url(id)), "{t}");
    // Later edits change the thread's message only.
    assert!(
        slack.updated().iter().all(|u| u.channel == "C1"),
        "{:?}",
        slack.updated()
    );
}
