//! `"20m"`, `"1h30m"`, `"90s"`: the deploy timeout as people write it. The reading is
//! the chat grammar's (`chima_command::parse_duration`, the same units and limit);
//! only the message for zero says why a timeout cannot be zero.

use std::time::Duration;

/// The longest timeout accepted. A deploy that needs more is stuck.
pub const MAX_TIMEOUT: Duration = chima_command::MAX_DURATION;

/// Parses a duration made of `<number><unit>` parts, units `h`, `m`, `s`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    chima_command::parse_duration(s).map_err(|e| {
        if e.ends_with(" is zero") {
            format!("{e}: a deploy needs some time")
        } else {
            e
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        assert_eq!(parse_duration("20m"), Ok(Duration::from_secs(1200)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        for bad in [
            "",
            "20",
            "m",
            "0s",
            "25h",
            "1d",
            "-5m",
            "99999999999999999999h",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
