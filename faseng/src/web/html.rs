//! Small pieces the web pages are built from: escaping, the page frame with
//! its inline CSS, times and durations, state badges, commit links.
//! Everything that came from outside (deployments, logs, locks) goes through
//! [`esc`] before it reaches HTML.

use std::fmt::Write as _;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chima_store::DeploymentState;
use chrono::{DateTime, Utc};

/// HTML-escapes text for element content and quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / 8);
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A log line made fit to show: terminal colour and cursor sequences
/// (`ESC [ ... letter`) and other control characters except tab are dropped.
pub fn clean_line(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                // Parameters and intermediates, up to the final byte (@ to ~).
                for n in chars.by_ref() {
                    if ('@'..='~').contains(&n) {
                        break;
                    }
                }
            }
            continue;
        }
        if c == '\t' || !c.is_control() {
            out.push(c);
        }
    }
    out
}

/// The class a log line is shown with: faseng's own notes (`==> ...`) in
/// one colour, other standard error output in another.
pub fn line_class(stream: chima_store::Stream, line: &str) -> Option<&'static str> {
    if line.starts_with("==> ") {
        Some("meta")
    } else if stream == chima_store::Stream::Stderr {
        Some("err")
    } else {
        None
    }
}

/// The page frame: doctype, title, the shared CSS and `body`.
pub fn page(title: &str, head_extra: &str, body: &str) -> String {
    let mut out = String::with_capacity(body.len() + CSS.len() + 512);
    out.push_str("<!doctype html>\n<html lang=en>\n<head>\n<meta charset=utf-8>\n");
    out.push_str("<meta name=viewport content=\"width=device-width, initial-scale=1\">\n");
    out.push_str("<meta name=robots content=\"noindex, nofollow\">\n");
    out.push_str("<meta name=referrer content=no-referrer>\n");
    let _ = writeln!(out, "<title>{}</title>", esc(title));
    out.push_str("<style>");
    out.push_str(CSS);
    out.push_str("</style>\n");
    out.push_str(head_extra);
    out.push_str("</head>\n<body>\n");
    out.push_str(body);
    out.push_str("</body>\n</html>\n");
    out
}

