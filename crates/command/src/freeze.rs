//! `freeze` and `unfreeze`: how long a freeze lasts, or until when, as typed.
//!
//! ```text
//! freeze <app>|all [in <env>] [for <duration>|until <date>] [reason...]
//! unfreeze <app>|all [in <env>]
//! ```
//!
//! A freeze always ends by itself: `for 3d` (days, hours, minutes or seconds, at most
//! [`MAX_FREEZE`]), `until 2026-12-24` (the start of that day), `until 2026-12-24T18:00`
//! or `until 18:00` (the next time it is 18:00), read in the environment's timezone
//! by whoever places it. With neither it lasts [`DEFAULT_FREEZE`].

use std::fmt;
use std::time::Duration;

/// The longest freeze: a quarter.
pub const MAX_FREEZE: Duration = Duration::from_secs(90 * 24 * 3600);

/// How long a freeze lasts when the command says neither `for` nor `until`.
pub const DEFAULT_FREEZE: Duration = Duration::from_secs(24 * 3600);

/// The longest freeze reason, in characters.
pub const MAX_REASON_CHARS: usize = 500;

/// When a freeze ends, as typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FreezeEnd {
    /// `for 3d`: this long from now.
    For(Duration),
    /// `until ...`: a local date and/or time, in the environment's timezone.
    Until(Until),
}

/// `until 2026-12-24`, `until 2026-12-24T18:00`, `until 18:00`: at least one of the two.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Until {
    /// Year, month, day; `None`: the next time the clock shows `time`.
    pub date: Option<(i16, i8, i8)>,
    /// Hour and minute; `None`: the start of `date`.
    pub time: Option<(i8, i8)>,
}

impl fmt::Display for Until {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.date, self.time) {
            (Some((y, m, d)), Some((h, mi))) => write!(f, "{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}"),
            (Some((y, m, d)), None) => write!(f, "{y:04}-{m:02}-{d:02}"),
            (None, Some((h, mi))) => write!(f, "{h:02}:{mi:02}"),
            (None, None) => Ok(()),
        }
    }
}

impl fmt::Display for FreezeEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FreezeEnd::For(d) => write!(f, "for {}", format_span(*d)),
            FreezeEnd::Until(u) => write!(f, "until {u}"),
        }
    }
}

/// Reads `3d`, `12h`, `1d12h`, `90m`, `2s`: more than zero, at most [`MAX_FREEZE`].
pub fn parse_freeze_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("`{s}` is not a duration: write it like `3d`, `12h`, `1d12h` or `30m`");
    if s.len() > 20 {
        return Err(bad());
    }
    let units = [('d', 86_400), ('h', 3600), ('m', 60), ('s', 1)];
    let d = crate::duration::parse_span(s, &units, bad, "d", "h")?;
    if d > MAX_FREEZE {
        return Err(format!("`{s}` is longer than the 90d limit of a freeze"));
    }
    Ok(d)
}

/// A duration as [`parse_freeze_duration`] reads it back: `3d`, `1d12h`, `2s`.
pub fn format_span(d: Duration) -> String {
    let s = d.as_secs();
    let parts = [
        (s / 86_400, 'd'),
        ((s % 86_400) / 3600, 'h'),
        ((s % 3600) / 60, 'm'),
        (s % 60, 's'),
    ];
    let mut out = String::new();
    for (n, unit) in parts {
        if n > 0 {
            out.push_str(&format!("{n}{unit}"));
        }
    }
    if out.is_empty() {
        out.push_str("0s");
    }
    out
}

fn days_in(year: i16, month: i8) -> i8 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        _ => 31,
    }
}

fn number<T: std::str::FromStr>(s: &str, len: usize) -> Option<T> {
    (s.len() == len && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

fn parse_clock(s: &str) -> Option<(i8, i8)> {
    let (h, m) = s.split_once(':')?;
    let h: i8 = number(h, 2).or_else(|| number(h, 1))?;
    let m: i8 = number(m, 2)?;
    ((0..=23).contains(&h) && (0..=59).contains(&m)).then_some((h, m))
}

fn parse_date(s: &str) -> Result<(i16, i8, i8), String> {
    let bad = || format!("`{s}` is not a date: write it like `2026-12-24`");
    let mut parts = s.split('-');
    let (Some(y), Some(m), Some(d), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    let (y, m, d): (i16, i8, i8) = (
        number(y, 4).ok_or_else(bad)?,
        number(m, 2).ok_or_else(bad)?,
        number(d, 2).ok_or_else(bad)?,
    );
    if !(1..=12).contains(&m) {
        return Err(format!("`{s}` has no month {m}"));
    }
    if !(1..=days_in(y, m)).contains(&d) {
        return Err(format!(
            "`{s}` is not a date: that month has {} days",
            days_in(y, m)
        ));
    }
    Ok((y, m, d))
}

/// Reads `2026-12-24`, `2026-12-24T18:00` (or `2026-12-24@18:00`) and `18:00`.
pub fn parse_until(s: &str) -> Result<Until, String> {
    let usage = "write it like `2026-12-24`, `2026-12-24T18:00` or `18:00`";
    if s.len() > 20 {
        return Err(format!("that is not a date or time: {usage}"));
    }
    if let Some((date, time)) = s.split_once(['T', 't', '@']) {
        let date = parse_date(date)?;
        let time =
            parse_clock(time).ok_or_else(|| format!("`{time}` is not a time of day: {usage}"))?;
        return Ok(Until {
            date: Some(date),
            time: Some(time),
        });
    }
    if s.contains(':') {
        let time = parse_clock(s).ok_or_else(|| format!("`{s}` is not a time of day: {usage}"))?;
        return Ok(Until {
            date: None,
            time: Some(time),
        });
    }
    Ok(Until {
        date: Some(parse_date(s).map_err(|e| format!("{e}; {usage}"))?),
        time: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_with_days_and_their_round_trip() {
        for (text, secs) in [
            ("3d", 259_200),
            ("1d12h", 129_600),
            ("2s", 2),
            ("90m", 5400),
        ] {
            let d = parse_freeze_duration(text).unwrap();
            assert_eq!(d, Duration::from_secs(secs));
            assert_eq!(parse_freeze_duration(&format_span(d)), Ok(d));
        }
        for bad in [
            "",
            "3",
            "0d",
            "91d",
            "3w",
            "-1d",
            "99999999999999999999d",
            "1d 2h",
            "$(id)",
        ] {
            assert!(parse_freeze_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn dates_and_times() {
        assert_eq!(
            parse_until("2026-12-24").unwrap(),
            Until {
                date: Some((2026, 12, 24)),
                time: None
            }
        );
        assert_eq!(
            parse_until("2026-12-24T18:30").unwrap().to_string(),
            "2026-12-24T18:30"
        );
        assert_eq!(parse_until("9:05").unwrap().to_string(), "09:05");
        assert_eq!(parse_until("2028-02-29").unwrap().date, Some((2028, 2, 29)));
        for (bad, says) in [
            ("2026-02-29", "that month has 28 days"),
            ("2026-13-01", "no month 13"),
            ("24:00", "not a time of day"),
            ("2026-12-24T25:00", "not a time of day"),
            ("26-12-24", "not a date"),
            ("2026-12-24;rm", "not a date"),
            ("tomorrow", "not a date"),
        ] {
            let e = parse_until(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
