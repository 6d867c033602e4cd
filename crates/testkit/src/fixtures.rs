//! Payload fixtures for the bad-input tests: the project's own (under
//! `tests/fixtures/<kind>`) or the real public examples (`$REAL_FIXTURES/<kind>`,
//! read in place, never copied; see `REAL_FIXTURES` in README.md), and the flipped and
//! truncated bodies made from them.

use std::path::Path;

/// The fixtures of `kind` ("github", "slack") whose file names end with one of
/// `endings`, as (file name, bytes), sorted by name. Panics, saying what to
/// set, when `real` and REAL_FIXTURES is missing, or when there are none.
pub fn load(kind: &str, real: bool, endings: &[&str]) -> Vec<(String, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = if real {
        let d = std::env::var("REAL_FIXTURES")
            .expect("set REAL_FIXTURES to the folder of real examples, e.g. ../shared/fixtures");
        root.join(d).join(kind)
    } else {
        root.join("tests/fixtures").join(kind)
    };
    let entries = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("the fixtures folder {}: {e}", dir.display()));
    let mut out = Vec::new();
    for entry in entries {
        let path = entry.expect("a fixtures folder entry").path();
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        if endings.iter().any(|e| name.ends_with(e)) {
            let body = std::fs::read(&path)
                .unwrap_or_else(|e| panic!("the fixture {}: {e}", path.display()));
            out.push((name, body));
        }
    }
    out.sort();
    assert!(!out.is_empty(), "no fixtures in {}", dir.display());
    out
}

/// Byte flips and truncations of a body (never the body itself).
pub fn mutations(body: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for cut in [
        0,
        1,
        body.len() / 4,
        body.len() / 2,
        body.len().saturating_sub(1),
    ] {
        out.push(body[..cut.min(body.len())].to_vec());
    }
    let step = (body.len() / 40).max(1);
    for (n, i) in (0..body.len()).step_by(step).enumerate() {
        let mut m = body.to_vec();
        m[i] = match n % 4 {
            0 => m[i] ^ 0x01,
            1 => b'"',
            2 => 0xff,
            _ => b'{',
        };
        out.push(m);
    }
    out.retain(|m| m != body);
    out
}
