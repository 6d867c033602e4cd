//! The app.json loader on arbitrary text, and the same checks on a payload
//! config: errors, never a panic or a hang.
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
        let _ = chima_config::Apps::app_from_payload("app", "o/r", &value);
    }
});
