//! A cron expression in an IANA time zone ([`CronSpec`]), parsed once at the edge, and the
//! instants it fires at. croner does the calendar arithmetic (5 fields, or 6 with seconds
//! first; `L`, `#`, `W`), chrono-tz the zone rules.
//!
//! Daylight saving: a local time that a spring-forward change skips fires at the first valid
//! time after it (croner's rule: a 02:30 job runs at 03:00 on that day). A local time that a
//! fall-back change repeats fires once: an occurrence counts only if its local wall-clock time
//! is later than the last one fired (and than the time it is computed from), so the second
//! 01:30 of the night is not a new 01:30.

use chrono::{DateTime, NaiveDateTime, TimeZone};
use chrono_tz::Tz;

/// How many occurrences one computation may step over (the repeated hour of a fall-back night,
/// or the slots missed during downtime) before it gives up stepping.
const MAX_STEPS: usize = 100_000;

#[derive(Debug, Clone)]
pub struct CronSpec {
    cron: croner::Cron,
    zone: Tz,
    expression: String,
}

impl CronSpec {
    /// Checks the expression and the zone; the errors name the field and say what is wrong.
    pub fn parse(expression: &str, time_zone: &str) -> Result<CronSpec, String> {
        let expression = expression.split_whitespace().collect::<Vec<_>>().join(" ");
        let fields = expression.split(' ').filter(|f| !f.is_empty()).count();
        if !(5..=6).contains(&fields) {
            return Err(format!(
                "cron: {expression:?} has {fields} fields; expected 5 (minute hour day month weekday) or 6 (seconds first)"
            ));
        }
        let cron = croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Optional)
            .year(croner::parser::Year::Disallowed)
            .build()
            .parse(&expression)
            .map_err(|e| format!("cron: {expression:?} is not a valid expression: {e}"))?;
        let zone = crate::teams::parse_time_zone(time_zone)?;
        Ok(CronSpec {
            cron,
            zone,
            expression,
        })
    }

    pub fn expression(&self) -> &str {
        &self.expression
    }

    pub fn zone(&self) -> Tz {
        self.zone
    }

    fn local(&self, ms: i64) -> Option<DateTime<Tz>> {
        self.zone.timestamp_millis_opt(ms).single()
    }

    fn wall(&self, ms: i64) -> Option<NaiveDateTime> {
        self.local(ms).map(|t| t.naive_local())
    }

    /// The first instant after `after_ms` at which the job fires, given that it last fired at
    /// `last_due_ms` (if known): later in real time than `after_ms`, and later in local
    /// wall-clock time than both. `None` when the expression never fires again.
    pub fn next_after(&self, after_ms: i64, last_due_ms: Option<i64>) -> Option<i64> {
        let mut threshold = self.wall(after_ms)?;
        if let Some(last) = last_due_ms.and_then(|ms| self.wall(ms)) {
            threshold = threshold.max(last);
        }
        let mut cursor = self.local(after_ms)?;
        for _ in 0..MAX_STEPS {
            let next = self.cron.find_next_occurrence(&cursor, false).ok()?;
            if next.timestamp_millis() <= cursor.timestamp_millis() {
                // Never go backwards, whatever the zone arithmetic did.
                cursor = self.local(cursor.timestamp_millis() + 1_000)?;
                continue;
            }
            // A wall-clock time that occurs twice is due at its first occurrence.
            let next = match self
                .zone
                .from_local_datetime(&next.naive_local())
                .earliest()
            {
                Some(first) if first > cursor && first < next => first,
                _ => next,
            };
            if next.naive_local() > threshold {
                return Some(next.timestamp_millis());
            }
            cursor = next;
        }
        None
    }

    /// The next `count` instants after `after_ms`, as [`next_after`](Self::next_after) fires
    /// them one after another.
    pub fn upcoming(&self, after_ms: i64, count: usize) -> Vec<i64> {
        let mut out = Vec::with_capacity(count);
        let mut cursor = after_ms;
        let mut last = None;
        while out.len() < count {
            let Some(next) = self.next_after(cursor, last) else {
                break;
            };
            out.push(next);
            cursor = next;
            last = Some(next);
        }
        out
    }

    /// The latest due time not after `now_ms`, starting from the first one not yet handled
    /// (`first_due_ms` ≤ `now_ms`): after downtime the missed slots collapse into this one.
    pub fn latest_due(&self, first_due_ms: i64, now_ms: i64) -> i64 {
        let mut due = first_due_ms;
        for _ in 0..MAX_STEPS {
            match self.next_after(due, Some(due)) {
                Some(next) if next <= now_ms => due = next,
                _ => return due,
            }
        }
        // Too many missed slots to step through (a job every second, down for days): ask the
        // calendar for the last one directly.
        self.local(now_ms)
            .and_then(|now| self.cron.find_previous_occurrence(&now, true).ok())
            .map(|t| t.timestamp_millis())
            .filter(|&t| t >= due)
            .unwrap_or(due)
    }

    /// An instant as RFC 3339 with this zone's offset at that instant.
    pub fn rfc3339(&self, ms: i64) -> String {
        match self.local(ms) {
            Some(t) => t.to_rfc3339_opts(chrono::SecondsFormat::Secs, false),
            None => crate::ids::rfc3339(ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(rfc3339: &str) -> i64 {
        DateTime::parse_from_rfc3339(rfc3339)
            .expect("instant")
            .timestamp_millis()
    }

    fn upcoming(cron: &str, zone: &str, from: &str, n: usize) -> Vec<String> {
        let spec = CronSpec::parse(cron, zone).expect("valid");
        spec.upcoming(ms(from), n)
            .into_iter()
            .map(|t| spec.rfc3339(t))
            .collect()
    }

    #[test]
    fn spring_forward_fires_once_at_the_first_valid_time() {
        assert_eq!(
            upcoming(
                "30 2 * * *",
                "America/New_York",
                "2026-03-07T12:00:00-05:00",
                3
            ),
            [
                "2026-03-08T03:00:00-04:00",
                "2026-03-09T02:30:00-04:00",
                "2026-03-10T02:30:00-04:00"
            ]
        );
    }

    #[test]
    fn fall_back_fires_once_at_the_repeated_time() {
        assert_eq!(
            upcoming(
                "30 1 * * *",
                "America/New_York",
                "2026-10-31T12:00:00-04:00",
                3
            ),
            [
                "2026-11-01T01:30:00-04:00",
                "2026-11-02T01:30:00-05:00",
                "2026-11-03T01:30:00-05:00"
            ]
        );
    }

    #[test]
    fn seoul_has_no_daylight_saving() {
        assert_eq!(
            upcoming("0 9 * * MON", "Asia/Seoul", "2026-03-07T00:00:00+09:00", 2),
            ["2026-03-09T09:00:00+09:00", "2026-03-16T09:00:00+09:00"]
        );
    }

    #[test]
    fn six_fields_have_seconds_first_and_bad_input_is_refused() {
        assert_eq!(
            upcoming("*/20 * * * * *", "UTC", "2026-01-01T00:00:00Z", 3),
            [
                "2026-01-01T00:00:20+00:00",
                "2026-01-01T00:00:40+00:00",
                "2026-01-01T00:01:00+00:00"
            ]
        );
        assert!(CronSpec::parse("61 * * * *", "UTC").is_err());
        assert!(CronSpec::parse("* * *", "UTC").is_err());
        assert!(CronSpec::parse("0 9 * * *", "Nowhere/Town").is_err());
    }

    #[test]
    fn missed_slots_collapse_into_the_latest() {
        let spec = CronSpec::parse("0 * * * *", "UTC").expect("valid");
        let first = ms("2026-01-01T01:00:00Z");
        assert_eq!(
            spec.latest_due(first, ms("2026-01-01T03:30:00Z")),
            ms("2026-01-01T03:00:00Z")
        );
        assert_eq!(spec.latest_due(first, first), first);
    }

    #[test]
    fn last_day_and_nth_weekday_are_understood() {
        assert_eq!(
            upcoming("0 12 L * *", "UTC", "2026-02-01T00:00:00Z", 1),
            ["2026-02-28T12:00:00+00:00"]
        );
        assert_eq!(
            upcoming("0 12 * * 5#2", "UTC", "2026-03-01T00:00:00Z", 1),
            ["2026-03-13T12:00:00+00:00"]
        );
    }
}
