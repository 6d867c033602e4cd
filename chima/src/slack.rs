//! chima on Slack: Socket Mode (default: no public URL needed) and, when
//! `SLACK_SIGNING_SECRET` is set, the Events API and `/deploy` slash command
//! on `CHIMA_LISTEN`. Every line addressed to the bot is answered in the thread
//! of the command; a slash command through its `response_url` (`in_channel`, up to
//! Slack's 5 posts), which works where the bot is not a member (DMs, private
//! channels), and the deployment it starts reports there too while the URL lasts.
//!
//! Slack's text format is handled here and in chima-slack, never in the bot core: lines
//! arrive decoded (chima-slack's `Incoming`), and every reply is escaped here before it
//! is posted (the terminal adapter shows the same replies unescaped).

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use chima_config::{Apps, Requester, Secret};
use chima_slack::{
    Handler, Incoming, IncomingKind, MAX_TEXT_CHARS, Message, SlackApi, SlackConfig, SlackError,
};

use crate::backend::ChatOut;
use crate::bot::{Bot, Chat, RESPONSE_URL_USES};
use crate::settings::Settings;

pub fn main(settings: &Settings) -> ExitCode {
    chima_settings::init_tracing("info");
    let Some(runtime) = crate::settings::runtime() else {
        return ExitCode::from(2);
    };
    match runtime.block_on(run(settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chima: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(settings: &Settings) -> anyhow::Result<()> {
    let cfg = settings
        .slack_config()
        .context("SLACK_BOT_TOKEN is not set")?;
    let api = SlackApi::new(&cfg).context("cannot set up the Slack client")?;
    let me = api
        .auth_test()
        .await
        .context("Slack refused SLACK_BOT_TOKEN (auth.test)")?;
    let mut apps = Apps::load(&settings.deploy.apps).map_err(|e| anyhow::anyhow!("{e}"))?;
    resolve_names(&api, &mut apps).await;
    let apps = Arc::new(apps);
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();
    let (backend, local_store) =
        crate::backend::open(settings, apps.clone(), ChatOut::Transport).await?;
    if let Some(store) = local_store {
        // No faseng: the in-process engine's notifications go to Slack from here.
        let rooms = apps.clone();
        let chat = chima_slack::ChatDeliverer::new(
            Arc::new(chima_outbox::StoreChatRecords(store.clone())),
            api.clone(),
            Arc::new(|_| String::new()),
            Arc::new(move |app: &str| rooms.get(app).and_then(|a| a.notify_room.clone())),
        );
        tasks.push(tokio::spawn(chima_outbox::run(
            store,
            Arc::new(chat),
            shutdown_rx.clone(),
            chima_outbox::OutboxOptions::chat(),
        )));
    }
    let mut addressee = settings.addressee();
    addressee.user_id = Some(me.user_id.clone());
    let bot = Arc::new(Bot {
        addressee,
        apps,
        default_env: settings.default_environment.clone(),
        backend,
    });
    let handler: Arc<dyn Handler> = Arc::new(SlackHandler {
        bot: bot.clone(),
        api: api.clone(),
    });
    if let Some(secret) = cfg.signing_secret.clone() {
        let listener = tokio::net::TcpListener::bind(&settings.slack_in.listen)
            .await
            .with_context(|| {
                format!(
                    "cannot listen on {} (CHIMA_LISTEN)",
                    settings.slack_in.listen
                )
            })?;
        tracing::info!(listen = %settings.slack_in.listen, "serving the Slack Events API");
        let router = chima_slack::events_router(secret, api.clone(), handler.clone());
        let mut stop = shutdown_rx.clone();
        tasks.push(tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await;
        }));
    }
    if cfg.app_token.is_some() {
        let (cfg, api, handler, stop) = (
            cfg.clone(),
            api.clone(),
            handler.clone(),
            shutdown_rx.clone(),
        );
        tasks.push(tokio::spawn(async move {
            if let Err(e) = chima_slack::run_socket_mode(cfg, api, handler, stop).await {
                tracing::error!(error = %e, "Socket Mode stopped");
            }
        }));
    }
    if tasks.is_empty() {
        anyhow::bail!(
            "SLACK_BOT_TOKEN is set but neither SLACK_APP_TOKEN (Socket Mode) nor SLACK_SIGNING_SECRET (Events API) is: chima would hear nothing"
        );
    }
    tracing::info!(bot = %me.name, "chima is on Slack");
    chima_settings::shutdown_signal().await;
    let _ = shutdown_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    bot.backend.stop().await;
    Ok(())
}

/// Turns the user and room names of app.json into Slack ids, once: permissions then
/// compare ids, so renaming oneself (or a channel) to an allowed name grants nothing.
/// A name Slack does not know matches nobody, and is logged so that it can be fixed.
async fn resolve_names(api: &SlackApi, apps: &mut Apps) {
    let users = match api.user_ids_by_name().await {
        Ok(u) => u,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list Slack users (users.list, scope users:read): user names in app.json match nobody until chima restarts; ids still work");
            Default::default()
        }
    };
    let rooms = match api.channel_ids_by_name().await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list Slack channels (conversations.list, scopes channels:read, groups:read): channel names in app.json match nothing until chima restarts; ids still work");
            Default::default()
        }
    };
    let unresolved = apps.resolve_chat_names(&users, &rooms);
    if !unresolved.is_empty() {
        tracing::warn!(
            names = %unresolved.join(", "),
            "these names in app.json's allowed_users/allowed_rooms are not Slack users or channels: they match nobody"
        );
    }
}

