//! The grammar table (README, "Commands"), row by row, with hubot-deploy's own
//! cases, and property tests: no line makes the parser panic, and every command
//! printed back parses to itself.

use chima_command::{Addressee, Command, Deploy, FreezeEnd, ParseError, Until, parse};
use proptest::prelude::*;

fn bot() -> Addressee {
    Addressee {
        name: "chima".into(),
        aliases: vec!["hubot".into()],
        user_id: Some("U0LAN0Z89".into()),
        direct: false,
    }
}

fn ok(line: &str) -> Command {
    match parse(line, &bot()) {
        Ok(c) => c,
        Err(e) => panic!("{line:?} did not parse: {e}"),
    }
}

fn reason(line: &str) -> String {
    match parse(line, &bot()) {
        Ok(c) => panic!("{line:?} parsed as {c:?}, expected an error"),
        Err(e) => e.to_string(),
    }
}

fn deploy(line: &str) -> Deploy {
    match ok(line) {
        Command::Deploy(d) => d,
        other => panic!("{line:?} parsed as {other:?}"),
    }
}

fn json(line: &str) -> String {
    serde_json::to_string(&ok(line)).unwrap()
}

#[test]
fn deploy_simplest_prints_the_documented_json() {
    assert_eq!(
        json("chima deploy hubot"),
        r#"{"command":"deploy","task":"deploy","force":false,"app":"hubot","ref":null,"env":null,"hosts":null,"otp":null}"#
    );
}

#[test]
fn deploy_keeps_env_as_typed_aliases_come_later() {
    assert_eq!(
        deploy("chima deploy app to prod").env.as_deref(),
        Some("prod")
    );
}

#[test]
fn hubot_deploy_full_line_with_otp() {
    let d = deploy("hubot deploy hubot/atmos/branch to production/fe 123456");
    assert_eq!(d.app, "hubot");
    assert_eq!(d.git_ref.as_deref(), Some("atmos/branch"));
    assert_eq!(d.env.as_deref(), Some("production"));
    assert_eq!(d.hosts.as_deref(), Some("fe"));
    assert_eq!(d.otp.as_deref(), Some("123456"));
    assert_eq!(d.task, "deploy");
    assert!(!d.force);
}

#[test]
fn hubot_deploy_yubikey() {
    let d = deploy(
        "chima deploy hubot/atmos/branch to production/fe ccccccdlnncbtuevhdbctrccukdciveuclhbkvehbeve",
    );
    assert_eq!(
        d.otp.as_deref(),
        Some("ccccccdlnncbtuevhdbctrccukdciveuclhbkvehbeve")
    );
}

#[test]
fn hubot_deploy_cases_that_are_not_deploys() {
    let r = reason("hubot deploy hubot/atmos/branch to production/fe 123456 burgers");
    assert!(r.contains("burgers"), "{r}");
    let r = reason("hubot deploy hubot/atmos/branch to production/fe burgers");
    assert!(r.contains("burgers"), "{r}");
    let r = reason("chima deploy hubot/branch tos taging");
    assert!(
        r.contains("`tos`") && r.contains("did you mean `to`"),
        "{r}"
    );
}

#[test]
fn deploy_forms() {
    let d = deploy("chima deploy! hubot");
    assert!(d.force);
    assert_eq!(d.task, "deploy");
    let d = deploy("chima deploy:migrate hubot");
    assert_eq!(d.task, "deploy:migrate");
    assert!(!d.force);
    // hubot-deploy kept the `!` in the task; here it forces.
    let d = deploy("chima deploy:migrate! app");
    assert_eq!(d.task, "deploy:migrate");
    assert!(d.force);
    for prep in ["to", "in", "on", "TO", "In"] {
        let d = deploy(&format!("chima deploy hubot {prep} staging"));
        assert_eq!(d.env.as_deref(), Some("staging"), "{prep}");
    }
    let d = deploy("chima deploy hubot/mybranch to production");
    assert_eq!(d.git_ref.as_deref(), Some("mybranch"));
    let d = deploy("chima deploy hubot 123456");
    assert_eq!(d.otp.as_deref(), Some("123456"));
    assert_eq!(d.env, None);
}

