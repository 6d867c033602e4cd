//! `/`: every app and environment with its running, queued and last deployment,
//! its lock and auto-deploy state, and the newest deployments of apps not in
//! app.json.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt::Write as _;

use axum::extract::{Query, State};
use axum::response::Response;
use chima_store::{Deployment, DeploymentFilter, DeploymentState, Lock, Store, StoreError};
use chrono::{DateTime, Utc};
use futures::StreamExt;

use crate::web::AppState;
use crate::web::html::{self, ago, badge, esc, sha_link, time};

use super::{NEED_INDEX_LINK, Signed, link_from_index};

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
    // A dry run (`deploy:noop`) is said to be one wherever it is linked: it changed
    // nothing, so "last finished" must not read as what the environment runs.
    let link = |d: &Deployment| {
        format!(
            "<a href=\"{}\">#{}</a>{}",
            esc(&link_from_index(state, d.id)),
            d.id,
            if chima_config::is_dry_run(&d.task) {
                " <span class=muted>dry run</span>"
            } else {
                ""
            }
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
