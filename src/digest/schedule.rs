//! When a held notification is due: a subscription's delivery mode (instant, hourly, daily at
//! HH:MM), a contact's quiet hours and zone, and the instant a digest goes out — parsed once at
//! the edge into types whose only constructors validate.
//!
//! Calendar arithmetic is done in the contact's IANA zone (chrono-tz), so "daily at 08:30" is
//! 08:30 on the contact's wall clock whatever the season; a local time that does not exist on
//! a spring-forward day is taken at the first valid instant after it, and one that occurs
//! twice on a fall-back day at its first occurrence.

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveTime, TimeZone, Timelike, Weekday};
use chrono_tz::Tz;

/// The zone of a contact that never chose one (SPEC §E).
pub const DEFAULT_TIME_ZONE: &str = "Asia/Seoul";

/// A minute of the day, 00:00 to 23:59, written `HH:MM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MinuteOfDay(u16);

impl MinuteOfDay {
    pub fn parse(raw: &str) -> Result<MinuteOfDay, String> {
        let bad = || format!("{raw:?} is not a time of day as HH:MM (00:00 to 23:59)");
        let (hours, minutes) = raw.trim().split_once(':').ok_or_else(bad)?;
        if hours.len() != 2 || minutes.len() != 2 {
            return Err(bad());
        }
        let hours: u16 = hours.parse().map_err(|_| bad())?;
        let minutes: u16 = minutes.parse().map_err(|_| bad())?;
        if hours > 23 || minutes > 59 {
            return Err(bad());
        }
        Ok(MinuteOfDay(hours * 60 + minutes))
    }

    fn time(self) -> NaiveTime {
        NaiveTime::from_hms_opt(u32::from(self.0 / 60), u32::from(self.0 % 60), 0)
            .unwrap_or(NaiveTime::MIN)
    }
}

impl std::fmt::Display for MinuteOfDay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:02}:{:02}", self.0 / 60, self.0 % 60)
    }
}

/// How a subscription's notifications are sent: each at once, or collected into a digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestMode {
    Instant,
    /// At the top of every hour (of the contact's zone).
    Hourly,
    /// Once a day at this time of the contact's zone.
    Daily(MinuteOfDay),
}

impl DigestMode {
    /// `instant`, `hourly` or `daily@HH:MM`.
    pub fn parse(raw: &str) -> Result<DigestMode, String> {
        match raw.trim() {
            "instant" => Ok(DigestMode::Instant),
            "hourly" => Ok(DigestMode::Hourly),
            other => match other.strip_prefix("daily@") {
                Some(at) => Ok(DigestMode::Daily(MinuteOfDay::parse(at)?)),
                None => Err(format!(
                    "{raw:?} is not a digest mode: \"instant\", \"hourly\" or \"daily@HH:MM\""
                )),
            },
        }
    }

    /// The next time this mode sends a digest, strictly after `now`.
    fn next_after(self, zone: Tz, now: DateTime<Tz>) -> DateTime<Tz> {
        match self {
            DigestMode::Instant => now,
            DigestMode::Hourly => {
                let into_hour = Duration::minutes(i64::from(now.minute()))
                    + Duration::seconds(i64::from(now.second()))
                    + Duration::nanoseconds(i64::from(now.nanosecond()));
                now - into_hour + Duration::hours(1)
            }
            DigestMode::Daily(at) => next_local_time(zone, now, at),
        }
    }
}

impl std::fmt::Display for DigestMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DigestMode::Instant => f.write_str("instant"),
            DigestMode::Hourly => f.write_str("hourly"),
            DigestMode::Daily(at) => write!(f, "daily@{at}"),
        }
    }
}

/// A window of the day during which notifications wait, `HH:MM-HH:MM`; it may wrap past
/// midnight (`22:00-08:00`). The start is inside, the end is not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuietHours {
    start: MinuteOfDay,
    end: MinuteOfDay,
}

impl QuietHours {
    pub fn parse(raw: &str) -> Result<QuietHours, String> {
        let (start, end) = raw
            .trim()
            .split_once('-')
            .ok_or_else(|| format!("{raw:?} is not a window as HH:MM-HH:MM"))?;
        let (start, end) = (MinuteOfDay::parse(start)?, MinuteOfDay::parse(end)?);
        if start == end {
            return Err(format!(
                "{raw:?} is an empty window: start and end are equal"
            ));
        }
        Ok(QuietHours { start, end })
    }

    fn contains(self, minute: u16) -> bool {
        if self.start.0 < self.end.0 {
            self.start.0 <= minute && minute < self.end.0
        } else {
            minute >= self.start.0 || minute < self.end.0
        }
    }
}

impl std::fmt::Display for QuietHours {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.start, self.end)
    }
}

/// An IANA time zone name that the zone database knows.
pub fn parse_time_zone(raw: &str) -> Result<Tz, String> {
    raw.trim()
        .parse::<Tz>()
        .map_err(|_| format!("{raw:?} is not an IANA time zone (e.g. \"Asia/Seoul\")"))
}