/// `deploy:noop` (issue 18's dry run) is a deploy whose task is `deploy:noop`, in every
/// form a deploy takes; `deploy:noop!` is refused (a dry run has no checks to skip).
#[test]
fn dry_run_is_a_deploy_with_the_noop_task() {
    let d = deploy("chima deploy:noop hubot/feature-x to production/web-1 123456");
    // chima_config::DRY_RUN_TASK (config depends on this crate, so it is spelled here).
    assert_eq!(d.task, "deploy:noop");
    assert!(!d.force);
    assert_eq!(d.app, "hubot");
    assert_eq!(d.git_ref.as_deref(), Some("feature-x"));
    assert_eq!(d.env.as_deref(), Some("production"));
    assert_eq!(d.hosts.as_deref(), Some("web-1"));
    assert_eq!(d.otp.as_deref(), Some("123456"));
    assert_eq!(deploy("CHIMA DEPLOY:NOOP Hubot").task, "deploy:noop");
    assert_eq!(deploy("chima deploy:noop hubot").env, None);
    // Printed back, it is the same line.
    assert_eq!(
        ok("chima deploy:noop hubot/main to staging").to_line(),
        "deploy:noop hubot/main to staging"
    );
    for line in [
        "chima deploy:noop! hubot to production",
        "chima DEPLOY:NOOP! hubot",
        "chima deploy:noop!! hubot to production the site is down",
    ] {
        let r = reason(line);
        assert!(
            r.contains("dry run") && r.contains("cannot be forced"),
            "{line}: {r}"
        );
    }
    // Malformed and hostile lines are refused as for any deploy.
    assert!(reason("chima deploy:noop").contains("needs an app"));
    assert!(reason("chima deploy:noop hubot/--upload-pack=id").contains("not a ref"));
    assert!(
        reason("chima deploy:noop hubot to production/-oProxyCommand=id").contains("host filter")
    );
    assert!(reason("chima deploy:noop hubot to pro;d").contains("not an environment name"));
    assert!(reason("chima deploy:noop hubot to production now").contains("nothing was deployed"));
    assert!(reason(&format!("chima deploy:noop {}", "a".repeat(5000))).contains("too long"));
    // Shell and git argument injection in the app name.
    assert!(reason("chima deploy:noop hub$(id)ot").contains("not an app name"));
}

#[test]
fn names_and_words_are_case_insensitive_refs_are_not() {
    let d = deploy("CHIMA DEPLOY Project-X/Feature TO Edge");
    assert_eq!(d.app, "project-x");
    assert_eq!(d.env.as_deref(), Some("edge"));
    assert_eq!(d.git_ref.as_deref(), Some("Feature"));
}

#[test]
fn deploy_near_misses_say_what_is_wrong() {
    assert_eq!(
        reason("chima deploy hubot to"),
        "I read `to` but no environment after it"
    );
    assert!(reason("chima deploy").contains("needs an app"));
    assert!(reason("chima deploy hubot/").contains("no ref after the `/`"));
    assert!(reason("chima deploy hubot to production/").contains("not a host filter"));
    assert!(reason("chima deploy hubot 12345").contains("not a one-time password"));
    assert!(reason("chima deploy hub$ot").contains("not an app name"));
    assert!(reason("chima deploy hubot to pro;d").contains("not an environment name"));
    assert!(reason("chima deploy:m;x hubot").contains("not a task"));
    assert!(reason("chima deploy:lock! hubot in x").contains("cannot be forced"));
}

#[test]
fn hostile_refs_and_hosts_are_refused() {
    for line in [
        "chima deploy app/-x",
        "chima deploy app/--upload-pack=touch${IFS}x",
        "chima deploy app/a..b",
        "chima deploy app/$(id)",
        "chima deploy app/`id`",
        "chima deploy app/x;rm",
        "chima deploy app/x|y",
        "chima deploy app/x.lock",
        "chima deploy app/x\u{7}",
        "chima deploy app to production/-oProxyCommand=id",
        "chima deploy app to production/a;b",
        "chima deploy app to production/$(id)",
        "chima deploy app to production/a..b",
        "chima deploy -app",
        "chima deploy app to -env",
        "chima deploys app/-x",
        "chima status app/a..b",
    ] {
        let e = parse(line, &bot()).unwrap_err();
        assert!(matches!(e, ParseError::Invalid { .. }), "{line:?}: {e:?}");
    }
}

#[test]
fn control_characters_anywhere_are_refused() {
    let r = reason("chima lock app in prod because\u{1b}[31m");
    assert!(r.contains("control"), "{r}");
}

