//! The app.json loader on arbitrary text, and the payload reader on the same
//! text: errors, never a panic or a hang.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(errors) = chima_config::Apps::parse(text, std::path::Path::new("fuzz.json")) {
        assert!(!errors.0.is_empty());
        let _ = errors.to_string();
    }
    if let Ok(value) = serde_json::from_str::<serde_json::Value>(text) {
        // A payload is read field by field and never configures anything.
        let _ = chima_payload::DeploymentPayload::read(&value);
    }
});
