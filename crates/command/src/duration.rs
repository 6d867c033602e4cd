//! Durations as typed in chat (`lock app in prod for 2h`): `90s`, `20m`, `1h30m`,
//! at most a day.

use std::time::Duration;

/// The longest duration a command takes.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

/// Reads `90s`, `20m`, `2h`, `1h30m`: hours, minutes and seconds, more than zero
/// and at most [`MAX_DURATION`]. The error says what is wrong.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("`{s}` is not a duration: write it like `20m`, `1h30m` or `90s`");
    let d = parse_span(s, &[('h', 3600), ('m', 60), ('s', 1)], bad, "s", "m")?;
    if d > MAX_DURATION {
        return Err(format!("`{s}` is longer than the 24h limit"));
    }
    Ok(d)
}

/// The one reader of `<number><unit>...` spans, for locks ([`parse_duration`]) and
/// freezes (`parse_freeze_duration`): the sum of each number times its unit's
/// seconds, more than zero. `bad` is the caller's message for what is no span;
/// `hint_a`/`hint_b` are the units suggested for a number without one.
pub(crate) fn parse_span(
    s: &str,
    units: &[(char, u64)],
    bad: impl Fn() -> String,
    hint_a: &str,
    hint_b: &str,
) -> Result<Duration, String> {
    if s.is_empty() {
        return Err(bad());
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let Some(&(_, unit)) = units.iter().find(|(u, _)| *u == c) else {
            return Err(bad());
        };
        let n: u64 = digits.parse().map_err(|_| bad())?;
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(&bad)?;
        digits.clear();
    }
    if !digits.is_empty() {
        return Err(format!(
            "`{s}` has no unit after `{digits}`: write `{digits}{hint_a}` or `{digits}{hint_b}`"
        ));
    }
    let d = Duration::from_secs(total);
    if d.is_zero() {
        return Err(format!("`{s}` is zero"));
    }
    Ok(d)
}

/// A duration as [`parse_duration`] reads it back: `1h30m`, `2h`, `45s`.
pub fn format_duration(d: Duration) -> String {
    let s = d.as_secs();
    let (h, m, s) = (s / 3600, (s % 3600) / 60, s % 60);
    let mut out = String::new();
    for (n, unit) in [(h, 'h'), (m, 'm'), (s, 's')] {
        if n > 0 {
            out.push_str(&format!("{n}{unit}"));
        }
    }
    if out.is_empty() {
        out.push_str("0s");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_and_round_trip() {
        for (text, secs) in [("20m", 1200), ("1h30m", 5400), ("90s", 90), ("2h", 7200)] {
            assert_eq!(parse_duration(text), Ok(Duration::from_secs(secs)));
            let d = Duration::from_secs(secs);
            assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }
        for bad in ["", "20", "2d", "h", "0m", "25h", "1h 30m", "-1h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
