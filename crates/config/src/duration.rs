//! `"20m"`, `"1h30m"`, `"90s"`: the deploy timeout as people write it.

use std::time::Duration;

/// The longest timeout accepted. A deploy that needs more is stuck.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// Parses a duration made of `<number><unit>` parts, units `h`, `m`, `s`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("`{s}` is not a duration: write it like `20m`, `1h30m` or `90s`");
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
        let unit = match c {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return Err(bad()),
        };
        let n: u64 = digits.parse().map_err(|_| bad())?;
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
        digits.clear();
    }
    if !digits.is_empty() {
        return Err(format!(
            "`{s}` has no unit after `{digits}`: write `{digits}s` or `{digits}m`"
        ));
    }
    let d = Duration::from_secs(total);
    if d.is_zero() {
        return Err(format!("`{s}` is zero: a deploy needs some time"));
    }
    if d > MAX_TIMEOUT {
        return Err(format!("`{s}` is longer than the 24h limit"));
    }
    Ok(d)
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
