//! The web pages: `/` (every app and environment with its current and last
//! deployment and its lock) and `/deployments/{id}` (one deployment and its
//! log, appended live from `/deployments/{id}/events` while it runs).
//!
//! Nothing here is public: every page and the event stream need the `sig` of
//! their link ([`crate::links::LinkSigner`]). Deployment links are in the
//! GitHub status (`log_url`) and the chat messages; the index link is written
//! to faseng's log at start. The index links each deployment with its own
//! signed link. All links are relative, so the pages work behind a prefix.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use chima_store::{
    Deployment, DeploymentFilter, DeploymentState, Lock, LogLine, Store, StoreError,
};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::Deserialize;

use super::AppState;
use super::html::{self, ago, badge, esc, sha_link, time};
use super::live;

#[derive(Debug, Deserialize)]
pub struct Signed {
    sig: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct EventsQuery {
    sig: Option<String>,
    /// The last sequence number the page shows.
    after: Option<String>,
}

/// The most log lines one page shows (the last ones).
const PAGE_LINES: i64 = 20_000;
/// The most log text one page shows; older lines are left out past it.
const PAGE_BYTES: usize = 8 << 20;
/// Lines per store read when building a page.
const READ_CHUNK: i64 = 5_000;
/// Recent deployments the index looks at for apps and environments that are
/// not in app.json, and shows at the bottom (the newest of them).
const RECENT_SCAN: i64 = 200;
const RECENT_SHOWN: usize = 25;
/// Deployments per app and environment the index reads to find the current
/// and last finished one (more queries only when all of them are queued).
const ENV_SCAN: i64 = 20;
/// The most app+environment rows on the index.
const MAX_ROWS: usize = 500;
/// Rows built at once (each is one or a few short queries).
const ROW_CONCURRENCY: usize = 4;

const NEED_LOG_LINK: &str = "403 Forbidden: this log needs its signed link (with ?sig=...). \
Use the link in the deployment's GitHub status (log_url) or chat message, \
or open the deployment from the signed index page.\n";
const NEED_INDEX_LINK: &str = "403 Forbidden: this page needs its signed link (with ?sig=...). \
faseng writes it to its log when it starts: look for `faseng listening` and its `index=` URL.\n";

fn signed_for(state: &AppState, id: i64, sig: Option<&str>) -> bool {
    sig.is_some_and(|s| state.links.verify(id, s))
}

/// The relative link from `/` to deployment `id`'s page.
fn link_from_index(state: &AppState, id: i64) -> String {
    format!("deployments/{id}?sig={}", state.links.sign(id))
}

// ---- /deployments/{id} ----------------------------------------------------------------

pub async fn deployment(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    Query(q): Query<Signed>,
) -> Response {
    if !signed_for(&state, id, q.sig.as_deref()) {
        return html::forbidden(NEED_LOG_LINK);
    }
    let d = match state.store.get_deployment(id).await {
        Ok(Some(d)) => d,
        Ok(None) => return html::text(StatusCode::NOT_FOUND, "no such deployment\n"),
        Err(e) => return html::unavailable("reading a deployment", &e),
    };
    let log = match page_log(state.store.as_ref(), id).await {
        Ok(l) => l,
        Err(e) => return html::unavailable("reading a log", &e),
    };
    html::html(render_deployment(&state, &d, &log, Utc::now()))
}

/// The lines a page shows: the last [`PAGE_LINES`], within [`PAGE_BYTES`].
struct PageLog {
    lines: Vec<LogLine>,
    /// How many lines the deployment had when the page was read.
    total: i64,
}

async fn page_log(store: &dyn Store, id: i64) -> Result<PageLog, StoreError> {
    let total = store.log_count(id).await?;
    let mut after = (total - PAGE_LINES).max(0);
    let mut lines: Vec<LogLine> = Vec::new();
    while (lines.len() as i64) < PAGE_LINES {
        let want = READ_CHUNK.min(PAGE_LINES - lines.len() as i64);
        let chunk = store.read_logs(id, after, want).await?;
        let Some(last) = chunk.last() else { break };
        after = last.seq;
        let short = (chunk.len() as i64) < want;
        lines.extend(chunk);
        if short {
            break;
        }
    }
    let mut bytes: usize = lines.iter().map(|l| l.line.len() + 1).sum();
    let mut cut = 0;
    while bytes > PAGE_BYTES && cut < lines.len() {
        bytes -= lines[cut].line.len() + 1;
        cut += 1;
    }
    lines.drain(..cut);
    Ok(PageLog {
        total: total.max(lines.last().map_or(0, |l| l.seq)),
        lines,
    })
}

fn render_deployment(
    state: &AppState,
    d: &Deployment,
    log: &PageLog,
    now: DateTime<Utc>,
) -> String {
    let id = d.id;
    let running = !d.state.is_terminal();
    let mut b =
        String::with_capacity(8192 + log.lines.iter().map(|l| l.line.len() + 24).sum::<usize>());
    let _ = write!(
        b,
        "<header>\n<h1>Deployment #{id} <span id=state class=\"state s-{st}\">{st}</span></h1>\n\
         <p class=sub>{task} of <b>{app}</b>/{git_ref} to <b>{env}</b> by {who}</p>\n</header>\n",
        st = d.state,
        task = esc(&d.task),
        app = esc(&d.app),
        git_ref = esc(&d.git_ref),
        env = esc(&d.environment),
        who = esc(&d.requester),
    );

    let dash = || "-".to_string();
    let repo = match html::repo_url(&d.repository) {
        Some(url) => format!("<a href=\"{}\">{}</a>", esc(&url), esc(&d.repository)),
        None => esc(&d.repository),
    };
    let duration = match (d.started_at, d.finished_at) {
        (Some(s), Some(f)) => html::duration(f - s),
        (Some(s), None) => format!("running for {}", html::duration(now - s)),
        (None, None) if d.state == DeploymentState::Queued => {
            format!("queued for {}", html::duration(now - d.created_at))
        }
        _ => dash(),
    };
    let mut facts: Vec<(&str, &str, String)> = vec![
        ("requested by", "", esc(&d.requester)),
        ("app", "", esc(&d.app)),
        ("environment", "", esc(&d.environment)),
        ("ref", "", format!("<code>{}</code>", esc(&d.git_ref))),
        (
            "sha",
            "",
            d.sha
                .as_deref()
                .map(|s| sha_link(&d.repository, s, false))
                .unwrap_or_else(dash),
        ),
        ("repository", "", repo),
        ("task", "", esc(&d.task)),
        (
            "hosts",
            "",
            d.hosts
                .as_deref()
                .filter(|h| !h.is_empty())
                .map(esc)
                .unwrap_or_else(|| "all".to_string()),
        ),
        ("provider", "", esc(&d.provider)),
        ("queued", "", time(d.created_at)),
        (
            "started",
            "started",
            d.started_at.map(time).unwrap_or_else(dash),
        ),
        (
            "finished",
            "finished",
            d.finished_at.map(time).unwrap_or_else(dash),
        ),
        ("duration", "duration", duration),
        (
            "exit code",
            "exit",
            d.exit_code.map(|c| c.to_string()).unwrap_or_else(dash),
        ),
        (
            "reason",
            "reason",
            d.reason.as_deref().map(esc).unwrap_or_else(dash),
        ),
    ];
    if let Some(by) = &d.cancel_requested_by {
        facts.push(("cancel asked by", "", esc(by)));
    }
    if let Some(gid) = d.github_deployment_id {
        facts.push(("GitHub deployment", "", gid.to_string()));
    }
    b.push_str("<dl class=facts>\n");
    for (label, dom_id, value) in &facts {
        if dom_id.is_empty() {
            let _ = writeln!(b, "<dt>{label}</dt><dd>{value}</dd>");
        } else {
            let _ = writeln!(b, "<dt>{label}</dt><dd id={dom_id}>{value}</dd>");
        }
    }
    b.push_str("</dl>\n");

    let first_shown = log.lines.first().map_or(log.total + 1, |l| l.seq);
    if first_shown > 1 {
        let _ = writeln!(
            b,
            "<p class=note>The log has {} lines; this page shows the last {} (from line {first_shown}).</p>",
            log.total,
            log.lines.len()
        );
    }
    b.push_str("<pre id=log class=log>");
    if log.lines.is_empty() {
        let _ = write!(
            b,
            "<span id=empty class=muted>{}</span>",
            if running {
                "(no output yet)\n"
            } else {
                "(no output)\n"
            }
        );
    }
    for l in &log.lines {
        let line = html::clean_line(&l.line);
        match html::line_class(l.stream, &line) {
            Some(class) => {
                let _ = writeln!(b, "<span class={class}>{}</span>", esc(&line));
            }
            None => {
                b.push_str(&esc(&line));
                b.push('\n');
            }
        }
    }
    b.push_str("</pre>\n");

    let mut head = String::new();
    if running {
        let last = log.lines.last().map_or(log.total, |l| l.seq);
        b.push_str(
            "<p id=live>This deployment is still going: reload the page for new lines.</p>\n",
        );
        b.push_str(&live_script(id, &state.links.sign(id), last));
        // Without JavaScript the page reloads itself while the deployment runs.
        head.push_str("<noscript><meta http-equiv=refresh content=10></noscript>\n");
    } else {
        b.push_str("<p id=live>Finished: the log is complete.</p>\n");
    }
    let title = format!("#{id} {} to {}: {}", d.app, d.environment, d.state);
    html::page(&title, &head, &b)
}

/// The script that follows the log: appends `line` events to the `<pre>`,
/// updates the facts on `state` events, stops at a terminal state.
fn live_script(id: i64, sig: &str, last: i64) -> String {
    // `sig` is hex from our own signer and `id`/`last` are numbers: nothing
    // here needs escaping, but keep it that way.
    let sig: String = sig.chars().filter(char::is_ascii_hexdigit).collect();
    format!(
        r#"<script>
(function () {{
  if (!window.EventSource) return;
  var last = {last};
  var log = document.getElementById('log'), live = document.getElementById('live');
  var terminal = {{succeeded: 1, failed: 1, errored: 1, cancelled: 1}};
  function set(id, v) {{
    var el = document.getElementById(id);
    if (el) el.textContent = (v === null || v === undefined || v === '') ? '-' : String(v);
  }}
  function when(t) {{
    return t ? t.replace('T', ' ').replace(/\.\d+/, '').replace(/(Z|\+00:00)$/, ' UTC') : null;
  }}
  function say(on, text) {{ live.className = on ? 'on' : ''; live.textContent = text; }}
  var src = new EventSource('{id}/events?sig={sig}&after=' + last);
  say(true, 'Live: new lines appear as they are written.');
  src.addEventListener('line', function (e) {{
    var d = JSON.parse(e.data);
    if (d.seq <= last) return;
    last = d.seq;
    var root = document.documentElement;
    var atEnd = window.innerHeight + window.scrollY >= root.scrollHeight - 60;
    var empty = document.getElementById('empty');
    if (empty) empty.remove();
    var s = document.createElement('span');
    s.className = d.line.indexOf('==> ') === 0 ? 'live meta'
      : d.stream === 'stderr' ? 'live err' : 'live';
    s.setAttribute('data-seq', d.seq);
    s.textContent = d.line + '\n';
    log.appendChild(s);
    if (atEnd) window.scrollTo(0, root.scrollHeight);
  }});
  src.addEventListener('state', function (e) {{
    var d = JSON.parse(e.data);
    var st = document.getElementById('state');
    st.textContent = d.state;
    st.className = 'state s-' + d.state;
    document.title = document.title.replace(/[a-z]+$/, d.state);
    set('started', when(d.started_at));
    set('finished', when(d.finished_at));
    set('exit', d.exit_code);
    set('reason', d.reason);
    if (d.duration) set('duration', d.duration);
    if (terminal[d.state]) {{
      src.close();
      say(false, 'Finished: the log is complete.');
    }}
  }});
  src.onopen = function () {{ say(true, 'Live: new lines appear as they are written.'); }};
  src.onerror = function () {{
    if (src.readyState !== 2) say(false, 'Connection lost: reconnecting...');
    // Refused (503: too many open log streams) or gone: EventSource gives up.
    else say(false, 'Live updates stopped (faseng is busy): reload the page in a moment.');
  }};
}})();
</script>
"#
    )
}

// ---- /deployments/{id}/events -----------------------------------------------------------

/// Server-sent events of a deployment's new log lines and state (see `live.rs`).
pub async fn events(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    Query(q): Query<EventsQuery>,
    headers: HeaderMap,
) -> Response {
    if !signed_for(&state, id, q.sig.as_deref()) {
        return html::forbidden(NEED_LOG_LINK);
    }
    let after = match q.after.as_deref().map(str::trim).filter(|a| !a.is_empty()) {
        None => 0,
        Some(a) => match a.parse::<i64>() {
            Ok(n) if n >= 0 => n,
            _ => {
                return html::text(
                    StatusCode::BAD_REQUEST,
                    "`after` must be a line number (0 or more)\n",
                );
            }
        },
    };
    // A browser that reconnects says which line it saw last.
    let after = after.max(live::last_event_id(&headers).unwrap_or(0));
    match state.store.get_deployment(id).await {
        Ok(Some(_)) => live::stream(Arc::clone(&state.store), id, after),
        Ok(None) => html::text(StatusCode::NOT_FOUND, "no such deployment\n"),
        Err(e) => html::unavailable("reading a deployment", &e),
    }
}

// ---- / ------------------------------------------------------------------------------------

/// One app and environment on the index.
struct Row {
    app: String,
    env: String,
    in_config: bool,
    running: Option<Deployment>,
    /// Oldest first.
    queued: Vec<Deployment>,
    /// More are queued than `queued` holds.
    queued_more: bool,
    last: Option<Deployment>,
    lock: Option<Lock>,
    /// Auto-deploy state, for environments app.json auto-deploys.
    auto: Option<String>,
}

pub async fn index(State(state): State<AppState>, Query(q): Query<Signed>) -> Response {
    if !q
        .sig
        .as_deref()
        .is_some_and(|s| state.links.verify_page("index", s))
    {
        return html::forbidden(NEED_INDEX_LINK);
    }
    match build_index(&state).await {
        Ok((rows, recent, cut)) => {
            html::html(render_index(&state, &rows, &recent, cut, Utc::now()))
        }
        Err(e) => html::unavailable("building the index", &e),
    }
}

/// The rows (app.json's apps and environments first, in its order, then the
/// ones only seen in deployments or locks), the recent deployments, and
/// whether rows were left out.
async fn build_index(state: &AppState) -> Result<(Vec<Row>, Vec<Deployment>, bool), StoreError> {
    let recent = state
        .store
        .list_deployments(&DeploymentFilter {
            limit: RECENT_SCAN,
            ..DeploymentFilter::default()
        })
        .await?;
    let locks = state.store.list_locks().await?;

    let mut pairs: Vec<(String, String, bool)> = Vec::new();
    let mut seen: HashSet<(String, String)> = HashSet::new();
    if let Some(apps) = &state.apps {
        for app in apps.iter() {
            for env in &app.environments {
                if seen.insert((app.name.clone(), env.name.clone())) {
                    pairs.push((app.name.clone(), env.name.clone(), true));
                }
            }
        }
    }
    let others: BTreeSet<(String, String)> = recent
        .iter()
        .map(|d| (d.app.clone(), d.environment.clone()))
        .chain(locks.iter().map(|l| (l.app.clone(), l.environment.clone())))
        .filter(|p| !seen.contains(p))
        .collect();
    pairs.extend(others.into_iter().map(|(a, e)| (a, e, false)));
    let cut = pairs.len() > MAX_ROWS;
    pairs.truncate(MAX_ROWS);

    let mut locks: HashMap<(String, String), Lock> = locks
        .into_iter()
        .map(|l| ((l.app.clone(), l.environment.clone()), l))
        .collect();
    let store = &state.store;
    let results: Vec<Result<Row, StoreError>> = futures::stream::iter(pairs)
        .map(|(app, env, in_config)| async move { row(store.as_ref(), app, env, in_config).await })
        .buffered(ROW_CONCURRENCY)
        .collect()
        .await;
    let mut rows = Vec::with_capacity(results.len());
    for r in results {
        let mut r = r?;
        r.lock = locks.remove(&(r.app.clone(), r.env.clone()));
        r.auto = auto_deploy_state(state, &r.app, &r.env).await?;
        rows.push(r);
    }
    let mut recent = recent;
    recent.truncate(RECENT_SHOWN);
    Ok((rows, recent, cut))
}

/// "auto-deploy on (main)" / "auto-deploy paused by alice: reason", with the
/// last sha it shipped, for environments that auto-deploy.
async fn auto_deploy_state(
    state: &AppState,
    app: &str,
    env: &str,
) -> Result<Option<String>, StoreError> {
    let Some(rule) = state
        .apps
        .as_ref()
        .and_then(|a| a.get(app))
        .and_then(|a| a.auto_deploy.get(env))
    else {
        return Ok(None);
    };
    let mut text = match state.store.auto_deploy_pause(app, env).await? {
        Some(p) => format!(
            "auto-deploy paused by {}{}",
            p.paused_by,
            p.reason.map(|r| format!(": {r}")).unwrap_or_default()
        ),
        None => format!(
            "auto-deploy on ({})",
            rule.git_ref.as_deref().unwrap_or("default branch")
        ),
    };
    if let Some(last) = state.store.last_auto_deploy(app, env).await? {
        text.push_str(&format!(
            ", last shipped {}",
            &last.sha[..last.sha.len().min(7)]
        ));
    }
    Ok(Some(text))
}

async fn row(
    store: &dyn Store,
    app: String,
    env: String,
    in_config: bool,
) -> Result<Row, StoreError> {
    let filter = |state: Option<DeploymentState>, limit: i64| DeploymentFilter {
        app: Some(app.clone()),
        environment: Some(env.clone()),
        state,
        limit,
        ..DeploymentFilter::default()
    };
    let latest = store.list_deployments(&filter(None, ENV_SCAN)).await?;
    let full = latest.len() as i64 >= ENV_SCAN;
    let mut running = latest
        .iter()
        .find(|d| d.state == DeploymentState::Running)
        .cloned();
    let mut last = latest.iter().find(|d| d.state.is_terminal()).cloned();
    let mut queued: Vec<Deployment> = latest
        .iter()
        .filter(|d| d.state == DeploymentState::Queued)
        .cloned()
        .collect();
    queued.reverse();
    let queued_more = full && last.is_none();
    if full && running.is_none() {
        running = store
            .list_deployments(&filter(Some(DeploymentState::Running), 1))
            .await?
            .pop();
    }
    if full && last.is_none() {
        for s in DeploymentState::ALL.into_iter().filter(|s| s.is_terminal()) {
            if let Some(d) = store.list_deployments(&filter(Some(s), 1)).await?.pop()
                && last.as_ref().is_none_or(|l| d.id > l.id)
            {
                last = Some(d);
            }
        }
    }
    Ok(Row {
        app,
        env,
        in_config,
        running,
        queued,
        queued_more,
        last,
        lock: None,
        auto: None,
    })
}

fn render_index(
    state: &AppState,
    rows: &[Row],
    recent: &[Deployment],
    cut: bool,
    now: DateTime<Utc>,
) -> String {
    let link = |d: &Deployment| {
        format!(
            "<a href=\"{}\">#{}</a>",
            esc(&link_from_index(state, d.id)),
            d.id
        )
    };
    let mut b = String::with_capacity(16_384 + rows.len() * 1024);
    let _ = writeln!(
        b,
        "<header>\n<h1>faseng</h1>\n<p class=sub>Deployments by app and environment, as of {}.</p>\n</header>",
        time(now)
    );
    if rows.is_empty() {
        b.push_str("<p class=muted>No apps in app.json and no deployments yet.</p>\n");
    } else {
        b.push_str(
            "<table id=envs>\n<tr><th>app</th><th>environment</th><th>now</th>\
             <th>last finished</th><th>lock, auto-deploy</th></tr>\n",
        );
        let mut prev_app: Option<&str> = None;
        for r in rows {
            let first = prev_app != Some(r.app.as_str());
            prev_app = Some(r.app.as_str());
            let app_cell = if first {
                let note = if r.in_config {
                    ""
                } else {
                    "<br><span class=\"muted small\">not in app.json</span>"
                };
                format!("{}{note}", esc(&r.app))
            } else {
                String::new()
            };
            let _ = writeln!(
                b,
                "<tr data-app=\"{}\" data-env=\"{}\"><td class=app>{app_cell}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&r.app),
                esc(&r.env),
                esc(&r.env),
                now_cell(r, &link, now),
                last_cell(r, &link, now),
                lock_cell(r, now),
            );
        }
        b.push_str("</table>\n");
        if cut {
            let _ = writeln!(
                b,
                "<p class=note>Only the first {MAX_ROWS} apps and environments are shown.</p>"
            );
        }
    }

    if !recent.is_empty() {
        b.push_str("<h2>Recent deployments</h2>\n<table id=recent>\n<tr><th>#</th><th>state</th><th>app</th><th>environment</th><th>ref</th><th>sha</th><th>by</th><th>queued</th><th>took</th></tr>\n");
        for d in recent {
            let took = match (d.started_at, d.finished_at) {
                (Some(s), Some(f)) => html::duration(f - s),
                (Some(s), None) => format!("{} so far", html::duration(now - s)),
                _ => "-".to_string(),
            };
            let _ = writeln!(
                b,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{took}</td></tr>",
                link(d),
                badge(d.state),
                esc(&d.app),
                esc(&d.environment),
                esc(&d.git_ref),
                d.sha
                    .as_deref()
                    .map(|s| sha_link(&d.repository, s, true))
                    .unwrap_or_else(|| "-".to_string()),
                esc(&d.requester),
                ago(d.created_at, now),
            );
        }
        b.push_str("</table>\n");
    }
    html::page("faseng: deployments", "", &b)
}

fn now_cell(r: &Row, link: &dyn Fn(&Deployment) -> String, now: DateTime<Utc>) -> String {
    let mut c = String::new();
    if let Some(d) = &r.running {
        let _ = write!(
            c,
            "{} {} by {} &middot; <code>{}</code>",
            badge(d.state),
            link(d),
            esc(&d.requester),
            esc(&d.git_ref)
        );
        if let Some(s) = d.started_at {
            let _ = write!(
                c,
                " &middot; <span class=muted>started {}</span>",
                ago(s, now)
            );
        }
    }
    if let Some(next) = r.queued.first() {
        if !c.is_empty() {
            c.push_str("<br>");
        }
        let more = if r.queued_more { "+" } else { "" };
        let _ = write!(
            c,
            "{} {} by {} &middot; <code>{}</code> <span class=muted>({}{more} queued)</span>",
            badge(next.state),
            link(next),
            esc(&next.requester),
            esc(&next.git_ref),
            r.queued.len()
        );
    }
    if c.is_empty() {
        c.push_str("<span class=muted>idle</span>");
    }
    c
}

fn last_cell(r: &Row, link: &dyn Fn(&Deployment) -> String, now: DateTime<Utc>) -> String {
    let Some(d) = &r.last else {
        return "<span class=muted>never deployed</span>".to_string();
    };
    let mut c = format!(
        "{} {} by {} &middot; <code>{}</code>",
        badge(d.state),
        link(d),
        esc(&d.requester),
        esc(&d.git_ref)
    );
    if let Some(sha) = &d.sha {
        let _ = write!(c, " @ {}", sha_link(&d.repository, sha, true));
    }
    let when = d.finished_at.unwrap_or(d.created_at);
    let _ = write!(c, "<br><span class=\"muted small\">{}", ago(when, now));
    if let (Some(s), Some(f)) = (d.started_at, d.finished_at) {
        let _ = write!(c, " &middot; took {}", html::duration(f - s));
    }
    if d.state != DeploymentState::Succeeded
        && let Some(reason) = &d.reason
    {
        let short: String = reason.chars().take(100).collect();
        let more = if short.len() < reason.len() {
            "..."
        } else {
            ""
        };
        let _ = write!(c, " &middot; {}{more}", esc(&short));
    }
    c.push_str("</span>");
    c
}

fn lock_cell(r: &Row, now: DateTime<Utc>) -> String {
    let auto = r
        .auto
        .as_deref()
        .map(|a| format!("<br><span class=\"small auto\">{}</span>", esc(a)))
        .unwrap_or_default();
    lock_only(r, now) + &auto
}

fn lock_only(r: &Row, now: DateTime<Utc>) -> String {
    let Some(l) = &r.lock else {
        return "<span class=muted>-</span>".to_string();
    };
    let mut c = format!("<span class=lock>locked</span> by {}", esc(&l.holder));
    if let Some(reason) = l.reason.as_deref().filter(|r| !r.is_empty()) {
        let _ = write!(c, ": {}", esc(reason));
    }
    let _ = write!(
        c,
        "<br><span class=\"muted small\">since {}",
        ago(l.created_at, now)
    );
    if let Some(until) = l.expires_at {
        let _ = write!(c, ", until {}", time(until));
    }
    c.push_str("</span>");
    c
}