/// What decides whether a subscriber's notification is sent now or held, and until when: its
/// subscription's mode and urgency, its contact's zone and quiet time. Only subscribers that
/// may be held have one (an instant subscription of a contact without quiet time has none,
/// which the push path checks first).
#[derive(Debug, Clone, PartialEq)]
pub struct HoldRule {
    pub mode: DigestMode,
    /// Passes quiet hours (a digest still goes out at its own time).
    pub urgent: bool,
    pub zone: Tz,
    pub quiet_hours: Option<QuietHours>,
    pub quiet_weekends: bool,
}

impl HoldRule {
    /// The rule for a stored subscription and contact, or `None` when nothing is ever held.
    /// Stored values were validated on the way in; one that no longer parses (a zone removed
    /// from the database) counts as the default and is logged.
    pub fn from_stored(
        digest: &str,
        urgent: bool,
        time_zone: &str,
        quiet_hours: Option<&str>,
        quiet_weekends: bool,
    ) -> Option<HoldRule> {
        let mode = DigestMode::parse(digest).unwrap_or_else(|error| {
            tracing::warn!(%error, "a stored digest mode does not parse; sending at once");
            DigestMode::Instant
        });
        let quiet_hours = quiet_hours.and_then(|raw| {
            QuietHours::parse(raw)
                .inspect_err(|error| tracing::warn!(%error, "stored quiet hours do not parse"))
                .ok()
        });
        let quiet = (quiet_hours.is_some() || quiet_weekends) && !urgent;
        if mode == DigestMode::Instant && !quiet {
            return None;
        }
        let zone = parse_time_zone(time_zone).unwrap_or_else(|error| {
            tracing::warn!(%error, "a stored time zone does not parse; using {DEFAULT_TIME_ZONE}");
            chrono_tz::Asia::Seoul
        });
        Some(HoldRule {
            mode,
            urgent,
            zone,
            quiet_hours,
            quiet_weekends,
        })
    }

    /// When a notification at `now_ms` goes out: `None` at once, else the due time (Unix ms) of
    /// the digest that carries it.
    pub fn due(&self, now_ms: i64) -> Option<i64> {
        let now = self.zone.timestamp_millis_opt(now_ms).single()?;
        let send_at = match self.mode {
            DigestMode::Instant if !self.is_quiet(now) => return None,
            DigestMode::Instant => now,
            mode => mode.next_after(self.zone, now),
        };
        Some(self.window_opens(send_at).timestamp_millis())
    }

    fn is_quiet(&self, at: DateTime<Tz>) -> bool {
        if self.urgent {
            return false;
        }
        let weekend = matches!(at.weekday(), Weekday::Sat | Weekday::Sun);
        (self.quiet_weekends && weekend)
            || self
                .quiet_hours
                .is_some_and(|q| q.contains((at.hour() * 60 + at.minute()) as u16))
    }

    /// The first instant at or after `at` outside quiet time: the end of the quiet hours, or
    /// the Monday after a quiet weekend (then past that morning's quiet hours too).
    fn window_opens(&self, mut at: DateTime<Tz>) -> DateTime<Tz> {
        // Each round moves to the next place quiet time can end; a weekend with a nightly
        // window takes three (Saturday 00:00 → Monday 00:00 → Monday's end of the window).
        for _ in 0..8 {
            if !self.is_quiet(at) {
                return at;
            }
            let mut candidates = Vec::with_capacity(2);
            if let Some(quiet) = self.quiet_hours {
                candidates.push(next_local_time(self.zone, at, quiet.end));
            }
            if self.quiet_weekends {
                candidates.push(next_local_time(self.zone, at, MinuteOfDay(0)));
            }
            // Every candidate is strictly later than `at`, so each round moves forward.
            at = candidates.into_iter().min().unwrap_or(at);
        }
        at
    }
}

/// The first instant strictly after `now` at which the zone's wall clock reads `at`; a day on
/// which that time does not exist (spring forward) gives the first valid instant after it.
fn next_local_time(zone: Tz, now: DateTime<Tz>, at: MinuteOfDay) -> DateTime<Tz> {
    let mut date: NaiveDate = now.date_naive();
    for _ in 0..3 {
        let candidate = local_instant(zone, date, at.time());
        if candidate > now {
            return candidate;
        }
        date = date.succ_opt().unwrap_or(date);
    }
    now + Duration::days(1)
}

