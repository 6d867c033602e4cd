//! The `chima` binary's offline subcommands, run as a user runs them.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn chima() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_chima"));
    c.current_dir(repo_root());
    for var in ["CHIMA_NAME", "CHIMA_ALIASES", "APPS_JSON"] {
        c.env_remove(var);
    }
    c
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn run(c: &mut Command) -> Output {
    c.output().expect("chima runs")
}

#[test]
fn help_and_version() {
    let out = run(chima().arg("--help"));
    assert!(out.status.success());
    let help = text(&out.stdout);
    for word in ["parse", "check", "CHIMA_NAME", "APPS_JSON"] {
        assert!(help.contains(word), "--help lacks {word}:\n{help}");
    }
    let out = run(chima().arg("--version"));
    assert!(out.status.success());
    assert_eq!(
        text(&out.stdout).trim(),
        format!("chima {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn parse_prints_json_and_keeps_the_env_as_typed() {
    let out = run(chima().args(["parse", "chima deploy app to prod"]));
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        text(&out.stdout).trim(),
        r#"{"command":"deploy","task":"deploy","force":false,"app":"app","ref":null,"env":"prod","hosts":null,"otp":null}"#
    );
}

#[test]
fn parse_refuses_with_the_reason_and_exit_1() {
    for (line, reason) in [
        ("deploy app", "not addressed"),
        ("chima deploy hubot/branch tos taging", "`tos`"),
        ("chima deploy app/--upload-pack=x", "starts with `-`"),
        ("chima deploy app to production/$(id)", "`$`"),
    ] {
        let out = run(chima().args(["parse", line]));
        assert_eq!(out.status.code(), Some(1), "{line}");
        assert!(out.stdout.is_empty(), "{line}");
        assert!(
            text(&out.stderr).contains(reason),
            "{line}: {}",
            text(&out.stderr)
        );
    }
}

#[test]
fn parse_uses_the_configured_name_and_aliases() {
    let out = run(chima()
        .args(["parse", "shipit: deploy app"])
        .env("CHIMA_NAME", "robot")
        .env("CHIMA_ALIASES", "shipit, ship"));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = run(chima()
        .args(["parse", "chima deploy app"])
        .env("CHIMA_NAME", "robot"));
    assert_eq!(out.status.code(), Some(1));
}

/// 10,000 random lines through the real binary: each gets an answer, none a panic.
#[test]
fn ten_thousand_random_lines_without_a_panic() {
    let words = [
        "chima",
        "deploy",
        "deploy!",
        "deploy:x",
        "deploys",
        "to",
        "in",
        "on",
        "where",
        "can",
        "i",
        "lock",
        "unlock",
        "cancel",
        "rollback",
        "status",
        "help",
        "?",
        "/",
        "..",
        "-",
        "$(",
        "`",
        "123456",
        "é",
        "\u{202E}",
        "\u{0}",
        "\t",
        "ccccccdlnncbtuevhdbctrccukdciveu",
    ];
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut input = String::new();
    for _ in 0..10_000 {
        let n = next() % 9;
        // Half the lines are addressed, so that they reach the grammar.
        let mut line = String::from(if next() % 2 == 0 { "chima " } else { "" });
        for _ in 0..n {
            match next() % 3 {
                0 => line.push_str(words[(next() % words.len() as u64) as usize]),
                1 => {
                    for _ in 0..(next() % 12) {
                        let c = char::from_u32((next() % 0x3000) as u32).unwrap_or('x');
                        if c != '\n' && c != '\r' {
                            line.push(c);
                        }
                    }
                }
                _ => line.push_str(&format!("app{}/ref{}", next() % 5, next() % 5)),
            }
            line.push(if next() % 7 == 0 { '/' } else { ' ' });
        }
        input.push_str(&line);
        input.push('\n');
    }
    let mut child = chima()
        .args(["parse", "--lines"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let lines: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 10_000);
    let parsed = lines.iter().filter(|v| v.get("command").is_some()).count();
    let refused = lines.iter().filter(|v| v.get("error").is_some()).count();
    assert_eq!(parsed + refused, 10_000);
    assert!(parsed > 0, "the generator never produced a command");
}

#[test]
fn check_lists_the_shipped_apps() {
    let out = run(chima().arg("check"));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(s.contains("config/app.json: 4 apps, all valid"), "{s}");
    assert!(
        s.contains(
            "demo (shell from chima-faseng/chima): staging (default), production (production)"
        ),
        "{s}"
    );
}

#[test]
fn check_reports_every_error_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("app.json");
    std::fs::write(
        &broken,
        "{\n  \"project-x\": {\n    \"provider\": \"fabric\",\n    \"repository\": \"o/r\",\n    \"enironments\": [\"edge\"],\n    \"allowed_users\": {\"prod\": [\"alice\"]}\n  },\n  \"y\": {\"provider\": \"shell\", \"repository\": \"o/y\", \"environments\": []}\n}",
    )
    .unwrap();
    let out = run(chima().arg("check").arg("--apps").arg(&broken));
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    let shown = broken.display().to_string();
    assert!(
        err.contains(&format!(
            "{shown}:5:5: `project-x`: unknown field `enironments`, did you mean `environments`?"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{shown}:6:23: `project-x`: `allowed_users` names `prod`"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!("{shown}:8:51: `y`: `environments` is empty")),
        "{err}"
    );
    assert!(err.contains("3 problem(s)"), "{err}");

    std::fs::write(&broken, "{\"x\": ").unwrap();
    let out = run(chima().arg("check").env("APPS_JSON", &broken));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("not valid JSON: EOF while parsing"),
        "{}",
        text(&out.stderr)
    );
}