struct SlackHandler {
    bot: Arc<Bot>,
    api: SlackApi,
}

#[async_trait::async_trait]
impl Handler for SlackHandler {
    async fn handle(&self, incoming: Incoming) {
        let user_name = match &incoming.user_name {
            Some(n) => n.clone(),
            None => self
                .api
                .user_name(&incoming.user_id)
                .await
                .ok()
                .flatten()
                .unwrap_or_else(|| incoming.user_id.clone()),
        };
        let room_name = self
            .api
            .channel_name(&incoming.channel_id)
            .await
            .ok()
            .flatten();
        let chat = Chat {
            requester: Requester {
                user_id: Some(incoming.user_id.clone()),
                user_name,
                room_id: Some(incoming.channel_id.clone()),
                room_name,
            },
            adapter: "slack",
            room: incoming.channel_id.clone(),
            thread_ts: incoming.thread_ts.clone(),
            response_url: match &incoming.kind {
                // Only Slack's (or the configured API host's): never posted elsewhere.
                IncomingKind::SlashCommand { response_url, .. } => Some(response_url.clone())
                    .filter(|u| chima_slack::response_url_allowed(u, self.api.api_url())),
                _ => None,
            },
            response_uses: Default::default(),
        };
        // A button click is answered to the clicker alone, at the click's response_url.
        let clicker_url = match &incoming.kind {
            IncomingKind::Button { response_url } => Some(response_url.clone())
                .filter(|u| chima_slack::response_url_allowed(u, self.api.api_url())),
            _ => None,
        };
        let response_url = chat.response_url.clone();
        let response_uses = chat.response_uses.clone();
        // A slash command's text is the command's arguments: `/deploy app to prod`.
        let (line, direct) = match &incoming.kind {
            IncomingKind::SlashCommand { .. } => (slash_line(&incoming.text), true),
            IncomingKind::Button { .. } => (incoming.text.clone(), true),
            _ => (incoming.text.clone(), incoming.direct),
        };
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        let bot = self.bot.clone();
        let work =
            tokio::spawn(async move { bot.handle_as(&line, &chat, &tx, false, direct).await });
        // A slash command is answered through its response_url while it has uses
        // left (the bot may not be in the channel: a DM, a private channel), else
        // with chat.postMessage.
        let mut response_url = response_url;
        while let Some(text) = rx.recv().await {
            if let Some(url) = &clicker_url {
                match self
                    .api
                    .respond_to_clicker(url, &reply_message(&text))
                    .await
                {
                    Ok(()) => continue,
                    Err(e) => {
                        tracing::warn!(error = %e, channel = %incoming.channel_id, "cannot answer the click through its response_url; posting the reply in the thread instead");
                    }
                }
            }
            if let Some(url) = response_url.clone() {
                if response_uses.load(Ordering::SeqCst) < RESPONSE_URL_USES {
                    response_uses.fetch_add(1, Ordering::SeqCst);
                    match self.api.respond(&url, &reply_message(&text), false).await {
                        Ok(()) => continue,
                        Err(e) => {
                            tracing::warn!(error = %e, channel = %incoming.channel_id, "cannot answer the slash command through its response_url; posting the reply instead");
                            response_url = None;
                        }
                    }
                } else {
                    response_url = None;
                }
            }
            reply(
                &self.api,
                &incoming.channel_id,
                incoming.thread_ts.as_deref(),
                &text,
            )
            .await;
        }
        let _ = work.await;
    }
}