#[test]
fn deploys_rows() {
    assert_eq!(
        ok("chima deploys hubot"),
        Command::Deploys {
            app: "hubot".into(),
            git_ref: None,
            env: None
        }
    );
    assert_eq!(
        ok("chima deploys hubot in production"),
        Command::Deploys {
            app: "hubot".into(),
            git_ref: None,
            env: Some("production".into())
        }
    );
    assert_eq!(
        ok("chima deploys hubot/mybranch to production"),
        Command::Deploys {
            app: "hubot".into(),
            git_ref: Some("mybranch".into()),
            env: Some("production".into())
        }
    );
    assert!(reason("chima deploys").contains("needs an app"));
    assert!(reason("chima deploys hubot in").contains("no environment"));
    assert!(reason("chima deploys hubot please").contains("`please`"));
    assert_eq!(
        json("chima deploys hubot in staging"),
        r#"{"command":"deploys","app":"hubot","ref":null,"env":"staging"}"#
    );
}

#[test]
fn where_rows() {
    for line in [
        "chima where can i deploy hubot",
        "chima where can I deploy hubot?",
        "chima Where can i deploy hubot ?",
    ] {
        assert_eq!(
            ok(line),
            Command::Where {
                app: "hubot".into()
            },
            "{line}"
        );
    }
    assert!(reason("chima where can i deploy").contains("needs an app"));
    assert!(reason("chima where is the coffee").contains("where can i deploy <app>"));
    assert_eq!(
        json("chima where can i deploy hubot"),
        r#"{"command":"where","app":"hubot"}"#
    );
}

#[test]
fn lock_for_a_while() {
    use std::time::Duration;
    assert_eq!(
        ok("chima lock hubot in production for 2h db work"),
        Command::Lock {
            app: "hubot".into(),
            env: "production".into(),
            expires_in: Some(Duration::from_secs(7200)),
            reason: Some("db work".into())
        }
    );
    assert_eq!(
        ok("chima lock hubot in production for 1h30m"),
        Command::Lock {
            app: "hubot".into(),
            env: "production".into(),
            expires_in: Some(Duration::from_secs(5400)),
            reason: None
        }
    );
    // `for` and no duration after it: all reason, as before.
    for (line, reason) in [
        (
            "chima lock hubot in production for the release",
            "for the release",
        ),
        ("chima lock hubot in production for", "for"),
        ("chima lock hubot in production for 2d", "for 2d"),
        ("chima lock hubot in production for 0m", "for 0m"),
        (
            "chima lock hubot in production release for 2h",
            "release for 2h",
        ),
    ] {
        assert_eq!(
            ok(line),
            Command::Lock {
                app: "hubot".into(),
                env: "production".into(),
                expires_in: None,
                reason: Some(reason.into())
            },
            "{line}"
        );
    }
    assert_eq!(
        json("chima lock hubot in prod for 30m friday"),
        r#"{"command":"lock","app":"hubot","env":"prod","for":"30m","reason":"friday"}"#
    );
    assert_eq!(
        ok("chima lock hubot in prod for 90m").to_line(),
        "lock hubot in prod for 1h30m"
    );
}

#[test]
fn lock_and_unlock_rows() {
    assert_eq!(
        ok("chima lock hubot in production"),
        Command::Lock {
            app: "hubot".into(),
            env: "production".into(),
            expires_in: None,
            reason: None
        }
    );
    assert_eq!(
        ok("chima lock hubot in production db   migration running"),
        Command::Lock {
            app: "hubot".into(),
            env: "production".into(),
            expires_in: None,
            reason: Some("db migration running".into())
        }
    );
    assert_eq!(
        ok("chima deploy:lock hubot in production"),
        ok("chima lock hubot in production")
    );
    assert_eq!(
        ok("chima unlock hubot in production"),
        Command::Unlock {
            app: "hubot".into(),
            env: "production".into()
        }
    );
    assert_eq!(
        ok("chima deploy:unlock hubot in production"),
        ok("chima unlock hubot in production")
    );
    assert!(reason("chima lock hubot").contains("which environment"));
    assert!(reason("chima lock hubot in").contains("no environment after it"));
    assert!(reason("chima lock hubot/branch in prod").contains("not a ref"));
    assert!(reason("chima unlock hubot in prod now").contains("`now`"));
    assert_eq!(
        json("chima lock hubot in prod friday"),
        r#"{"command":"lock","app":"hubot","env":"prod","reason":"friday"}"#
    );
}

#[test]
fn cancel_and_rollback_rows() {
    assert_eq!(
        ok("chima cancel hubot in staging"),
        Command::Cancel {
            app: "hubot".into(),
            env: "staging".into()
        }
    );
    assert_eq!(
        ok("chima rollback hubot in production"),
        Command::Rollback {
            app: "hubot".into(),
            env: "production".into()
        }
    );
    assert!(reason("chima cancel").contains("needs an app and an environment"));
    assert!(reason("chima rollback hubot to").contains("no environment"));
    assert_eq!(
        json("chima rollback hubot in production"),
        r#"{"command":"rollback","app":"hubot","env":"production"}"#
    );
}

