//! Deploy windows, freezes and break-glass through the real `chima` binary in the
//! embedded mode (issue 18). "Now" is the real clock: each app.json is written by the
//! test from it, with a window that excludes the current hour, never through a clock
//! override someone else could set.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use chrono::Timelike;

fn chima(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_chima"));
    c.current_dir(dir)
        .env(
            "DATABASE_URL",
            format!("sqlite://{}", dir.join("s.db").display()),
        )
        .env("APPS_JSON", dir.join("app.json"))
        .env("USER", "tester")
        .env_remove("CHIMA_NAME")
        .env_remove("GITHUB_TOKEN")
        .env_remove("SLACK_BOT_TOKEN");
    c
}

fn run(dir: &Path, line: &str) -> (Option<i32>, String) {
    let o: Output = chima(dir).args(["run", line]).output().unwrap();
    (
        o.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

/// A git repository whose deploy script says where it deployed, and an app.json for it
/// with `extra` fields.
fn project(dir: &Path, extra: &str) -> PathBuf {
    crate::embedded::repo_with_deploy_script(dir, "#!/bin/sh\necho \"deployed to $DEPLOY_ENV\"\n");
    let apps = dir.join("app.json");
    std::fs::write(
        &apps,
        format!(
            r#"{{"app": {{"provider": "shell", "repository": "example/app",
                "environments": ["staging", "production"], "default_environment": "staging",
                "clone_url": "repo", "default_ref": "main", "notify_room": "ops"{extra}}}}}"#
        ),
    )
    .unwrap();
    apps
}

/// Outside its window, production is refused with the next opening in its own
/// timezone (Hong Kong: HKT) and nothing is created; break-glass passes it, says so,
/// is announced for the notify_room and recorded as an emergency in `deploys`.
#[test]
fn outside_its_window_a_deploy_is_refused_with_the_next_opening_and_break_glass_passes() {
    let dir = tempfile::tempdir().unwrap();
    // Hong Kong has no DST: its wall clock is UTC+8 all year.
    let hk_hour = (chrono::Utc::now() + chrono::Duration::hours(8)).hour();
    let start = (hk_hour + 2) % 24;
    let end = if start == 23 {
        "24:00".to_string()
    } else {
        format!("{:02}:00", start + 1)
    };
    let window = format!("{start:02}:00-{end}");
    project(
        dir.path(),
        &format!(
            r#", "windows": {{"production": {{"allow": ["{window}"], "timezone": "Asia/Hong_Kong"}}}}"#
        ),
    );
    let (code, t) = run(dir.path(), "chima deploy app to production");
    assert_eq!(code, Some(1), "{t}");
    assert!(
        t.contains(&format!("production is outside its deploy windows ({window} (Asia/Hong_Kong)): production opens ")),
        "{t}"
    );
    let day = if start > hk_hour { "today" } else { "tomorrow" };
    assert!(
        t.contains(&format!(
            "opens {day} {start:02}:00 HKT. Nothing was deployed."
        )),
        "{t}"
    );
    assert!(t.contains("`deploy!! app to production <reason>`"), "{t}");
    let (_, t) = run(dir.path(), "chima deploys app");
    assert!(t.contains("No deployments of app yet."), "{t}");
    // Staging has no windows.
    let (code, t) = run(dir.path(), "chima deploy app to staging");
    assert_eq!(code, Some(0), "{t}");
    // `where` shows the window and when it opens.
    let (_, t) = run(dir.path(), "chima where can i deploy app");
    assert!(
        t.contains(&format!(
            "windows: {window} (Asia/Hong_Kong): closed, opens {day} {start:02}:00 HKT"
        )),
        "{t}"
    );

    // Break-glass: passes the window, announced, recorded.
    let (code, t) = run(
        dir.path(),
        "chima deploy!! app to production checkout is broken",
    );
    assert_eq!(code, Some(0), "{t}");
    assert!(
        t.contains("Break-glass by tester: checkout is broken. It passes: production is outside its deploy windows"),
        "{t}"
    );
    assert!(
        t.contains("[to #ops] EMERGENCY (break-glass): tester deploys app/main to production (#2) past its deploy windows or freezes: checkout is broken"),
        "{t}"
    );
    assert!(
        t.contains(
            "| ==> break-glass by tester: checkout is broken; it passes: production is outside"
        ),
        "{t}"
    );
    assert!(t.contains("| deployed to production"), "{t}");
    assert!(
        t.contains("tester's deployment #2 of app/main to production (EMERGENCY, break-glass: checkout is broken) was successful."),
        "{t}"
    );
    let (_, t) = run(dir.path(), "chima deploys app in production");
    assert!(
        t.contains("#2 succeeded app/main to production by tester"),
        "{t}"
    );
    assert!(
        t.contains("[EMERGENCY (break-glass): checkout is broken]"),
        "{t}"
    );
}

