//! Deployments: the queries behind history and rollback, and the rollback target.

use chima_store::{DeploymentFilter, DeploymentState, Outcome};

use crate::harness::{Harness, request};
use crate::lifecycle::LEASE;

pub async fn queries_for_history_and_rollback(h: &Harness) {
    let store = h.store();
    let mut ids = Vec::new();
    for i in 0..6 {
        let env = if i % 2 == 0 { "production" } else { "staging" };
        let mut new = request(&format!("q{i}"), "web", env);
        new.github_deployment_id = Some(9000 + i);
        let d = store
            .create_deployment(new)
            .await
            .expect("create")
            .deployment;
        let c = store
            .claim("w", LEASE)
            .await
            .expect("claim")
            .expect("claimable");
        assert_eq!(c.id, d.id);
        let outcome = if i == 4 {
            Outcome::failed(Some(1), "tests failed")
        } else {
            Outcome::succeeded(0)
        };
        store.finish(d.id, "w", outcome).await.expect("finish");
        ids.push(d.id);
    }
    let queued = store
        .create_deployment(request("q-last", "web", "production"))
        .await
        .expect("create")
        .deployment;

    let all = store
        .list_deployments(&DeploymentFilter::default())
        .await
        .expect("list");
    let listed: Vec<i64> = all.iter().map(|d| d.id).collect();
    let mut expected: Vec<i64> = ids.clone();
    expected.push(queued.id);
    expected.reverse();
    assert_eq!(listed, expected, "newest first");

    let production = store
        .list_deployments(&DeploymentFilter {
            app: Some("web".to_owned()),
            environment: Some("production".to_owned()),
            state: Some(DeploymentState::Succeeded),
            ..DeploymentFilter::default()
        })
        .await
        .expect("list");
    assert_eq!(
        production.iter().map(|d| d.id).collect::<Vec<_>>(),
        vec![ids[2], ids[0]]
    );
    let page = store
        .list_deployments(&DeploymentFilter {
            before_id: Some(ids[3]),
            limit: 2,
            ..DeploymentFilter::default()
        })
        .await
        .expect("list");
    assert_eq!(
        page.iter().map(|d| d.id).collect::<Vec<_>>(),
        vec![ids[2], ids[1]]
    );
    assert!(
        store
            .list_deployments(&DeploymentFilter {
                app: Some("nope".to_owned()),
                ..DeploymentFilter::default()
            })
            .await
            .expect("list")
            .is_empty()
    );

    // Rollback target: the last success before a given deployment (ids[4] failed).
    let last = store
        .last_succeeded("web", "production", None)
        .await
        .expect("last")
        .expect("one");
    assert_eq!(last.id, ids[2]);
    let before = store
        .last_succeeded("web", "production", Some(ids[2]))
        .await
        .expect("last")
        .expect("one");
    assert_eq!(before.id, ids[0]);
    assert_eq!(
        store
            .last_succeeded("web", "production", Some(ids[0]))
            .await
            .expect("last"),
        None
    );
    assert_eq!(
        store.last_succeeded("web", "qa", None).await.expect("last"),
        None
    );

    assert_eq!(
        store
            .find_by_github_id(9003)
            .await
            .expect("find")
            .map(|d| d.id),
        Some(ids[3])
    );
    assert_eq!(store.find_by_github_id(1).await.expect("find"), None);

    assert_eq!(
        store.count_by_state().await.expect("count"),
        vec![
            (DeploymentState::Queued, 1),
            (DeploymentState::Succeeded, 5),
            (DeploymentState::Failed, 1),
        ]
    );
}

/// A rollback goes back to the last successful run of the `deploy` task: never to a
/// lock, an unlock or another `deploy:<word>` task, nor to a failed deploy.
pub async fn rollback_target_is_the_last_successful_deploy_task(h: &Harness) {
    let store = h.store();
    let run = |n: u32, task: &'static str, succeeded: bool| async move {
        let mut new = request(&format!("rollback-{n}"), "web", "production");
        new.task = task.to_owned();
        let d = store
            .create_deployment(new)
            .await
            .expect("create")
            .deployment;
        let c = store
            .claim("w", LEASE)
            .await
            .expect("claim")
            .expect("claimable");
        assert_eq!(c.id, d.id);
        let outcome = if succeeded {
            Outcome::succeeded(0)
        } else {
            Outcome::failed(Some(1), "tests failed")
        };
        store.finish(d.id, "w", outcome).await.expect("finish");
        d.id
    };
    let older = run(1, "deploy", true).await;
    let deploy = run(2, "deploy", true).await;
    let lock = run(3, "deploy:lock", true).await;
    let migrate = run(4, "deploy:migrate", true).await;
    let unlock = run(5, "deploy:unlock", true).await;
    let failed = run(6, "deploy", false).await;
    // A successful dry run (issue 18) deployed nothing: never a rollback's "current"
    // nor its target.
    let noop = run(7, chima_store::DRY_RUN_TASK, true).await;
    assert!(failed < noop);
    assert!(older < deploy && deploy < lock && lock < migrate && migrate < unlock);
    assert!(unlock < failed);

    let last = store
        .last_succeeded("web", "production", None)
        .await
        .expect("last")
        .expect("one");
    assert_eq!(
        (last.id, last.task.as_str()),
        (deploy, "deploy"),
        "the newest successful deploy, past the failed deploy and the other tasks"
    );
    for before in [noop, failed, unlock, migrate, lock] {
        assert_eq!(
            store
                .last_succeeded("web", "production", Some(before))
                .await
                .expect("last")
                .map(|d| d.id),
            Some(deploy),
            "before {before}"
        );
    }
    assert_eq!(
        store
            .last_succeeded("web", "production", Some(deploy))
            .await
            .expect("last")
            .map(|d| d.id),
        Some(older)
    );
}