/// The instant of a wall-clock time on a date in a zone: the first of two on a fall-back day,
/// and the first valid instant after the gap on a spring-forward day.
fn local_instant(zone: Tz, date: NaiveDate, time: NaiveTime) -> DateTime<Tz> {
    let naive = date.and_time(time);
    if let Some(instant) = zone.from_local_datetime(&naive).earliest() {
        return instant;
    }
    // Inside a gap: the first minute after it that exists (gaps are at most a few hours).
    let mut probe = naive;
    for _ in 0..(24 * 60) {
        probe += Duration::minutes(1);
        if let Some(instant) = zone.from_local_datetime(&probe).earliest() {
            return instant;
        }
    }
    zone.from_utc_datetime(&naive)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(rfc3339: &str) -> i64 {
        DateTime::parse_from_rfc3339(rfc3339)
            .expect("test instant")
            .timestamp_millis()
    }

    fn rule(mode: &str, quiet: Option<&str>, weekends: bool, urgent: bool) -> Option<HoldRule> {
        HoldRule::from_stored(mode, urgent, "Asia/Seoul", quiet, weekends)
    }

    #[test]
    fn modes_and_windows_parse_strictly() {
        assert_eq!(DigestMode::parse("hourly"), Ok(DigestMode::Hourly));
        assert_eq!(
            DigestMode::parse("daily@08:30").map(|m| m.to_string()),
            Ok("daily@08:30".into())
        );
        for bad in [
            "daily",
            "daily@8:30",
            "daily@24:00",
            "daily@08:60",
            "weekly",
            "",
        ] {
            assert!(DigestMode::parse(bad).is_err(), "{bad:?} must be refused");
        }
        assert_eq!(
            QuietHours::parse("22:00-08:00").map(|q| q.to_string()),
            Ok("22:00-08:00".into())
        );
        for bad in ["22:00", "22:00-22:00", "22-08", "22:00-8:00", "aa:bb-cc:dd"] {
            assert!(QuietHours::parse(bad).is_err(), "{bad:?} must be refused");
        }
        assert!(parse_time_zone("America/New_York").is_ok());
        assert!(parse_time_zone("Mars/Olympus").is_err());
    }

    #[test]
    fn an_instant_subscription_without_quiet_time_has_no_rule() {
        assert_eq!(rule("instant", None, false, false), None);
        assert_eq!(rule("instant", Some("22:00-08:00"), false, true), None);
        assert!(rule("hourly", None, false, false).is_some());
    }

    #[test]
    fn hourly_and_daily_digests_fall_at_their_local_times() {
        let hourly = rule("hourly", None, false, false).expect("a rule");
        assert_eq!(
            hourly.due(ms("2026-12-07T10:05:00+09:00")),
            Some(ms("2026-12-07T11:00:00+09:00"))
        );
        assert_eq!(
            hourly.due(ms("2026-12-07T11:00:00+09:00")),
            Some(ms("2026-12-07T12:00:00+09:00"))
        );
        let daily = rule("daily@08:30", None, false, false).expect("a rule");
        assert_eq!(
            daily.due(ms("2026-12-07T08:29:00+09:00")),
            Some(ms("2026-12-07T08:30:00+09:00"))
        );
        assert_eq!(
            daily.due(ms("2026-12-07T08:30:00+09:00")),
            Some(ms("2026-12-08T08:30:00+09:00"))
        );
    }

    #[test]
    fn quiet_hours_hold_until_the_window_opens_and_urgent_passes() {
        let quiet = rule("instant", Some("22:00-08:00"), false, false).expect("a rule");
        assert_eq!(quiet.due(ms("2026-12-07T21:59:00+09:00")), None);
        assert_eq!(
            quiet.due(ms("2026-12-07T23:00:00+09:00")),
            Some(ms("2026-12-08T08:00:00+09:00"))
        );
        assert_eq!(
            quiet.due(ms("2026-12-08T07:59:00+09:00")),
            Some(ms("2026-12-08T08:00:00+09:00"))
        );
        assert_eq!(quiet.due(ms("2026-12-08T08:00:00+09:00")), None);
        // An hourly digest that falls inside the window waits for it to open.
        let hourly = rule("hourly", Some("22:00-08:00"), false, false).expect("a rule");
        assert_eq!(
            hourly.due(ms("2026-12-07T21:30:00+09:00")),
            Some(ms("2026-12-08T08:00:00+09:00"))
        );
        let urgent = rule("hourly", Some("22:00-08:00"), false, true).expect("a rule");
        assert_eq!(
            urgent.due(ms("2026-12-07T21:30:00+09:00")),
            Some(ms("2026-12-07T22:00:00+09:00"))
        );
    }

    #[test]
    fn a_quiet_weekend_opens_on_monday_after_its_morning_window() {
        // 2026-12-12 is a Saturday.
        let rule = rule("instant", Some("22:00-08:00"), true, false).expect("a rule");
        assert_eq!(
            rule.due(ms("2026-12-12T12:00:00+09:00")),
            Some(ms("2026-12-14T08:00:00+09:00"))
        );
        assert_eq!(rule.due(ms("2026-12-11T12:00:00+09:00")), None);
    }

    #[test]
    fn daily_digests_follow_daylight_saving_time() {
        let new_york = HoldRule::from_stored("daily@02:30", false, "America/New_York", None, false)
            .expect("a rule");
        // 2026-03-08: 02:30 does not exist in New York; the digest goes at 03:00 EDT.
        assert_eq!(
            new_york.due(ms("2026-03-08T01:00:00-05:00")),
            Some(ms("2026-03-08T03:00:00-04:00"))
        );
        // 2026-11-01: 01:30 happens twice; a daily@01:30 digest goes at the first.
        let fall = HoldRule::from_stored("daily@01:30", false, "America/New_York", None, false)
            .expect("a rule");
        assert_eq!(
            fall.due(ms("2026-11-01T00:00:00-04:00")),
            Some(ms("2026-11-01T01:30:00-04:00"))
        );
    }
}