/// Rate-limited replies are tried again this many times before they are given up.
const REPLY_RETRIES: u32 = 3;

/// The longest `Retry-After` a reply waits for; a longer one is waited this long.
const MAX_REPLY_WAIT: Duration = Duration::from_secs(120);

/// Without a `Retry-After`, a rate-limited reply waits this long. `chat.postMessage`
/// allows about one message a second per channel
/// (<https://api.slack.com/methods/chat.postMessage#rate_limiting>).
const DEFAULT_REPLY_WAIT: Duration = Duration::from_secs(1);

/// The message of a reply: the bot's text shown as written. Its `<app>`, `<env>` and
/// users' `&` would otherwise be Slack markup, and dropped
/// (<https://api.slack.com/reference/surfaces/formatting#escaping>); cut to Slack's
/// 40,000 characters (`msg_too_long` beyond).
fn reply_message(text: &str) -> Message {
    Message::text(chima_slack::cap(&chima_slack::escape(text), MAX_TEXT_CHARS))
}

/// Posts one reply in the thread. A 429 is waited out (its `Retry-After`,
/// <https://api.slack.com/apis/rate-limits>) and the reply tried again, up to
/// [`REPLY_RETRIES`] times, so that a burst of replies is slowed down rather than lost;
/// replies to one line go out one after the other, in order. Other failures are logged:
/// the reply cannot be given anywhere else.
async fn reply(api: &SlackApi, channel: &str, thread_ts: Option<&str>, text: &str) {
    let msg = reply_message(text);
    let mut retries = 0;
    loop {
        match api.post_message(channel, thread_ts, &msg).await {
            Ok(_) => return,
            Err(SlackError::RateLimited { retry_after, .. }) if retries < REPLY_RETRIES => {
                retries += 1;
                let wait = retry_after
                    .unwrap_or(DEFAULT_REPLY_WAIT)
                    .min(MAX_REPLY_WAIT);
                tracing::info!(%channel, retry = retries, "Slack rate-limited a reply; posting it again in {wait:?}");
                tokio::time::sleep(wait).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, %channel, retries, "cannot reply on Slack; the reply is lost");
                return;
            }
        }
    }
}

/// `/deploy <args>`: the arguments are a deploy unless they start with another
/// command (`/deploy lock app in prod`, `/deploy help`).
fn slash_line(args: &str) -> String {
    let first = args
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    let commands = [
        "deploy", "deploys", "where", "lock", "unlock", "cancel", "rollback", "status", "help",
    ];
    if first.is_empty() {
        "help".to_string()
    } else if commands.contains(&first.as_str()) || first.starts_with("deploy") {
        args.to_string()
    } else {
        format!("deploy {args}")
    }
}

impl Settings {
    /// The Slack settings, when `SLACK_BOT_TOKEN` is set.
    pub fn slack_config(&self) -> Option<SlackConfig> {
        let bot = self.slack.bot_token()?;
        let given = |v: &Option<String>| v.as_deref().filter(|t| !t.is_empty()).map(Secret::new);
        Some(SlackConfig {
            api_url: self.slack.slack_api_url.clone(),
            bot_token: Secret::new(bot),
            app_token: given(&self.slack_in.slack_app_token),
            signing_secret: given(&self.slack_in.slack_signing_secret),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_escaped_once_and_capped() {
        let msg = reply_message("chima deploy <app>[/<ref>] - locked: db & cache");
        assert_eq!(
            msg.text,
            "chima deploy &lt;app&gt;[/&lt;ref&gt;] - locked: db &amp; cache"
        );
        assert_eq!(msg.blocks, None);
        let long = reply_message(&"<".repeat(50_000));
        assert!(long.text.chars().count() <= MAX_TEXT_CHARS);
        assert!(long.text.contains("… (cut"), "visibly cut");
    }
}