#[test]
fn status_rows() {
    assert_eq!(
        ok("chima status hubot"),
        Command::Status {
            app: "hubot".into(),
            git_ref: None
        }
    );
    assert_eq!(
        ok("chima status hubot/feature/x"),
        Command::Status {
            app: "hubot".into(),
            git_ref: Some("feature/x".into())
        }
    );
    assert!(reason("chima status").contains("needs an app"));
    assert!(reason("chima status hubot please").contains("`please`"));
    assert_eq!(
        json("chima status hubot/main"),
        r#"{"command":"status","app":"hubot","ref":"main"}"#
    );
}

#[test]
fn version_and_help_rows() {
    assert_eq!(ok("chima deploy:version"), Command::Version);
    assert_eq!(ok("chima help"), Command::Help);
    assert_eq!(ok("chima help deploy"), Command::Help);
    assert!(reason("chima deploy:version now").contains("takes nothing"));
    assert_eq!(json("chima deploy:version"), r#"{"command":"version"}"#);
    assert_eq!(json("chima help"), r#"{"command":"help"}"#);
}

#[test]
fn unknown_commands_get_a_suggestion() {
    assert_eq!(
        reason("chima deplyo hubot"),
        "I don't know the command `deplyo` (did you mean `deploy`?); say `help` for the list"
    );
    assert_eq!(
        reason("chima burgers"),
        "I don't know the command `burgers`; say `help` for the list"
    );
    assert!(reason("chima").contains("no command"));
}

#[test]
fn lines_not_addressed_are_ignored() {
    for line in [
        "deploy hubot",
        "hey chima deploy hubot",
        "chimadeploy hubot",
        "",
    ] {
        assert_eq!(
            parse(line, &bot()),
            Err(ParseError::NotAddressed),
            "{line:?}"
        );
    }
}

#[test]
fn mentions_and_direct_messages() {
    assert!(matches!(
        ok("<@U0LAN0Z89> deploy hubot"),
        Command::Deploy(_)
    ));
    let dm = bot().in_direct_message();
    assert!(matches!(parse("deploy hubot", &dm), Ok(Command::Deploy(_))));
}

#[test]
fn oversized_lines_are_refused_with_the_limit() {
    let line = format!("chima deploy app/{}", "a".repeat(3000));
    let r = reason(&line);
    assert!(r.contains("too long") && r.contains("2000"), "{r}");
    // A long but legal ref is bounded separately.
    let r = reason(&format!("chima deploy app/{}", "a".repeat(300)));
    assert!(r.contains("limit is 255"), "{r}");
}

// ---- property tests ----

fn slug() -> impl Strategy<Value = String> {
    "[a-z0-9][-_.a-z0-9]{0,12}".prop_filter("no ..", |s| !s.contains(".."))
}

fn git_ref() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_][A-Za-z0-9_+,=@-]{0,10}(/[A-Za-z0-9_][A-Za-z0-9_+,=@-]{0,10}){0,3}"
        .prop_filter("check_ref", |r| chima_command::check_ref(r).is_ok())
}

fn hosts() -> impl Strategy<Value = String> {
    "[a-z0-9][a-z0-9_,*:@+]{0,10}"
        .prop_filter("check_hosts", |h| chima_command::check_hosts(h).is_ok())
}

fn otp() -> impl Strategy<Value = String> {
    prop_oneof!["[0-9]{6}", "[cbdefghijklnrtuv]{32,64}"]
}

