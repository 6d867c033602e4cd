//! Deployment logs: batches, sequence numbers, reading from a sequence number onward.

use std::collections::BTreeMap;
use std::sync::Arc;

use chima_store::{NewLogLine, Stream};
use chrono::{DateTime, TimeZone, Utc};
use tokio::time::Instant;

use crate::harness::{Harness, request};

/// Microsecond precision: what both databases keep.
fn at(micros: i64) -> DateTime<Utc> {
    Utc.timestamp_micros(1_790_000_000_000_000 + micros)
        .single()
        .expect("valid timestamp")
}

fn line(stream: Stream, text: &str, micros: i64) -> NewLogLine {
    NewLogLine {
        stream,
        line: text.to_owned(),
        at: at(micros),
    }
}

pub async fn log_lines_append_and_read_in_order(h: &Harness) {
    let store = h.store();
    let d = store
        .create_deployment(request("logs-1", "web", "production"))
        .await
        .expect("create")
        .deployment;
    let other = store
        .create_deployment(request("logs-2", "web", "staging"))
        .await
        .expect("create")
        .deployment;
    assert_eq!(store.log_count(d.id).await.expect("count"), 0);
    assert!(
        store
            .read_logs(d.id, 0, 100)
            .await
            .expect("read")
            .is_empty()
    );
    assert_eq!(store.append_logs(d.id, &[]).await.expect("empty batch"), 0);

    let last = store
        .append_logs(
            d.id,
            &[
                line(Stream::Stdout, "Cloning acme/web", 1),
                line(Stream::Stderr, "warning: shallow clone", 2),
                line(Stream::Stdout, "", 3),
            ],
        )
        .await
        .expect("append");
    assert_eq!(last, 3);
    let last = store
        .append_logs(
            d.id,
            &[
                line(Stream::Stdout, "héllo ✓ \t tabs and unicode", 4),
                line(Stream::Stderr, "a NUL \0 byte from a provider", 5),
                // What PostgreSQL's COPY text format would misread if it were not
                // escaped: a field or row end, NULL, the end-of-data marker.
                line(Stream::Stdout, "\\N", 6),
                line(Stream::Stdout, "\\.", 7),
                line(
                    Stream::Stdout,
                    "C:\\deploy\\ \\t not a tab \r\n\ttwo\tfields",
                    8,
                ),
            ],
        )
        .await
        .expect("append");
    assert_eq!(last, 8);
    // Another deployment numbers its own lines.
    assert_eq!(
        store
            .append_logs(other.id, &[line(Stream::Stdout, "other", 1)])
            .await
            .expect("append"),
        1
    );

    let lines = store.read_logs(d.id, 0, 100).await.expect("read");
    assert_eq!(
        lines.iter().map(|l| l.seq).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5, 6, 7, 8]
    );
    assert!(lines.iter().all(|l| l.deployment_id == d.id));
    assert_eq!(lines[0].line, "Cloning acme/web");
    assert_eq!(lines[0].stream, Stream::Stdout);
    assert_eq!(lines[0].at, at(1));
    assert_eq!(lines[1].stream, Stream::Stderr);
    assert_eq!(lines[1].at, at(2));
    assert_eq!(lines[2].line, "");
    assert_eq!(lines[3].line, "héllo ✓ \t tabs and unicode");
    assert_eq!(lines[4].line, "a NUL \u{FFFD} byte from a provider");
    assert_eq!(lines[5].line, "\\N");
    assert_eq!(lines[6].line, "\\.");
    assert_eq!(
        lines[7].line,
        "C:\\deploy\\ \\t not a tab \r\n\ttwo\tfields"
    );

    // A live page polls from the last line it showed.
    let tail = store.read_logs(d.id, 3, 100).await.expect("read");
    assert_eq!(
        tail.iter().map(|l| l.seq).collect::<Vec<_>>(),
        vec![4, 5, 6, 7, 8]
    );
    let page = store.read_logs(d.id, 1, 2).await.expect("read");
    assert_eq!(page.iter().map(|l| l.seq).collect::<Vec<_>>(), vec![2, 3]);
    assert!(
        store
            .read_logs(d.id, 8, 100)
            .await
            .expect("read")
            .is_empty()
    );
    assert_eq!(store.log_count(d.id).await.expect("count"), 8);
    assert_eq!(store.log_count(other.id).await.expect("count"), 1);

    // The same hostile lines in a batch of 300: PostgreSQL stores a batch of a
    // few hundred lines or more with COPY and a smaller one with one INSERT
    // (`PG_INSERT_LINES`); both must keep every line as it was.
    let hostile = [
        "a NUL \0 byte from a provider",
        "\\N",
        "\\.",
        "C:\\deploy\\ \\t not a tab \r\n\ttwo\tfields",
    ];
    let medium: Vec<NewLogLine> = (0..300)
        .map(|i| line(Stream::Stdout, hostile[i % hostile.len()], i as i64))
        .collect();
    let scratch = store
        .create_deployment(request("logs-medium", "web", "qa"))
        .await
        .expect("create")
        .deployment;
    assert_eq!(
        store
            .append_logs(scratch.id, &medium)
            .await
            .expect("append 300"),
        300
    );
    let stored = store.read_logs(scratch.id, 0, 1000).await.expect("read");
    assert_eq!(stored.len(), 300);
    for (i, l) in stored.iter().enumerate() {
        let want = hostile[i % hostile.len()].replace('\0', "\u{FFFD}");
        assert_eq!((l.seq, l.line.as_str()), (i as i64 + 1, want.as_str()));
        assert_eq!(l.at, at(i as i64));
    }

    // A big batch crosses the per-statement chunks and stays consecutive.
    let big: Vec<NewLogLine> = (0..25_000)
        .map(|i| {
            line(
                if i % 7 == 0 {
                    Stream::Stderr
                } else {
                    Stream::Stdout
                },
                &format!("line {i} {}", "x".repeat(60)),
                10 + i,
            )
        })
        .collect();
    let started = Instant::now();
    let last = store
        .append_logs(d.id, &big)
        .await
        .expect("append big batch");
    eprintln!(
        "{:?}: 25,000 lines appended in {:?}",
        h.kind,
        started.elapsed()
    );
    assert_eq!(last, 25_008);
    assert_eq!(store.log_count(d.id).await.expect("count"), 25_008);
    let mut next = 8;
    let mut read = 0;
    loop {
        let chunk = store.read_logs(d.id, next, 4000).await.expect("read");
        if chunk.is_empty() {
            break;
        }
        for l in &chunk {
            next += 1;
            assert_eq!(l.seq, next, "consecutive");
            let i = l.seq - 9;
            assert_eq!(l.line, format!("line {i} {}", "x".repeat(60)));
            assert_eq!(l.at, at(10 + i));
        }
        read += chunk.len();
    }
    assert_eq!(read, 25_000);
}