/// The CSS of every page: plain, readable, one colour per state.
const CSS: &str = "
:root{--fg:#1f2328;--muted:#656d76;--line:#d0d7de;--bg:#fff;--soft:#f6f8fa;--link:#0969da}
*{box-sizing:border-box}
body{margin:0;padding:24px 32px;font:14px/1.5 -apple-system,'Segoe UI',Helvetica,Arial,sans-serif;color:var(--fg);background:var(--bg)}
h1{font-size:20px;margin:0 0 4px;font-weight:600}
h2{font-size:16px;margin:28px 0 8px;font-weight:600}
a{color:var(--link);text-decoration:none}a:hover{text-decoration:underline}
code,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,'DejaVu Sans Mono',monospace;font-size:12.5px}
.muted{color:var(--muted)}
.sub{color:var(--muted);margin:0 0 16px}
.state{display:inline-block;padding:1px 9px;border-radius:999px;font-size:12px;font-weight:600;color:#fff;background:#6e7781;vertical-align:2px;white-space:nowrap}
.s-queued{background:#9a6700}.s-running{background:#0969da}.s-succeeded{background:#1a7f37}
.s-failed{background:#cf222e}.s-errored{background:#bc4c00}.s-cancelled{background:#6e7781}
.emergency{border:2px solid #cf222e;background:#ffebe9;color:#82071e;padding:8px 12px;border-radius:6px;margin:0 0 16px}
.s-awaiting_approval{background:#8250df}.s-rejected{background:#6e7781}
dl.facts{display:grid;grid-template-columns:max-content 1fr max-content 1fr;gap:4px 18px;margin:0 0 18px;padding:12px 16px;background:var(--soft);border:1px solid var(--line);border-radius:6px}
dl.facts dt{color:var(--muted)}dl.facts dd{margin:0;overflow-wrap:anywhere}
pre.log{margin:0;padding:12px 16px;background:#0d1117;color:#e6edf3;border-radius:6px;overflow-x:auto;white-space:pre-wrap;overflow-wrap:anywhere;font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,'DejaVu Sans Mono',monospace;font-size:12.5px;line-height:1.45;min-height:3em}
pre.log .err{color:#ff9492}pre.log .meta{color:#79c0ff}
.note{padding:6px 12px;background:#fff8c5;border:1px solid #d4a72c66;border-radius:6px;margin:0 0 10px}
#live{margin:8px 0 0;color:var(--muted);font-size:12px}
#live.on::before{content:'\\25CF  ';color:#1a7f37}
table{border-collapse:collapse;width:100%;margin:0 0 8px}
th,td{text-align:left;padding:7px 10px;border-bottom:1px solid var(--line);vertical-align:top}
th{font-size:12px;color:var(--muted);font-weight:600;background:var(--soft)}
td.app{font-weight:600}
.lock{color:#9a6700;font-weight:600}
.small{font-size:12px}
";

/// `2025-01-02 10:11:12 UTC` in a `<time>` element.
pub fn time(t: DateTime<Utc>) -> String {
    format!(
        "<time datetime=\"{}\">{}</time>",
        t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        t.format("%Y-%m-%d %H:%M:%S UTC")
    )
}

/// `5s ago`, `3m ago`, `2h ago`, `4d ago` (`just now` under a second).
pub fn ago(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let secs = (now - t).num_seconds();
    match secs {
        s if s < 1 => "just now".to_string(),
        s if s < 60 => format!("{s}s ago"),
        s if s < 3600 => format!("{}m ago", s / 60),
        s if s < 86_400 => format!("{}h ago", s / 3600),
        s => format!("{}d ago", s / 86_400),
    }
}

/// A duration for people: `850ms`, `12.3s`, `4m 05s`, `2h 03m`.
pub fn duration(d: chrono::TimeDelta) -> String {
    let ms = d.num_milliseconds().max(0);
    match ms {
        ms if ms < 1000 => format!("{ms}ms"),
        ms if ms < 60_000 => format!("{:.1}s", ms as f64 / 1000.0),
        ms if ms < 3_600_000 => format!("{}m {:02}s", ms / 60_000, (ms / 1000) % 60),
        ms => format!("{}h {:02}m", ms / 3_600_000, (ms / 60_000) % 60),
    }
}

/// The coloured state label.
pub fn badge(state: DeploymentState) -> String {
    format!("<span class=\"state s-{state}\">{state}</span>")
}

/// Whether text is a (possibly abbreviated) hex commit id.
pub fn looks_like_sha(s: &str) -> bool {
    (7..=40).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The first 7 characters of a sha (the whole text when it is not one).
pub fn short_sha(s: &str) -> &str {
    if looks_like_sha(s) { &s[..7] } else { s }
}

/// `https://github.com/{repository}` when the repository is a plain `owner/name`.
pub fn repo_url(repository: &str) -> Option<String> {
    let mut parts = repository.split('/');
    let ok_part = |p: Option<&str>| {
        p.is_some_and(|p| {
            !p.is_empty()
                && p != "."
                && p != ".."
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        })
    };
    let ok = ok_part(parts.next()) && ok_part(parts.next()) && parts.next().is_none();
    ok.then(|| format!("https://github.com/{repository}"))
}

/// `https://github.com/{repository}/commit/{sha}` when both look right.
pub fn commit_url(repository: &str, sha: &str) -> Option<String> {
    if !looks_like_sha(sha) {
        return None;
    }
    repo_url(repository).map(|r| format!("{r}/commit/{sha}"))
}

/// A sha as code, linked to its commit on GitHub when it looks like one.
pub fn sha_link(repository: &str, sha: &str, short: bool) -> String {
    let text = if short { short_sha(sha) } else { sha };
    match commit_url(repository, sha) {
        Some(url) => format!("<a class=mono href=\"{}\">{}</a>", esc(&url), esc(text)),
        None => format!("<code>{}</code>", esc(text)),
    }
}

/// A plain-text answer with a status (errors, refusals). Not cached.
pub fn text(status: StatusCode, body: &'static str) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// 403 with a text that says which link is needed.
pub fn forbidden(what: &'static str) -> Response {
    text(StatusCode::FORBIDDEN, what)
}

/// 503: the store did not answer.
pub fn unavailable(what: &str, e: &dyn std::fmt::Display) -> Response {
    tracing::warn!(error = %e, "{what} failed");
    text(
        StatusCode::SERVICE_UNAVAILABLE,
        "the database does not answer; try again in a moment\n",
    )
}

/// An HTML page answer. Pages carry signatures in their links, so nothing
/// stores them and nothing leaks them as a referrer.
pub fn html(body: String) -> Response {
    let mut r = axum::response::Html(body).into_response();
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            esc(r#"<script>alert("x&'y')</script>"#),
            "&lt;script&gt;alert(&quot;x&amp;&#39;y&#39;)&lt;/script&gt;"
        );
    }

    #[test]
    fn cleans_terminal_sequences_and_controls() {
        assert_eq!(clean_line("\u{1b}[1;32mok\u{1b}[0m\tdone\u{7}"), "ok\tdone");
        assert_eq!(clean_line("a\u{1b}b"), "ab");
        assert_eq!(clean_line("plain é ✓"), "plain é ✓");
    }

    #[test]
    fn durations_read_well() {
        let ms = chrono::TimeDelta::milliseconds;
        assert_eq!(duration(ms(850)), "850ms");
        assert_eq!(duration(ms(12_340)), "12.3s");
        assert_eq!(duration(ms(245_000)), "4m 05s");
        assert_eq!(duration(ms(7_380_000)), "2h 03m");
        assert_eq!(duration(ms(-5)), "0ms");
    }

    #[test]
    fn commit_links_only_for_shas_of_plain_repositories() {
        let sha = "0123456789abcdef0123456789abcdef01234567";
        assert_eq!(
            commit_url("acme/web", sha).as_deref(),
            Some("https://github.com/acme/web/commit/0123456789abcdef0123456789abcdef01234567")
        );
        assert_eq!(commit_url("acme/web", "main"), None);
        assert_eq!(commit_url("acme/web/x", sha), None);
        assert_eq!(commit_url("../x", sha), None);
        assert_eq!(commit_url("acme/<b>", sha), None);
        assert_eq!(short_sha(sha), "0123456");
        assert_eq!(short_sha("main"), "main");
        assert!(sha_link("acme/web", "main", true).starts_with("<code>"));
    }
}
