//! Deploy windows (app.json `windows`): when an environment may be deployed, in its
//! own timezone, and times said in that timezone.
//!
//! A window is written `Mon-Thu 09:00-17:00`: days (a day, a range such as `Fri-Mon`,
//! or several joined by commas; none means every day) and a span of wall-clock time
//! that ends after it starts, `24:00` (or `00:00`) being the end of the day. Wall-clock
//! time is what people mean by "we deploy between nine and five", so the checks are
//! made on the local date and time of the instant, through the timezone database:
//! a window in an hour that a DST change skips is closed for the skipped part, an
//! hour that a DST change repeats is open both times.
//!
//! The timezone database is the system's (`/usr/share/zoneinfo`, Debian's `tzdata`),
//! read by jiff (ARCHITECTURE.md, "Deploy windows and freezes", says why).

use std::fmt;

use chrono::{DateTime, Utc};
use jiff::civil::{Date, DateTime as CivilDateTime};
use jiff::tz::{AmbiguousOffset, TimeZone};
use jiff::{Timestamp, Zoned};

/// The most windows one environment may list.
pub const MAX_WINDOWS: usize = 50;

/// The longest window text read.
const MAX_WINDOW_CHARS: usize = 100;

/// The longest timezone name read (the longest IANA name is about 30 characters).
const MAX_TIMEZONE_CHARS: usize = 64;

const DAYS: [(&str, &str); 7] = [
    ("mon", "monday"),
    ("tue", "tuesday"),
    ("wed", "wednesday"),
    ("thu", "thursday"),
    ("fri", "friday"),
    ("sat", "saturday"),
    ("sun", "sunday"),
];

/// One window: on `days` (Monday first), from `start` to `end` minutes after local
/// midnight (`end` up to 1440, the end of the day).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// Which days of the week, Monday first.
    pub days: [bool; 7],
    /// Minutes after midnight when it opens.
    pub start: u16,
    /// Minutes after midnight when it closes (after `start`; 1440 is midnight at the end
    /// of the day).
    pub end: u16,
    /// As written in app.json, for replies.
    pub text: String,
}

impl Window {
    /// Reads `Mon-Thu 09:00-17:00`, `Sat,Sun 10:00-12:00` or `09:00-17:00` (every day).
    /// The error completes "window `...`: ".
    pub fn parse(text: &str) -> Result<Window, String> {
        let chars = text.chars().count();
        if chars > MAX_WINDOW_CHARS {
            return Err(format!(
                "it is {chars} characters long; the limit is {MAX_WINDOW_CHARS}"
            ));
        }
        let words: Vec<&str> = text.split_whitespace().collect();
        let (days, span) = match words.as_slice() {
            [span] => ([true; 7], *span),
            [days, span] => (parse_days(days)?, *span),
            [] => return Err("it is empty: write it like `Mon-Fri 09:00-17:00`".into()),
            _ => {
                return Err(
                    "write it as days and times, like `Mon-Thu 09:00-17:00` or `Sat,Sun 10:00-12:00`"
                        .into(),
                );
            }
        };
        let Some((from, to)) = span.split_once('-') else {
            return Err(format!(
                "`{span}` is not a span of time: write it like `09:00-17:00`"
            ));
        };
        let start = parse_clock(from, false)?;
        let mut end = parse_clock(to, true)?;
        if end == 0 {
            // `22:00-00:00`: until midnight.
            end = 1440;
        }
        if end <= start {
            return Err(format!(
                "it ends at {to}, which is not after it starts at {from}; a window cannot run past midnight: split it in two, like `Fri 22:00-24:00` and `Sat 00:00-02:00`"
            ));
        }
        Ok(Window {
            days,
            start,
            end,
            text: text.split_whitespace().collect::<Vec<_>>().join(" "),
        })
    }

    /// Whether local wall-clock `weekday` (Monday = 0) and `second` of the day fall in it.
    fn contains(&self, weekday: usize, second: u32) -> bool {
        self.days[weekday]
            && u32::from(self.start) * 60 <= second
            && second < u32::from(self.end) * 60
    }
}

fn parse_day(s: &str) -> Result<usize, String> {
    let lower = s.to_ascii_lowercase();
    DAYS.iter()
        .position(|(short, long)| *short == lower || *long == lower)
        .ok_or_else(|| {
            const NAMES: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
            let hint = chima_command::closest(&lower, NAMES)
                .map(|d| format!(" (did you mean `{d}`?)"))
                .unwrap_or_default();
            format!(
                "`{}` is not a day{hint}: days are Mon, Tue, Wed, Thu, Fri, Sat and Sun",
                s.chars().take(20).collect::<String>()
            )
        })
}

