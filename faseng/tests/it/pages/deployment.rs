//! The deployment page: state, facts and escaped log, following a running
//! deployment, and a long log's last lines.

use chima_store::{Outcome, Stream};

use crate::harness::get;

use super::*;

#[tokio::test]
async fn a_finished_deployments_page_shows_its_state_facts_and_escaped_log() {
    let f = web_only(APPS).await;
    let mut nd = new_deployment(
        "web",
        "production",
        "eve<img src=x onerror=alert(2)>",
        "main",
    );
    nd.hosts = Some("fe1".into());
    let id = running(&f, nd).await;
    write_log(
        &f,
        id,
        &[
            (Stream::Stdout, "Fetching acme/web"),
            (Stream::Stdout, "<script>alert(1)</script>"),
            (Stream::Stderr, "warning: cache & <b>cold</b>"),
            (Stream::Stdout, "\u{1b}[1;32mcompiled\u{1b}[0m in 3s"),
        ],
    )
    .await;
    finish(&f, id, Outcome::failed(Some(3), "exited with code 3")).await;

    let (code, page) = get(&page_url(&f, id)).await;
    assert_eq!(code, 200, "{page}");
    assert!(page.starts_with("<!doctype html>"), "{page}");
    assert!(
        page.contains("id=state class=\"state s-failed\">failed</span>"),
        "{page}"
    );
    assert!(page.contains(&format!("Deployment #{id}")), "{page}");
    assert!(page.contains("Fetching acme/web\n"), "{page}");
    assert!(
        page.contains("&lt;script&gt;alert(1)&lt;/script&gt;\n"),
        "{page}"
    );
    assert!(!page.contains("<script>alert(1)"), "{page}");
    assert!(
        page.contains("<span class=err>warning: cache &amp; &lt;b&gt;cold&lt;/b&gt;</span>"),
        "{page}"
    );
    assert!(
        page.contains("compiled in 3s\n"),
        "terminal colours dropped: {page}"
    );
    assert!(!page.contains('\u{1b}'));
    assert!(
        page.contains("eve&lt;img src=x onerror=alert(2)&gt;"),
        "{page}"
    );
    assert!(!page.contains("<img"), "{page}");
    assert!(
        page.contains(&format!(
            "<a class=mono href=\"https://github.com/acme/web/commit/{SHA}\">{SHA}</a>"
        )),
        "{page}"
    );
    assert!(page.contains("<dd id=exit>3</dd>"), "{page}");
    assert!(
        page.contains("<dd id=reason>exited with code 3</dd>"),
        "{page}"
    );
    assert!(page.contains("<dt>hosts</dt><dd>fe1</dd>"), "{page}");
    assert!(
        page.contains("<dt>ref</dt><dd><code>main</code></dd>"),
        "{page}"
    );
    for fact in [
        "queued", "started", "finished", "duration", "task", "provider",
    ] {
        assert!(page.contains(&format!("<dt>{fact}</dt>")), "{fact}: {page}");
    }
    assert!(page.contains(" UTC</time>"), "{page}");
    // Finished: no live updates.
    assert!(!page.contains("EventSource"), "{page}");
    assert!(page.contains("the log is complete"), "{page}");

    // A sha that is not one is shown, not linked.
    let mut nd = new_deployment("web", "staging", "alice", "main");
    nd.sha = Some("not-a-sha\"><b>".into());
    let other = running(&f, nd).await;
    let (_, page) = get(&page_url(&f, other)).await;
    assert!(
        page.contains("<code>not-a-sha&quot;&gt;&lt;b&gt;</code>"),
        "{page}"
    );
    assert!(!page.contains("/commit/not-a-sha"), "{page}");
}

#[tokio::test]
async fn a_running_deployments_page_follows_its_log_and_works_without_javascript() {
    let f = web_only(APPS).await;
    let id = running(&f, new_deployment("web", "production", "alice", "main")).await;
    let (_, page) = get(&page_url(&f, id)).await;
    assert!(page.contains("(no output yet)"), "{page}");
    assert!(
        page.contains(&format!(
            "'{id}/events?sig={}&after=' + last",
            signer().sign(id)
        )),
        "{page}"
    );
    assert!(page.contains("var last = 0;"), "{page}");

    write_log(&f, id, &[(Stream::Stdout, "one"), (Stream::Stdout, "two")]).await;
    let (_, page) = get(&page_url(&f, id)).await;
    assert!(page.contains("one\ntwo\n</pre>"), "{page}");
    assert!(page.contains("var last = 2;"), "{page}");
    assert!(page.contains("s-running\">running</span>"), "{page}");
    assert!(page.contains("running for "), "{page}");
    // Without JavaScript the page reloads itself while the deployment runs.
    assert!(
        page.contains("<noscript><meta http-equiv=refresh content=10></noscript>"),
        "{page}"
    );
}

#[tokio::test]
async fn a_long_log_shows_its_last_lines_with_a_note() {
    let f = web_only(APPS).await;
    let id = running(&f, new_deployment("web", "production", "alice", "main")).await;
    let text: Vec<String> = (1..=20_500).map(|i| format!("line {i}")).collect();
    for chunk in text.chunks(5000) {
        let lines: Vec<(Stream, &str)> =
            chunk.iter().map(|l| (Stream::Stdout, l.as_str())).collect();
        write_log(&f, id, &lines).await;
    }
    finish(&f, id, Outcome::succeeded(0)).await;
    let (code, page) = get(&page_url(&f, id)).await;
    assert_eq!(code, 200);
    assert!(
        page.contains("The log has 20500 lines; this page shows the last 20000 (from line 501)."),
        "{}",
        &page[..2000.min(page.len())]
    );
    assert!(!page.contains("line 500\n"));
    assert!(page.contains(">line 501\n") || page.contains("\nline 501\n"));
    assert!(page.contains("line 20500\n</pre>"));
}
