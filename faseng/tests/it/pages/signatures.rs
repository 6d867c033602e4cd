//! Signatures on every page and on the event stream.

use crate::harness::get;

use super::*;

#[tokio::test]
async fn every_page_and_the_event_stream_need_their_signature() {
    let f = web_only(APPS).await;
    let id = queued(&f, new_deployment("web", "production", "alice", "main")).await;
    let other = queued(&f, new_deployment("web", "staging", "bob", "main")).await;
    let s = signer();
    let wrong = "0".repeat(32);

    let index_refused = [
        format!("{}/", f.url),
        format!("{}/?sig=", f.url),
        format!("{}/?sig=zz", f.url),
        format!("{}/?sig={wrong}", f.url),
        format!("{}/?sig={}", f.url, s.sign(id)),
        format!("{}/?sig={}", f.url, &s.sign_page("index")[..30]),
        format!(
            "{}/?sig={}",
            f.url,
            links::LinkSigner::new(b"other key").sign_page("index")
        ),
    ];
    for url in &index_refused {
        let (code, body) = get(url).await;
        assert_eq!(code, 403, "{url}: {body}");
        assert!(body.contains("signed link"), "{url}: {body}");
        assert!(body.contains("index="), "says where the link is: {body}");
    }
    for path in [
        format!("/deployments/{id}"),
        format!("/deployments/{id}/events"),
    ] {
        for query in [
            String::new(),
            "?sig=".to_string(),
            format!("?sig={wrong}"),
            format!("?sig={}", s.sign(other)),
            format!("?sig={}", s.sign_page("index")),
            format!("?sig={}", links::LinkSigner::new(b"other key").sign(id)),
            format!("?sig={}&after=0", tampered(&s.sign(id))),
        ] {
            let url = format!("{}{path}{query}", f.url);
            let (code, body) = get(&url).await;
            assert_eq!(code, 403, "{url}: {body}");
            assert!(body.contains("log_url"), "{url}: {body}");
            assert!(!body.contains("alice"), "{url}: {body}");
        }
    }

    // With the right signatures all three answer.
    let (code, body) = get(&index_url(&f)).await;
    assert_eq!(code, 200, "{body}");
    let (code, body) = get(&page_url(&f, id)).await;
    assert_eq!(code, 200, "{body}");
    let (code, ctype, _stream) = open_sse(&events_url(&f, id, 0), None).await;
    assert_eq!(code, 200);
    assert!(ctype.starts_with("text/event-stream"), "{ctype}");

    // A signed link to a deployment that does not exist, and a bad `after`.
    let (code, _) = get(&page_url(&f, 999_999)).await;
    assert_eq!(code, 404);
    let (code, _) = get(&events_url(&f, 999_999, 0)).await;
    assert_eq!(code, 404);
    let bad_after = format!(
        "{}/deployments/{id}/events?sig={}&after=x",
        f.url,
        s.sign(id)
    );
    let (code, body) = get(&bad_after).await;
    assert_eq!(code, 400, "{body}");
}