/// `Mon-Thu`, `Fri-Mon` (through the weekend), `Sat,Sun`, `Mon,Wed-Fri`.
fn parse_days(s: &str) -> Result<[bool; 7], String> {
    let mut days = [false; 7];
    for part in s.split(',') {
        if part.is_empty() {
            return Err(format!("`{s}` has an empty day between commas"));
        }
        match part.split_once('-') {
            None => days[parse_day(part)?] = true,
            Some((a, b)) => {
                let (a, b) = (parse_day(a)?, parse_day(b)?);
                let mut d = a;
                loop {
                    days[d] = true;
                    if d == b {
                        break;
                    }
                    d = (d + 1) % 7;
                }
            }
        }
    }
    Ok(days)
}

/// `HH:MM`, 00:00 to 23:59; `24:00` too when `end`.
fn parse_clock(s: &str, end: bool) -> Result<u16, String> {
    let bad = || {
        format!(
            "`{}` is not a time: write it as `HH:MM`, from 00:00 to 24:00",
            s.chars().take(20).collect::<String>()
        )
    };
    let (h, m) = s.split_once(':').ok_or_else(bad)?;
    if h.is_empty() || h.len() > 2 || m.len() != 2 {
        return Err(bad());
    }
    if !h.bytes().chain(m.bytes()).all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let (h, m): (u16, u16) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if m > 59 {
        return Err(format!("`{s}` has {m} minutes; an hour has 60"));
    }
    match (h, m) {
        (24, 0) if end => Ok(1440),
        (24, 0) => Err(format!(
            "`{s}` is the end of the day; a window cannot open then"
        )),
        (0..=23, _) => Ok(h * 60 + m),
        _ => Err(format!(
            "`{s}` is not a time of day: hours go from 00 to 23 (24:00 ends a window at midnight)"
        )),
    }
}

/// The deploy windows of one environment.
#[derive(Debug, Clone)]
pub struct DeployWindows {
    /// When deploys may start.
    pub allow: Vec<Window>,
    /// The timezone the windows are in.
    pub timezone: Zone,
}

/// A timezone, with the name app.json gave it.
#[derive(Clone)]
pub struct Zone {
    name: String,
    tz: TimeZone,
}

impl fmt::Debug for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Zone({})", self.name)
    }
}

impl PartialEq for Zone {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Zone {
    /// UTC, for environments without windows.
    pub fn utc() -> Zone {
        Zone {
            name: "UTC".to_string(),
            tz: TimeZone::UTC,
        }
    }

