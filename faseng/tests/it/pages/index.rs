//! The index: every app and environment with deployments and locks, and staying
//! small and quick with many deployments.

use std::time::Duration;

use chima_store::{DeploymentState, LockResult, Outcome, Stream};

use crate::harness::get;

use super::*;

#[tokio::test]
async fn the_index_lists_every_app_and_environment_with_deployments_and_locks() {
    let f = web_only(APPS).await;
    let done = running(&f, new_deployment("web", "production", "alice", "v1.2.0")).await;
    write_log(&f, done, &[(Stream::Stdout, "ok")]).await;
    finish(&f, done, Outcome::succeeded(0)).await;
    let now = running(&f, new_deployment("web", "staging", "bob", "feature/x")).await;
    let next = queued(&f, new_deployment("web", "staging", "carol", "main")).await;
    let legacy = queued(&f, new_deployment("legacy", "qa", "dave<i>", "main")).await;
    f.store
        .fail_queued(legacy, DeploymentState::Errored, "no app <legacy>")
        .await
        .unwrap();
    let lock = f
        .store
        .lock(
            "api",
            "production",
            "erin",
            Some("<b>db migration</b>"),
            None,
        )
        .await
        .unwrap();
    assert!(matches!(lock, LockResult::Acquired(_)), "{lock:?}");

    let (code, page) = get(&index_url(&f)).await;
    assert_eq!(code, 200, "{page}");
    let row = |app: &str, env: &str| -> String {
        let start = page
            .find(&format!("<tr data-app=\"{app}\" data-env=\"{env}\">"))
            .unwrap_or_else(|| panic!("no row for {app}/{env}: {page}"));
        let end = page[start..].find("</tr>").unwrap() + start;
        page[start..end].to_string()
    };
    let link = |id: i64| {
        format!(
            "href=\"deployments/{id}?sig={}\">#{id}</a>",
            signer().sign(id)
        )
    };

    let web_prod = row("web", "production");
    assert!(web_prod.contains("<td class=app>web</td>"), "{web_prod}");
    assert!(
        web_prod.contains("<span class=muted>idle</span>"),
        "{web_prod}"
    );
    assert!(web_prod.contains(&link(done)), "{web_prod}");
    assert!(web_prod.contains("s-succeeded\">succeeded"), "{web_prod}");
    assert!(web_prod.contains("by alice"), "{web_prod}");
    assert!(web_prod.contains("<code>v1.2.0</code>"), "{web_prod}");
    assert!(
        web_prod.contains(&format!(
            "href=\"https://github.com/acme/web/commit/{SHA}\">{}</a>",
            &SHA[..7]
        )),
        "{web_prod}"
    );
    assert!(web_prod.contains("took "), "{web_prod}");

    let web_staging = row("web", "staging");
    assert!(
        web_staging.contains("<td class=app></td>"),
        "app named once: {web_staging}"
    );
    assert!(web_staging.contains(&link(now)), "{web_staging}");
    assert!(web_staging.contains("s-running\">running"), "{web_staging}");
    assert!(web_staging.contains("by bob"), "{web_staging}");
    assert!(web_staging.contains(&link(next)), "{web_staging}");
    assert!(web_staging.contains("(1 queued)"), "{web_staging}");
    assert!(web_staging.contains("never deployed"), "{web_staging}");

    let api = row("api", "production");
    assert!(
        api.contains("<span class=lock>locked</span> by erin"),
        "{api}"
    );
    assert!(api.contains("&lt;b&gt;db migration&lt;/b&gt;"), "{api}");
    assert!(api.contains("since "), "{api}");
    assert!(api.contains("never deployed"), "{api}");

    let legacy_row = row("legacy", "qa");
    assert!(legacy_row.contains("not in app.json"), "{legacy_row}");
    assert!(legacy_row.contains(&link(legacy)), "{legacy_row}");
    assert!(legacy_row.contains("dave&lt;i&gt;"), "{legacy_row}");
    assert!(legacy_row.contains("no app &lt;legacy&gt;"), "{legacy_row}");
    assert!(!page.contains("<i>"), "{page}");
    assert!(!page.contains("<b>db"), "{page}");

    // app.json's apps come first, in order, then the others.
    let order: Vec<usize> = [
        ("api", "production"),
        ("web", "production"),
        ("web", "staging"),
        ("legacy", "qa"),
    ]
    .iter()
    .map(|(a, e)| {
        page.find(&format!("data-app=\"{a}\" data-env=\"{e}\""))
            .unwrap()
    })
    .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}");

    // The recent deployments, newest first, each with its signed link.
    let recent = &page[page.find("<table id=recent>").expect("recent table")..];
    let positions: Vec<usize> = [legacy, next, now, done]
        .iter()
        .map(|id| {
            recent
                .find(&link(*id))
                .unwrap_or_else(|| panic!("#{id}: {recent}"))
        })
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");

    // Every link on the index opens its page.
    for id in [done, now, next, legacy] {
        let (code, body) = get(&format!(
            "{}/deployments/{id}?sig={}",
            f.url,
            signer().sign(id)
        ))
        .await;
        assert_eq!(code, 200, "{body}");
    }
}

#[tokio::test]
async fn the_index_stays_small_and_quick_with_many_deployments() {
    let f = web_only(APPS).await;
    let mut last = 0;
    for chunk in 0..25 {
        let mut ids = Vec::new();
        for i in 0..40 {
            let env = if (chunk + i) % 2 == 0 {
                "production"
            } else {
                "staging"
            };
            ids.push(queued(&f, new_deployment("web", env, "bot", "main")).await);
        }
        for id in ids {
            f.store
                .fail_queued(id, DeploymentState::Cancelled, "superseded")
                .await
                .unwrap();
            last = id;
        }
    }
    assert_eq!(f.count().await, 1000);
    let t0 = std::time::Instant::now();
    let (code, page) = get(&index_url(&f)).await;
    let took = t0.elapsed();
    assert_eq!(code, 200);
    assert!(took < Duration::from_secs(3), "the index took {took:?}");
    assert!(page.len() < 100_000, "{} bytes", page.len());
    assert!(page.contains(&format!("#{last}</a>")));
    assert_eq!(page.matches("<tr><td><a href=\"deployments/").count(), 25);
}
