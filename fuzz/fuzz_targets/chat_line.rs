//! The chat grammar on arbitrary text: it must never panic or hang, and what
//! parses must print back to itself.
#![no_main]

use chima_command::{Addressee, parse, parse_command};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    let bot = Addressee {
        name: "chima".into(),
        aliases: vec!["hubot".into()],
        user_id: Some("U0CHIMA".into()),
        direct: false,
    };
    if let Ok(c) = parse(line, &bot) {
        let again = parse(&format!("chima {}", c.to_line()), &bot);
        assert_eq!(again, Ok(c));
    }
    let _ = parse_command(line);
    let _ = parse(line, &bot.clone().in_direct_message());
});