    /// Looks `name` up in the system's timezone database (`Asia/Hong_Kong`, `UTC`).
    pub fn get(name: &str) -> Result<Zone, String> {
        let shown: String = name.chars().take(MAX_TIMEZONE_CHARS).collect();
        let plausible = !name.is_empty()
            && name.len() <= MAX_TIMEZONE_CHARS
            && !name.starts_with(['/', '.', '-'])
            && !name.contains("..")
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'-' | b'+'));
        if !plausible {
            return Err(format!(
                "`{shown}` is not a timezone name: use an IANA name such as `Europe/London` or `Asia/Hong_Kong`"
            ));
        }
        match TimeZone::get(name) {
            Ok(tz) => Ok(Zone {
                name: name.to_string(),
                tz,
            }),
            Err(_) => Err(format!(
                "unknown timezone `{shown}`: use an IANA name such as `Europe/London` or `Asia/Hong_Kong` (the system's timezone database, Debian's tzdata, must have it)"
            )),
        }
    }

    /// The name as app.json gave it.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn zoned(&self, t: Timestamp) -> Zoned {
        t.to_zoned(self.tz.clone())
    }

    /// `t` as people read it here: `Monday 09:00 HKT`, or `today 14:00 HKT` /
    /// `tomorrow 09:00 HKT` seen from `now`, with the date when it is a week or more away.
    pub fn say(&self, t: DateTime<Utc>, now: DateTime<Utc>) -> String {
        let (t, now) = (self.zoned(to_jiff(t)), self.zoned(to_jiff(now)));
        let clock = t.strftime("%H:%M %Z").to_string();
        let days = (t.date() - now.date()).get_days();
        match days {
            0 => format!("today {clock}"),
            1 => format!("tomorrow {clock}"),
            2..=6 => format!("{} {clock}", t.strftime("%A")),
            _ => format!("{} {clock}", t.strftime("%A %Y-%m-%d")),
        }
    }

    /// The instant of local wall-clock `date` at `hour:minute` here. A time a DST change
    /// skips is the instant the clocks jump (the first instant at or after it); one it
    /// repeats is the first of the two.
    pub fn at(&self, date: (i16, i8, i8), hour: i8, minute: i8) -> Result<DateTime<Utc>, String> {
        let d = Date::new(date.0, date.1, date.2)
            .map_err(|_| format!("{}-{:02}-{:02} is not a date", date.0, date.1, date.2))?;
        if !(0..=23).contains(&hour) || !(0..=59).contains(&minute) {
            return Err(format!("{hour:02}:{minute:02} is not a time of day"));
        }
        let dt = d.at(hour, minute, 0, 0);
        let t = self
            .first_instant(dt)
            .ok_or_else(|| format!("{dt} cannot be placed in {}", self.name))?;
        Ok(from_jiff(t))
    }

    /// The local date of `t` here, as (year, month, day).
    pub fn date_of(&self, t: DateTime<Utc>) -> (i16, i8, i8) {
        let d = self.zoned(to_jiff(t)).date();
        (d.year(), d.month(), d.day())
    }

    /// The instants at which local `dt` begins: one, two in a repeated hour, and for a
    /// skipped time the instant of the jump.
    fn instants(&self, dt: CivilDateTime) -> Vec<Timestamp> {
        let amb = self.tz.to_ambiguous_zoned(dt);
        match amb.offset() {
            AmbiguousOffset::Unambiguous { .. } => amb
                .compatible()
                .ok()
                .map(|z| z.timestamp())
                .into_iter()
                .collect(),
            AmbiguousOffset::Fold { .. } => {
                let amb2 = self.tz.to_ambiguous_zoned(dt);
                [amb.earlier().ok(), amb2.later().ok()]
                    .into_iter()
                    .flatten()
                    .map(|z| z.timestamp())
                    .collect()
            }
            AmbiguousOffset::Gap { .. } => {
                // The compatible reading lies after the jump; the jump itself is the
                // transition just before it.
                let Ok(after) = amb.compatible() else {
                    return Vec::new();
                };
                let after = after.timestamp();
                let jump = self
                    .tz
                    .preceding(after)
                    .next()
                    .map(|t| t.timestamp())
                    .unwrap_or(after);
                vec![jump]
            }
        }
    }

    fn first_instant(&self, dt: CivilDateTime) -> Option<Timestamp> {
        self.instants(dt).into_iter().min()
    }
}

fn to_jiff(t: DateTime<Utc>) -> Timestamp {
    Timestamp::from_second(t.timestamp()).unwrap_or(Timestamp::UNIX_EPOCH)
}

fn from_jiff(t: Timestamp) -> DateTime<Utc> {
    DateTime::from_timestamp(t.as_second(), 0).unwrap_or_default()
}

impl DeployWindows {
    /// Whether a deploy may start at `now`.
    pub fn is_open(&self, now: DateTime<Utc>) -> bool {
        self.open_at(to_jiff(now))
    }

    fn open_at(&self, t: Timestamp) -> bool {
        let z = self.timezone.zoned(t);
        let weekday = usize::try_from(z.weekday().to_monday_zero_offset()).unwrap_or(0);
        let time = z.time();
        let second = u32::try_from(
            i32::from(time.hour()) * 3600
                + i32::from(time.minute()) * 60
                + i32::from(time.second()),
        )
        .unwrap_or(0);
        self.allow.iter().any(|w| w.contains(weekday, second))
    }

    /// When the environment opens next after `now` (`None` when it is open now, or
    /// when no window opens within eight days, which only windows lying wholly in a
    /// skipped hour could cause).
    pub fn next_opening(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let now = to_jiff(now);
        if self.open_at(now) {
            return None;
        }
        let today = self.timezone.zoned(now).date();
        let mut best: Option<Timestamp> = None;
        let mut day = today;
        for _ in 0..=8 {
            let weekday = usize::try_from(day.weekday().to_monday_zero_offset()).unwrap_or(0);
            for w in self.allow.iter().filter(|w| w.days[weekday]) {
                let (h, m) = (w.start / 60, w.start % 60);
                let dt = day.at(h as i8, m as i8, 0, 0);
                for t in self.timezone.instants(dt) {
                    if t > now && self.open_at(t) && best.is_none_or(|b| t < b) {
                        best = Some(t);
                    }
                }
            }
            if best.is_some() {
                break;
            }
            match day.tomorrow() {
                Ok(d) => day = d,
                Err(_) => break,
            }
        }
        best.map(from_jiff)
    }