fn command() -> impl Strategy<Value = Command> {
    let task = prop_oneof![
        Just("deploy".to_string()),
        "[a-z0-9_]{1,8}".prop_map(|t| format!("deploy:{t}"))
    ];
    let deploy = (
        task,
        any::<bool>(),
        slug(),
        proptest::option::of(git_ref()),
        proptest::option::of((slug(), proptest::option::of(hosts()))),
        proptest::option::of(otp()),
        proptest::option::of(reason_words()),
    )
        // `deploy:lock`, `deploy:unlock` and `deploy:version` are other commands.
        .prop_filter("reserved tasks", |(t, ..)| {
            !matches!(
                t.as_str(),
                "deploy:lock" | "deploy:unlock" | "deploy:version"
            )
        })
        // `deploy:noop!` and `deploy:noop!!` are refused (a dry run cannot be forced).
        .prop_filter("forced dry run", |(t, force, .., glass)| {
            !(t == "deploy:noop" && (*force || glass.is_some()))
        })
        .prop_map(|(task, force, app, git_ref, dest, otp, glass)| {
            let (env, hosts) = match dest {
                Some((e, h)) => (Some(e), h),
                None => (None, None),
            };
            // Break-glass names its environment and forces.
            let emergency = glass.filter(|_| env.is_some());
            Command::Deploy(Deploy {
                task,
                force: force || emergency.is_some(),
                app,
                git_ref,
                env,
                hosts,
                otp,
                emergency,
            })
        });
    let not_all = || slug().prop_filter("`all` means every app", |s| s != "all");
    let freeze = (
        proptest::option::of(not_all()),
        proptest::option::of(not_all()),
        proptest::option::of(prop_oneof![
            (1u64..=90 * 24 * 3600).prop_map(|s| FreezeEnd::For(std::time::Duration::from_secs(s))),
            (
                2000i16..2100,
                1i8..=12,
                1i8..=28,
                proptest::option::of((0i8..24, 0i8..60))
            )
                .prop_map(|(y, m, d, time)| FreezeEnd::Until(Until {
                    date: Some((y, m, d)),
                    time
                })),
            (0i8..24, 0i8..60).prop_map(|t| FreezeEnd::Until(Until {
                date: None,
                time: Some(t)
            })),
        ]),
        proptest::option::of(reason_words()),
    )
        .prop_map(|(app, env, ends, reason)| Command::Freeze {
            app,
            env,
            ends,
            reason,
        });
    let unfreeze = (
        proptest::option::of(not_all()),
        proptest::option::of(not_all()),
    )
        .prop_map(|(app, env)| Command::Unfreeze { app, env });
    prop_oneof![
        deploy,
        freeze,
        unfreeze,
        (
            slug(),
            proptest::option::of(git_ref()),
            proptest::option::of(slug())
        )
            .prop_map(|(app, git_ref, env)| Command::Deploys { app, git_ref, env }),
        slug().prop_map(|app| Command::Where { app }),
        (
            slug(),
            slug(),
            proptest::option::of(1u64..=24 * 3600),
            proptest::option::of("[a-z]{1,8}( [a-z]{1,8}){0,3}")
        )
            .prop_map(|(app, env, secs, reason)| Command::Lock {
                app,
                env,
                expires_in: secs.map(std::time::Duration::from_secs),
                reason
            }),
        (slug(), slug()).prop_map(|(app, env)| Command::Unlock { app, env }),
        (slug(), slug()).prop_map(|(app, env)| Command::Cancel { app, env }),
        (slug(), slug()).prop_map(|(app, env)| Command::Rollback { app, env }),
        (slug(), proptest::option::of(git_ref()))
            .prop_map(|(app, git_ref)| Command::Status { app, git_ref }),
        (
            slug(),
            proptest::option::of((
                slug(),
                any::<bool>(),
                proptest::option::of("[a-z]{1,8}( [a-z]{1,8}){0,2}")
            ))
        )
            .prop_map(|(app, rest)| match rest {
                None => Command::AutoDeploy {
                    app,
                    env: None,
                    enabled: None,
                    reason: None
                },
                Some((env, on, reason)) => Command::AutoDeploy {
                    app,
                    env: Some(env),
                    enabled: Some(on),
                    reason: if on { None } else { reason },
                },
            }),
        (1i64..=999_999_999_999_999_999).prop_map(|id| Command::Approve { id }),
        (
            1i64..=999_999_999_999_999_999,
            proptest::option::of("[a-z]{1,8}( [a-z]{1,8}){0,3}")
        )
            .prop_map(|(id, reason)| Command::Reject { id, reason }),
        Just(Command::Version),
        Just(Command::Help),
    ]
}

/// A reason: words that do not start with a preposition (which would name an
/// environment) nor `for`/`until` (which would say when a freeze ends).
fn reason_words() -> impl Strategy<Value = String> {
    "[a-z]{1,8}( [a-z$;`|]{1,8}){0,3}".prop_filter("a reason", |r| {
        let first = r.split(' ').next().unwrap_or_default();
        !matches!(first, "in" | "on" | "to" | "for" | "until")
    })
}

