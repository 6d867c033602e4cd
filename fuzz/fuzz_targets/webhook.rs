//! Webhook bodies and signatures as GitHub could send them, or anyone else:
//! parse errors and signature refusals, never a panic or a hang.
#![no_main]

use chima_github::webhook::{parse_event, verify_signature};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for event in [
        "deployment",
        "ping",
        "status",
        "check_suite",
        "push",
        "issues",
    ] {
        let _ = parse_event(event, data);
    }
    if let Ok(header) = std::str::from_utf8(data) {
        let _ = verify_signature(b"secret", b"{}", Some(header));
    }
    let _ = verify_signature(b"secret", data, Some("sha256=00"));
});