/// Log lines belong to a deployment: none can be stored for a deployment that
/// does not exist, and deleting a deployment deletes its lines (and no other's).
pub async fn log_lines_need_their_deployment_and_go_with_it(h: &Harness) {
    let store = h.store();
    let missing = store
        .append_logs(987_654_321, &[line(Stream::Stdout, "orphan", 1)])
        .await;
    assert!(
        matches!(missing, Err(chima_store::StoreError::NotFound { .. })),
        "appending to a missing deployment: {missing:?}"
    );
    assert_eq!(h.checker().log_rows(987_654_321).await, 0);

    let gone = store
        .create_deployment(request("logs-gone", "web", "production"))
        .await
        .expect("create")
        .deployment;
    let kept = store
        .create_deployment(request("logs-kept", "web", "staging"))
        .await
        .expect("create")
        .deployment;
    for d in [&gone, &kept] {
        store
            .append_logs(
                d.id,
                &[line(Stream::Stdout, "a", 1), line(Stream::Stderr, "b", 2)],
            )
            .await
            .expect("append");
    }
    let kept_events = store
        .outbox_for_deployment(kept.id)
        .await
        .expect("kept's events")
        .len();
    assert!(kept_events > 0, "a queued deployment has outbox events");
    h.checker().delete_deployment(gone.id).await;
    assert_eq!(h.checker().log_rows(gone.id).await, 0);
    assert_eq!(h.checker().log_rows(kept.id).await, 2);
    assert_eq!(store.log_count(kept.id).await.expect("count"), 2);
    // Its notifications go with it (PostgreSQL: by the delete trigger, the outbox
    // having no foreign key to check on every event), and no one else's.
    assert!(
        store
            .outbox_for_deployment(gone.id)
            .await
            .expect("gone's events")
            .is_empty(),
        "a deleted deployment's outbox events are deleted"
    );
    assert_eq!(
        store
            .outbox_for_deployment(kept.id)
            .await
            .expect("kept's events")
            .len(),
        kept_events
    );
}

pub async fn concurrent_log_appenders_get_disjoint_sequences(h: &Harness) {
    let d = h
        .store()
        .create_deployment(request("logs-3", "web", "production"))
        .await
        .expect("create")
        .deployment;
    const TASKS: usize = 4;
    const BATCHES: usize = 20;
    const PER_BATCH: usize = 50;
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let store = Arc::clone(&h.store);
        tasks.push(tokio::spawn(async move {
            for b in 0..BATCHES {
                let batch: Vec<NewLogLine> = (0..PER_BATCH)
                    .map(|i| line(Stream::Stdout, &format!("{t}:{b}:{i}"), i as i64))
                    .collect();
                store.append_logs(d.id, &batch).await.expect("append");
            }
        }));
    }
    for task in tasks {
        task.await.expect("appender");
    }
    let total = (TASKS * BATCHES * PER_BATCH) as i64;
    assert_eq!(h.store().log_count(d.id).await.expect("count"), total);
    let lines = h.store().read_logs(d.id, 0, 10_000).await.expect("read");
    assert_eq!(lines.len() as i64, total);
    assert!(lines.iter().enumerate().all(|(i, l)| l.seq == i as i64 + 1));
    // Each batch landed whole and in order; each task's batches in its order.
    let mut per_task: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for chunk in lines.chunks(PER_BATCH) {
        let first: Vec<usize> = chunk[0]
            .line
            .split(':')
            .map(|p| p.parse().expect("number"))
            .collect();
        for (i, l) in chunk.iter().enumerate() {
            assert_eq!(
                l.line,
                format!("{}:{}:{i}", first[0], first[1]),
                "batch split"
            );
        }
        per_task.entry(first[0]).or_default().push(first[1]);
    }
    for (task, order) in per_task {
        assert_eq!(order, (0..BATCHES).collect::<Vec<_>>(), "task {task}");
    }
}