/// Lines made of the grammar's own words, so that random input reaches deep
/// into the parser instead of failing on the first word.
fn wordy_line() -> impl Strategy<Value = String> {
    let word = prop_oneof![
        Just("deploy".to_string()),
        Just("deploy!".to_string()),
        Just("deploy:x!".to_string()),
        Just("deploys".to_string()),
        Just("to".to_string()),
        Just("in".to_string()),
        Just("where".to_string()),
        Just("can".to_string()),
        Just("i".to_string()),
        Just("lock".to_string()),
        Just("freeze".to_string()),
        Just("unfreeze".to_string()),
        Just("deploy!!".to_string()),
        Just("all".to_string()),
        Just("for".to_string()),
        Just("until".to_string()),
        Just("3d".to_string()),
        Just("2026-12-24".to_string()),
        Just("approve".to_string()),
        Just("reject".to_string()),
        Just("?".to_string()),
        Just("123456".to_string()),
        ".{0,12}",
        "[a-z/.-]{1,12}",
    ];
    proptest::collection::vec(word, 0..8).prop_map(|w| format!("chima {}", w.join(" ")))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, .. ProptestConfig::default() })]

    #[test]
    fn printed_commands_parse_back_to_themselves(c in command()) {
        let line = format!("chima {}", c.to_line());
        prop_assert_eq!(parse(&line, &bot()), Ok(c), "line: {}", line);
    }

    #[test]
    fn random_lines_never_panic(line in any::<String>()) {
        let _ = parse(&line, &bot());
        let _ = parse(&format!("chima {line}"), &bot());
        let _ = parse(&line, &bot().in_direct_message());
    }

    #[test]
    fn grammar_shaped_lines_never_panic_and_errors_have_text(line in wordy_line()) {
        match parse(&line, &bot()) {
            Ok(c) => {
                // Whatever parses prints back to the same command.
                let again = format!("chima {}", c.to_line());
                prop_assert_eq!(parse(&again, &bot()), Ok(c));
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }
}

// ---- real Slack texts (read from REAL_FIXTURES, never copied: README, "Two commands") ----

/// The text of every real Slack event example goes through the grammar the way
/// the transports will send it: no panic; a line not for the bot is ignored;
/// a line that mentions the bot but is not a command gets a reason.
#[test]
#[ignore = "reads the real public examples; run with REAL_FIXTURES=../shared/fixtures"]
fn real_slack_event_texts() {
    let dir = std::env::var("REAL_FIXTURES").expect(
        "set REAL_FIXTURES to the folder of real examples, e.g. REAL_FIXTURES=../shared/fixtures",
    );
    // A relative path is taken from the workspace root, where `.ci/run` runs.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let slack = root.join(&dir).join("slack");
    let mut seen = 0;
    for entry in std::fs::read_dir(&slack).unwrap_or_else(|e| panic!("{}: {e}", slack.display())) {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let event = v.pointer("/event").or_else(|| v.pointer("/payload/event"));
        let Some(text) = event.and_then(|e| e.get("text")).and_then(|t| t.as_str()) else {
            continue;
        };
        seen += 1;
        // The bot as the fixture's own authorizations name it, else as mentioned.
        let user_id = v
            .pointer("/payload/authorizations/0/user_id")
            .or_else(|| v.pointer("/authed_users/0"))
            .and_then(|u| u.as_str())
            .map(str::to_string);
        let bot = Addressee {
            user_id,
            ..Addressee::named("chima")
        };
        let im = event
            .and_then(|e| e.get("channel_type"))
            .and_then(|c| c.as_str())
            == Some("im");
        let bot = if im { bot.in_direct_message() } else { bot };
        let mentioned = bot
            .user_id
            .as_ref()
            .is_some_and(|id| text.trim_start().starts_with(&format!("<@{id}")));
        match parse(text, &bot) {
            Ok(c) => panic!("{}: {text:?} parsed as {c:?}", path.display()),
            Err(ParseError::NotAddressed) => {
                assert!(
                    !mentioned && !im,
                    "{}: addressed but ignored",
                    path.display()
                )
            }
            Err(e) => {
                assert!(
                    mentioned || im,
                    "{}: {text:?} answered: {e}",
                    path.display()
                );
                assert!(!e.to_string().is_empty());
            }
        }
    }
    assert!(
        seen >= 4,
        "only {seen} Slack examples had an event text in {}",
        slack.display()
    );
}

#[test]
fn autodeploy_rows() {
    assert_eq!(
        ok("chima autodeploy hubot"),
        Command::AutoDeploy {
            app: "hubot".into(),
            env: None,
            enabled: None,
            reason: None
        }
    );
    assert_eq!(
        ok("chima autodeploy hubot in staging off flaky tests"),
        Command::AutoDeploy {
            app: "hubot".into(),
            env: Some("staging".into()),
            enabled: Some(false),
            reason: Some("flaky tests".into())
        }
    );
    assert_eq!(
        json("chima autodeploy hubot in staging on"),
        r#"{"command":"autodeploy","app":"hubot","env":"staging","state":"on","reason":null}"#
    );
    assert!(reason("chima autodeploy hubot in staging maybe").contains("`on` or `off`"));
    assert!(reason("chima autodeploy hubot in staging").contains("`on` or `off` for staging?"));
    assert!(reason("chima autodeploy hubot in staging on now").contains("takes no reason"));
    assert!(reason("chima autodeploy").contains("needs an app"));
}

#[test]
fn freeze_rows() {
    assert_eq!(
        ok("chima freeze web in production for 3d holiday season"),
        Command::Freeze {
            app: Some("web".into()),
            env: Some("production".into()),
            ends: Some(FreezeEnd::For(std::time::Duration::from_secs(3 * 86_400))),
            reason: Some("holiday season".into()),
        }
    );
    assert_eq!(
        json("chima freeze all until 2027-01-04 year end"),
        r#"{"command":"freeze","app":"all","env":null,"until":"2027-01-04","reason":"year end"}"#
    );
    assert_eq!(
        json("chima FREEZE web"),
        r#"{"command":"freeze","app":"web","env":null,"reason":null}"#
    );
    assert_eq!(
        json("chima freeze all in production until 2026-12-24T18:00"),
        r#"{"command":"freeze","app":"all","env":"production","until":"2026-12-24T18:00","reason":null}"#
    );
    // `for` and `until` followed by words are the reason.
    assert_eq!(
        ok("chima freeze web for the release until monday"),
        Command::Freeze {
            app: Some("web".into()),
            env: None,
            ends: None,
            reason: Some("for the release until monday".into()),
        }
    );
    assert_eq!(
        ok("chima freeze web in all for 2s"),
        ok("chima freeze web for 2s")
    );
    assert_eq!(
        json("chima unfreeze all in production"),
        r#"{"command":"unfreeze","app":"all","env":"production"}"#
    );
    assert_eq!(
        ok("chima unfreeze web"),
        Command::Unfreeze {
            app: Some("web".into()),
            env: None
        }
    );
    assert_eq!(
        ok("chima freeze web in production until 18:00").to_line(),
        "freeze web in production until 18:00"
    );
    assert_eq!(
        ok("chima freeze web until 2026-12-24").to_line(),
        "freeze web until 2026-12-24"
    );
    let _ = Until {
        date: None,
        time: None,
    };
}

#[test]
fn freeze_refusals_say_what_is_wrong() {
    for (line, says) in [
        ("chima freeze", "needs an app, or `all`"),
        ("chima freeze web in", "no environment after it"),
        ("chima freeze web/main in production", "not a ref"),
        ("chima freeze web in prod$(id)", "not an environment name"),
        ("chima freeze ..etc in production", "not an app name"),
        ("chima freeze web for 91d", "longer than the 90d limit"),
        ("chima freeze web for 3x", "not a duration"),
        (
            "chima freeze web for 3d for 2d",
            "say when the freeze ends once",
        ),
        (
            "chima freeze web for 3d until 2026-12-24",
            "say when the freeze ends once",
        ),
        (
            "chima freeze web until 2026-02-30",
            "that month has 28 days",
        ),
        ("chima freeze web until 2026-12-24;reboot", "not a date"),
        ("chima freeze web until 25:00", "not a time of day"),
        (
            "chima freeze web in production in staging",
            "name one environment",
        ),
        (
            "chima freeze web for 3d in production",
            "the environment goes right after the app",
        ),
        (
            "chima unfreeze web in production now",
            "takes nothing after the environment",
        ),
        ("chima unfreeze", "needs an app"),
        ("chima freez web", "did you mean `freeze`?"),
    ] {
        let r = reason(line);
        assert!(r.contains(says), "{line}: {r}");
    }
    // Oversized reasons are refused; hostile text is kept as text (it never reaches a
    // shell, and every reply escapes it).
    let long = format!("chima freeze web {}", "x".repeat(501));
    assert!(reason(&long).contains("the limit is 500"));
    let hostile =
        ok("chima freeze web in production `rm -rf /` $(id) <!channel> ; DROP TABLE freezes");
    assert_eq!(
        hostile,
        Command::Freeze {
            app: Some("web".into()),
            env: Some("production".into()),
            ends: None,
            reason: Some("`rm -rf /` $(id) <!channel> ; DROP TABLE freezes".into()),
        }
    );
    assert!(reason("chima freeze web reason\u{202E}txt").contains("invisible"));
}

#[test]
fn break_glass_rows() {
    let d = deploy("chima deploy!! web/hotfix to production db is down, customers cannot pay");
    assert_eq!(
        d.emergency.as_deref(),
        Some("db is down, customers cannot pay")
    );
    assert!(d.force, "break-glass also forces");
    assert_eq!(d.env.as_deref(), Some("production"));
    assert_eq!(d.git_ref.as_deref(), Some("hotfix"));
    assert_eq!(
        json("chima deploy!! web to production outage"),
        r#"{"command":"deploy","task":"deploy","force":true,"app":"web","ref":null,"env":"production","hosts":null,"otp":null,"emergency":"outage"}"#
    );
    let d =
        deploy("chima deploy:migrate!! web to production/db1 123456 rollback the bad migration");
    assert_eq!(d.task, "deploy:migrate");
    assert_eq!(d.otp.as_deref(), Some("123456"));
    assert_eq!(d.hosts.as_deref(), Some("db1"));
    assert_eq!(d.emergency.as_deref(), Some("rollback the bad migration"));
    assert_eq!(
        ok("chima deploy!! web to production `id` $(reboot)").to_line(),
        "deploy!! web to production `id` $(reboot)"
    );
    for (line, says) in [
        ("chima deploy!! web to production", "needs a reason"),
        ("chima deploy!! web to production 123456", "needs a reason"),
        ("chima deploy!! web", "names its environment"),
        ("chima deploy!! web because", "names its environment"),
        ("chima deploy!! web to", "no environment after it"),
        ("chima deploy!!! web to production x", "too many `!`"),
        (
            "chima deploy:lock!! web to production x",
            "cannot be forced",
        ),
        (
            "chima deploy!! web/--upload-pack=x to production x",
            "not a ref",
        ),
        (
            "chima deploy!! web to production;id x",
            "not an environment name",
        ),
    ] {
        let r = reason(line);
        assert!(r.contains(says), "{line}: {r}");
    }
    let long = format!("chima deploy!! web to production {}", "y ".repeat(300));
    assert!(reason(&long).contains("the limit is 500"));
    // A plain deploy is not an emergency, forced or not.
    assert_eq!(deploy("chima deploy! web to production").emergency, None);
}

#[test]
fn approve_and_reject_take_a_deployment_number() {
    assert_eq!(ok("chima approve 12"), Command::Approve { id: 12 });
    assert_eq!(ok("chima approve #12"), Command::Approve { id: 12 });
    assert_eq!(ok("chima APPROVE 7"), Command::Approve { id: 7 });
    assert_eq!(
        ok("chima reject 12"),
        Command::Reject {
            id: 12,
            reason: None
        }
    );
    assert_eq!(
        ok("chima reject 12 not during the sale"),
        Command::Reject {
            id: 12,
            reason: Some("not during the sale".into())
        }
    );
    assert_eq!(json("chima approve 12"), r#"{"command":"approve","id":12}"#);
    assert_eq!(
        json("chima reject 3 too risky"),
        r#"{"command":"reject","id":3,"reason":"too risky"}"#
    );
    assert_eq!(
        json("chima reject 3"),
        r#"{"command":"reject","id":3,"reason":null}"#
    );
    assert_eq!(
        ok("chima reject 3 too risky").to_line(),
        "reject 3 too risky"
    );
    assert_eq!(ok("chima approve #3").to_line(), "approve 3");
}

#[test]
fn approve_refuses_what_is_not_a_deployment_number() {
    for (line, expected) in [
        ("chima approve", "which deployment? `approve <id>`"),
        ("chima reject", "which deployment? `reject <id> [reason]`"),
        (
            "chima approve -1",
            "`-1` is not a deployment number: `approve <id>`, like `approve 12`",
        ),
        ("chima approve 0", "`0` is not a deployment number"),
        (
            "chima approve 99999999999999999999",
            "`99999999999999999999` is not a deployment number",
        ),
        (
            "chima approve 1; rm -rf /",
            "`1;` is not a deployment number",
        ),
        (
            "chima approve 1 2",
            "`approve` takes only the deployment's number, but I read `2` after it",
        ),
        ("chima approve $(id)", "`$(id)` is not a deployment number"),
        (
            "chima reject --force",
            "`--force` is not a deployment number",
        ),
        ("chima approve 1e3", "`1e3` is not a deployment number"),
        ("chima approve ０１", "is not a deployment number"),
    ] {
        let e = reason(line);
        assert!(e.contains(expected), "{line}: {e}");
    }
    let long = format!("chima reject 5 {}", "x".repeat(501));
    assert!(reason(&long).contains("longer than 500 characters"));
    assert_eq!(
        reason("chima aprove 5"),
        reason("chima aprove 5"),
        "deterministic"
    );
    assert!(
        reason("chima aprove 5").contains("approve"),
        "{}",
        reason("chima aprove 5")
    );
}
