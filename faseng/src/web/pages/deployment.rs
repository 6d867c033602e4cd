//! `/deployments/{id}`: one deployment and its log (the last lines, within a size
//! bound), and `/deployments/{id}/events`, the server-sent events that append new
//! lines to the open page.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use chima_store::{Approval, Decision, Deployment, DeploymentState, LogLine, Store, StoreError};
use chrono::{DateTime, Utc};

use crate::web::AppState;
use crate::web::html::{self, esc, sha_link, time};
use crate::web::live;

use super::{EventsQuery, NEED_LOG_LINK, Signed, signed_for};

/// The most log lines one page shows (the last ones).
const PAGE_LINES: i64 = 20_000;
/// The most log text one page shows; older lines are left out past it.
const PAGE_BYTES: usize = 8 << 20;
/// Lines per store read when building a page.
const READ_CHUNK: i64 = 5_000;

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
    let approvals = if d.approvals_needed.is_some() {
        match state.store.approvals(id).await {
            Ok(a) => a,
            Err(e) => return html::unavailable("reading the approvals", &e),
        }
    } else {
        Vec::new()
    };
    html::html(render_deployment(&state, &d, &approvals, &log, Utc::now()))
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
    approvals: &[Approval],
    log: &PageLog,
    now: DateTime<Utc>,
) -> String {
    let id = d.id;
    let running = !d.state.is_terminal();
    let mut b =
        String::with_capacity(8192 + log.lines.iter().map(|l| l.line.len() + 24).sum::<usize>());
    // A dry run (`deploy:noop`, issue 18) says so first: it changed nothing.
    let dry_run = chima_config::is_dry_run(&d.task);
    let _ = write!(
        b,
        "<header>\n<h1>{kind} #{id} <span id=state class=\"state s-{st}\">{st}</span></h1>\n\
         <p class=sub>{task} of <b>{app}</b>/{git_ref} to <b>{env}</b> by {who}</p>\n{note}</header>\n",
        kind = if dry_run { "Dry run" } else { "Deployment" },
        note = if dry_run {
            "<p class=dry-run><b>Dry run</b>: the provider's dry run (nothing changes on the servers); \
             it does not count as deployed, for rollbacks or auto-deploy.</p>\n"
        } else {
            ""
        },
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
    if let Some(reason) = chima_payload::DeploymentPayload::emergency_of(&d.payload) {
        let _ = writeln!(
            b,
            "<p class=\"emergency\"><b>EMERGENCY (break-glass)</b>: it passed the deploy windows and freezes of {env}. Reason: {reason}</p>",
            env = esc(&d.environment),
            reason = esc(&reason),
        );
    }
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
    if let Some(needed) = d.approvals_needed {
        // Who approved or rejected, and when: the record of the buddy check.
        let decided: Vec<String> = approvals
            .iter()
            .map(|a| {
                let why = a
                    .reason
                    .as_deref()
                    .map(|r| format!(": {}", esc(r)))
                    .unwrap_or_default();
                let what = match a.decision {
                    Decision::Approve => "approved",
                    Decision::Reject => "rejected",
                };
                format!("{what} by {} at {}{why}", esc(&a.approver), time(a.at))
            })
            .collect();
        let needs = format!("{needed} needed");
        let expiry = match (d.state, d.approval_expires_at) {
            (DeploymentState::AwaitingApproval, Some(t)) => format!(", expires {}", time(t)),
            _ => String::new(),
        };
        let value = if decided.is_empty() {
            format!("none yet ({needs}{expiry})")
        } else {
            format!("{} ({needs}{expiry})", decided.join("; "))
        };
        facts.push(("approvals", "approvals", value));
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
    let title = format!(
        "#{id} {}{} to {}: {}",
        if dry_run { "dry run of " } else { "" },
        d.app,
        d.environment,
        d.state
    );
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