    /// The windows as written, with the timezone: `Mon-Thu 09:00-17:00, Fri 09:00-12:00
    /// (Asia/Hong_Kong)`.
    pub fn describe(&self) -> String {
        let list: Vec<&str> = self.allow.iter().map(|w| w.text.as_str()).collect();
        format!("{} ({})", list.join(", "), self.timezone.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn windows(allow: &[&str], tz: &str) -> DeployWindows {
        DeployWindows {
            allow: allow.iter().map(|w| Window::parse(w).expect(w)).collect(),
            timezone: Zone::get(tz).expect(tz),
        }
    }

    /// `2026-12-07T09:00:00+08:00` as a UTC instant.
    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect(s)
            .with_timezone(&Utc)
    }

    #[test]
    fn windows_parse_and_refuse_with_reasons() {
        let w = Window::parse("Mon-Thu 09:00-17:00").unwrap();
        assert_eq!(w.days, [true, true, true, true, false, false, false]);
        assert_eq!((w.start, w.end), (540, 1020));
        let w = Window::parse("Fri-Mon 22:00-24:00").unwrap();
        assert_eq!(w.days, [true, false, false, false, true, true, true]);
        assert_eq!(w.end, 1440);
        assert_eq!(Window::parse("sat,SUN 10:00-00:00").unwrap().end, 1440);
        assert_eq!(Window::parse("09:00-17:00").unwrap().days, [true; 7]);
        for (bad, says) in [
            ("Mon-Thr 09:00-17:00", "`Thr` is not a day"),
            ("Mon 25:00-26:00", "hours go from 00 to 23"),
            ("Mon 09:00-08:00", "not after it starts"),
            ("Mon 09:00-09:00", "not after it starts"),
            ("Mon 22:00-02:00", "cannot run past midnight"),
            ("Mon 09:60-10:00", "has 60 minutes"),
            ("Mon 9-17", "not a time"),
            ("Mon 24:00-24:00", "cannot open then"),
            ("Mon", "not a span of time"),
            ("Mon Tue 09:00-10:00", "write it as days and times"),
            ("", "it is empty"),
            ("Mon,,Tue 09:00-10:00", "empty day"),
            ("Mon 09:00-17:00; rm -rf /", "write it as days and times"),
            ("Mon $(id):00-17:00", "not a time"),
        ] {
            let e = Window::parse(bad).expect_err(bad);
            assert!(e.contains(says), "{bad}: {e}");
        }
        let long = format!("Mon 09:00-17:00{}", " ".repeat(200));
        assert!(
            Window::parse(&long)
                .unwrap_err()
                .contains("the limit is 100")
        );
    }

    #[test]
    fn timezones_are_looked_up_and_hostile_names_refused() {
        assert!(Zone::get("Asia/Hong_Kong").is_ok());
        assert!(Zone::get("UTC").is_ok());
        for bad in [
            "Mars/Olympus",
            "../../etc/passwd",
            "/etc/localtime",
            "",
            "Asia/Hong Kong",
        ] {
            assert!(Zone::get(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn open_now_and_the_next_opening_in_hong_kong() {
        let w = windows(
            &["Mon-Thu 09:00-17:00", "Fri 09:00-12:00"],
            "Asia/Hong_Kong",
        );
        // Monday 2026-12-07 10:00 HKT: open.
        assert!(w.is_open(at("2026-12-07T10:00:00+08:00")));
        assert_eq!(w.next_opening(at("2026-12-07T10:00:00+08:00")), None);
        // 17:00 is the end: closed; the next opening is Tuesday 09:00.
        let closed = at("2026-12-07T17:00:00+08:00");
        assert!(!w.is_open(closed));
        assert!(w.is_open(at("2026-12-07T16:59:59+08:00")));
        assert_eq!(
            w.next_opening(closed),
            Some(at("2026-12-08T09:00:00+08:00"))
        );
        assert_eq!(
            w.timezone.say(at("2026-12-08T09:00:00+08:00"), closed),
            "tomorrow 09:00 HKT"
        );
        // Friday 12:30 wraps to next Monday.
        let friday = at("2026-12-11T12:30:00+08:00");
        let monday = at("2026-12-14T09:00:00+08:00");
        assert_eq!(w.next_opening(friday), Some(monday));
        assert_eq!(w.timezone.say(monday, friday), "Monday 09:00 HKT");
        // Early Monday: later today.
        let early = at("2026-12-07T07:00:00+08:00");
        assert_eq!(
            w.timezone.say(w.next_opening(early).unwrap(), early),
            "today 09:00 HKT"
        );
        // No window on Saturday: Monday.
        assert_eq!(
            w.next_opening(at("2026-12-12T10:00:00+08:00")),
            Some(monday)
        );
    }

    #[test]
    fn a_window_ending_at_midnight_and_one_day_a_week() {
        let w = windows(&["Wed 22:00-24:00"], "Europe/London");
        assert!(w.is_open(at("2026-12-09T23:59:59+00:00")));
        assert!(!w.is_open(at("2026-12-10T00:00:00+00:00")));
        // Thursday: next Wednesday, a week less a day away.
        let thu = at("2026-12-10T00:00:00+00:00");
        let next = w.next_opening(thu).unwrap();
        assert_eq!(next, at("2026-12-16T22:00:00+00:00"));
        assert_eq!(w.timezone.say(next, thu), "Wednesday 22:00 GMT");
        // Just after it closed on Wednesday: a full week later, said with its date.
        let later = at("2026-12-09T23:59:59+00:00") + chrono::Duration::seconds(1);
        let w2 = windows(&["Wed 21:00-22:00"], "Europe/London");
        let after = at("2026-12-09T22:30:00+00:00");
        assert_eq!(
            w2.next_opening(after),
            Some(at("2026-12-16T21:00:00+00:00"))
        );
        assert_eq!(
            w2.timezone.say(at("2026-12-16T21:00:00+00:00"), after),
            "Wednesday 2026-12-16 21:00 GMT"
        );
        assert!(!w.is_open(later));
    }

    #[test]
    fn dst_spring_forward_skips_part_of_a_window() {
        // New York, 2026-03-08: 02:00 EST jumps to 03:00 EDT.
        let w = windows(&["Sun 02:30-04:00"], "America/New_York");
        // Saturday evening: it opens at the jump, 03:00 EDT (07:00 UTC), the first
        // instant whose wall clock is in the window.
        let sat = at("2026-03-07T20:00:00-05:00");
        let open = w.next_opening(sat).unwrap();
        assert_eq!(open, at("2026-03-08T03:00:00-04:00"));
        assert_eq!(w.timezone.say(open, sat), "tomorrow 03:00 EDT");
        assert!(w.is_open(open));
        assert!(!w.is_open(open - chrono::Duration::seconds(1)));
        // A window lying wholly in the skipped hour does not open that day.
        let gone = windows(&["Sun 02:00-02:59"], "America/New_York");
        assert_eq!(
            gone.next_opening(sat),
            Some(at("2026-03-15T02:00:00-04:00"))
        );
        // Office hours the day after: 09:00 EDT, which is 13:00 UTC, not 14:00.
        let office = windows(&["Mon 09:00-17:00"], "America/New_York");
        assert_eq!(
            office.next_opening(sat),
            Some(at("2026-03-09T13:00:00+00:00"))
        );
    }

    #[test]
    fn dst_fall_back_opens_a_repeated_hour_twice() {
        // New York, 2026-11-01: 02:00 EDT falls back to 01:00 EST.
        let w = windows(&["Sun 01:00-01:30"], "America/New_York");
        let first = at("2026-11-01T01:00:00-04:00");
        let second = at("2026-11-01T01:00:00-05:00");
        assert!(w.is_open(first + chrono::Duration::minutes(10)));
        // Between the two 01:30s: closed, and it opens again at the second 01:00.
        let between = at("2026-11-01T01:45:00-04:00");
        assert!(!w.is_open(between));
        assert_eq!(w.next_opening(between), Some(second));
        assert!(w.is_open(second + chrono::Duration::minutes(29)));
        assert_eq!(w.timezone.say(second, between), "today 01:00 EST");
    }

    #[test]
    fn a_local_time_is_placed_right_across_dst() {
        let z = Zone::get("Europe/London").unwrap();
        assert_eq!(
            z.at((2026, 7, 1), 9, 0).unwrap(),
            at("2026-07-01T08:00:00+00:00")
        );
        assert_eq!(
            z.at((2026, 12, 1), 9, 0).unwrap(),
            at("2026-12-01T09:00:00+00:00")
        );
        // 01:30 on 2026-03-29 does not exist in London: the jump, 02:00 BST.
        assert_eq!(
            z.at((2026, 3, 29), 1, 30).unwrap(),
            at("2026-03-29T01:00:00+00:00")
        );
        assert!(z.at((2026, 2, 30), 9, 0).is_err());
    }
}