/// A freeze blocks deploys before anything is created, says who froze it, why and
/// until when, shows in `where`, and ends by itself.
#[test]
fn a_freeze_blocks_says_who_and_why_and_ends_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    project(dir.path(), "");
    let placed = Instant::now();
    let (code, t) = run(dir.path(), "chima freeze app in staging for 5s code freeze");
    assert_eq!(code, Some(0), "{t}");
    assert!(t.contains("Froze app in staging until "), "{t}");
    assert!(
        t.contains(" UTC: code freeze. Deploys there are refused until then"),
        "{t}"
    );
    let (code, t) = run(dir.path(), "chima deploy app to staging");
    assert_eq!(code, Some(1), "{t}");
    assert!(t.contains("staging is frozen by tester until "), "{t}");
    assert!(
        t.contains(" UTC: code freeze. Nothing was deployed."),
        "{t}"
    );
    let (_, t) = run(dir.path(), "chima where can i deploy app");
    assert!(t.contains("frozen by tester until"), "{t}");
    // Production is not covered.
    let (code, t) = run(dir.path(), "chima deploy app to production");
    assert_eq!(code, Some(0), "{t}");
    // Past its end it counts for nothing: no unfreeze needed.
    let left = Duration::from_millis(5500).saturating_sub(placed.elapsed());
    std::thread::sleep(left);
    let (code, t) = run(dir.path(), "chima deploy app to staging");
    assert_eq!(code, Some(0), "{t}");
    assert!(t.contains("| deployed to staging"), "{t}");
}

/// Freezing stops everyone's deploys, so it needs the permission to deploy to every
/// environment it covers: `freeze all` only for who may deploy everywhere. Unknown
/// scopes are refused with what exists; an unfreeze says what still applies.
#[test]
fn freezing_needs_the_permission_to_deploy_everywhere_it_covers() {
    let dir = tempfile::tempdir().unwrap();
    project(
        dir.path(),
        r#", "allowed_users": {"production": ["alice"]}"#,
    );
    let (code, t) = run(dir.path(), "chima freeze all for 1d holidays");
    assert_eq!(code, Some(1), "{t}");
    assert!(
        t.contains("tester is not allowed to deploy `app` to production"),
        "{t}"
    );
    let (code, t) = run(dir.path(), "chima freeze app in production");
    assert_eq!(code, Some(1), "{t}");
    let (code, t) = run(dir.path(), "chima freeze all in nowhere");
    assert_eq!(code, Some(2), "{t}");
    assert!(
        t.contains("No app has an environment `nowhere`. Environments: production, staging."),
        "{t}"
    );
    let (code, t) = run(dir.path(), "chima freeze nope");
    assert_eq!(code, Some(2), "{t}");
    assert!(t.contains("I don't know an app called `nope`"), "{t}");
    // What tester may deploy, tester may freeze: every app's staging.
    let (code, t) = run(
        dir.path(),
        "chima freeze all in staging until 2099-01-01 too far",
    );
    assert_eq!(code, Some(2), "{t}");
    assert!(t.contains("A freeze lasts at most 90 days"), "{t}");
    let (code, t) = run(dir.path(), "chima freeze all in staging until 2000-01-01");
    assert_eq!(code, Some(2), "{t}");
    assert!(t.contains("has passed"), "{t}");
    let (code, t) = run(dir.path(), "chima freeze all in staging");
    assert_eq!(code, Some(0), "{t}");
    assert!(
        t.contains("Froze every app in staging until tomorrow"),
        "{t}"
    );
    // An app's own unfreeze does not lift the freeze of every app: the reply says so.
    let (code, t) = run(dir.path(), "chima unfreeze app in staging");
    assert_eq!(code, Some(0), "{t}");
    assert!(
        t.contains("app in staging had no freeze of its own; nothing lifted."),
        "{t}"
    );
    assert!(
        t.contains(
            "Still frozen: every app in staging is frozen (every app) by tester until tomorrow"
        ),
        "{t}"
    );
    let (code, t) = run(dir.path(), "chima unfreeze all in staging");
    assert_eq!(code, Some(0), "{t}");
    assert!(
        t.contains("Lifted the freeze of every app in staging (frozen by tester)."),
        "{t}"
    );
    let (code, t) = run(dir.path(), "chima deploy app to staging");
    assert_eq!(code, Some(0), "{t}");
}
