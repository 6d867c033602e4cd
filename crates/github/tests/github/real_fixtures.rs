//! GitHub's public webhook examples, read from the folder in `REAL_FIXTURES` (never
//! copied into this repository):
//! `REAL_FIXTURES=../shared/fixtures cargo test -p chima-github -- --ignored`.

use std::path::{Path, PathBuf};

use chima_github::webhook::{Event, parse_event, sign, verify_signature};

/// `$REAL_FIXTURES/github`; a relative `REAL_FIXTURES` is taken from the workspace root.
fn github_examples() -> PathBuf {
    let dir = std::env::var("REAL_FIXTURES").unwrap_or_else(|_| {
        panic!(
            "set REAL_FIXTURES to the folder of the real examples, e.g. \
             REAL_FIXTURES=../shared/fixtures cargo test -p chima-github -- --ignored"
        )
    });
    let dir = Path::new(&dir);
    let dir = if dir.is_absolute() {
        dir.to_path_buf()
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .join(dir)
    };
    dir.join("github")
}

fn examples() -> Vec<(String, Vec<u8>)> {
    let dir = github_examples();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no examples in {}", dir.display());
    files
        .into_iter()
        .map(|path| {
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .expect("a UTF-8 file name")
                .to_string();
            let body = std::fs::read(&path).expect("readable example");
            (name, body)
        })
        .collect()
}

#[test]
#[ignore = "reads REAL_FIXTURES"]
fn every_real_example_parses_into_its_variant() {
    for (name, body) in examples() {
        let event = name.split('.').next().expect("a name");
        let parsed = parse_event(event, &body).unwrap_or_else(|e| panic!("{name}: {e}"));
        match (event, parsed) {
            ("deployment", Event::Deployment(d)) => {
                assert!(d.deployment_id > 0, "{name}");
                assert_eq!(d.sha.len(), 40, "{name}");
                assert!(!d.git_ref.is_empty() && !d.environment.is_empty(), "{name}");
                assert!(!d.task.is_empty() && !d.creator.is_empty(), "{name}");
                assert!(d.repository.contains('/'), "{name}");
                assert!(d.clone_url.starts_with("https://"), "{name}");
                assert_eq!(
                    d.installation_id.is_some(),
                    name.contains("with-installation"),
                    "{name}"
                );
            }
            ("ping", Event::Ping { zen, hook_id }) => {
                assert!(zen.is_some() && hook_id.is_some(), "{name}");
            }
            ("deployment" | "ping", other) => panic!("{name}: read as {other:?}"),
            (event, Event::Other { event: named }) => assert_eq!(named, event, "{name}"),
            (_, other) => panic!("{name}: read as {other:?}"),
        }
    }
}

#[test]
#[ignore = "reads REAL_FIXTURES"]
fn a_signature_over_each_real_example_verifies() {
    let secret = b"It's a Secret to Everybody";
    for (name, body) in examples() {
        let header = sign(secret, &body);
        assert_eq!(
            verify_signature(secret, &body, Some(&header)),
            Ok(()),
            "{name}"
        );
        let mut changed = body.clone();
        changed.extend_from_slice(b"\n");
        assert!(
            verify_signature(secret, &changed, Some(&header)).is_err(),
            "{name}: a changed body must not verify"
        );
    }
}
