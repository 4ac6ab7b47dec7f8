//! When a timer ticks.
//!
//! - `timer.interval`: every `interval_seconds` (fractions allowed), anchored at the moment
//!   the timer started, so ticks never drift: the next one is computed from the schedule,
//!   never from "now + interval".
//! - `timer.cron`: six fields with seconds (`sec min hour dom mon dow`), in `timezone`
//!   (IANA, default UTC).
//! - `timer.date`: once, at `date`; a date in the past fires once, at once.
//!
//! Missed ticks (the service was down, or every sensor was busy): a timer fires **once**
//! for the missed period, then resumes its schedule — never a burst of every missed tick.

use std::str::FromStr;

use attune_core::domain::trigger_type::MAX_INTERVAL_SECONDS;
use attune_core::domain::TriggerType;
use chrono::{DateTime, Duration, Utc};
use serde_json::Value;

#[derive(Debug, Clone)]
pub enum Schedule {
    Interval(Duration),
    Cron(Box<cron::Schedule>, chrono_tz::Tz),
    Date(DateTime<Utc>),
}

impl Schedule {
    pub fn parse(kind: TriggerType, params: &Value) -> Result<Schedule, String> {
        match kind {
            TriggerType::Interval => {
                let seconds = params
                    .get("interval_seconds")
                    .and_then(Value::as_f64)
                    .filter(|s| *s > 0.0 && *s <= MAX_INTERVAL_SECONDS);
                let seconds =
                    seconds.ok_or("interval_seconds must be a positive number of seconds, at most 100 years")?;
                Ok(Schedule::Interval(Duration::microseconds((seconds * 1_000_000.0).round().max(1000.0) as i64)))
            }
            TriggerType::Cron => {
                let expr = params.get("cron").and_then(Value::as_str).ok_or("cron is missing")?;
                let schedule = cron::Schedule::from_str(expr).map_err(|e| format!("cron {expr:?}: {e}"))?;
                let tz = match params.get("timezone").and_then(Value::as_str) {
                    Some(name) => name.parse::<chrono_tz::Tz>().map_err(|e| format!("timezone {name:?}: {e}"))?,
                    None => chrono_tz::UTC,
                };
                Ok(Schedule::Cron(Box::new(schedule), tz))
            }
            TriggerType::Date => {
                let date = params.get("date").and_then(Value::as_str).ok_or("date is missing")?;
                let date = DateTime::parse_from_rfc3339(date).map_err(|e| format!("date {date:?}: {e}"))?;
                Ok(Schedule::Date(date.with_timezone(&Utc)))
            }
            other @ (TriggerType::Webhook | TriggerType::Custom) => Err(format!("{} is not a timer", other.as_str())),
        }
    }

    /// The first cron tick strictly after `after`. (In the hour repeated when clocks go
    /// back, the crate can yield the earlier of two matching instants, already past.)
    fn cron_after(schedule: &cron::Schedule, tz: &chrono_tz::Tz, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        schedule.after(&after.with_timezone(tz)).map(|t| t.with_timezone(&Utc)).take(1000).find(|t| *t > after)
    }

    /// The first tick of a timer that starts (or resumes) at `now`.
    pub fn first(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Interval(every) => now.checked_add_signed(*every),
            Schedule::Cron(schedule, tz) => Self::cron_after(schedule, tz, now),
            Schedule::Date(date) => Some(*date),
        }
    }

    /// The tick after one scheduled at `scheduled` that fires at `now`: the first tick of
    /// the schedule later than `now` (missed ones are skipped).
    pub fn next(&self, scheduled: DateTime<Utc>, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Interval(every) => {
                let step = every.num_microseconds().unwrap_or(i64::MAX).max(1);
                let behind = (now - scheduled).num_microseconds().unwrap_or(0).max(0);
                let ahead = step.checked_mul(behind / step + 1)?;
                scheduled.checked_add_signed(Duration::microseconds(ahead))
            }
            Schedule::Cron(schedule, tz) => Self::cron_after(schedule, tz, now.max(scheduled)),
            Schedule::Date(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn intervals_never_drift_and_skip_missed_ticks() {
        let s = Schedule::parse(TriggerType::Interval, &json!({"interval_seconds": 5})).unwrap();
        let t0 = at("2026-01-01T00:00:00Z");
        // Fired 30 ms late: the next tick is still on the grid.
        assert_eq!(s.next(t0, t0 + Duration::milliseconds(30)), Some(at("2026-01-01T00:00:05Z")));
        // Down for 23 s: one catch-up fire now, then back on the grid (no burst).
        assert_eq!(s.next(t0, at("2026-01-01T00:00:23Z")), Some(at("2026-01-01T00:00:25Z")));
        let half = Schedule::parse(TriggerType::Interval, &json!({"interval_seconds": 0.5})).unwrap();
        assert_eq!(half.first(t0), Some(at("2026-01-01T00:00:00.5Z")));
    }

    #[test]
    fn cron_with_seconds_and_time_zones() {
        let s = Schedule::parse(TriggerType::Cron, &json!({"cron": "0,3,6,12 * * * * *"})).unwrap();
        let t = at("2026-01-01T00:00:04Z");
        assert_eq!(s.first(t), Some(at("2026-01-01T00:00:06Z")));
        assert_eq!(
            s.next(at("2026-01-01T00:00:12Z"), at("2026-01-01T00:00:12.010Z")),
            Some(at("2026-01-01T00:01:00Z"))
        );
        let paris =
            Schedule::parse(TriggerType::Cron, &json!({"cron": "0 0 9 * * *", "timezone": "Europe/Paris"})).unwrap();
        assert_eq!(
            paris.first(at("2026-01-01T00:00:00Z")),
            Some(at("2026-01-01T08:00:00Z")),
            "09:00 in Paris is 08:00 UTC in winter"
        );
        assert!(
            Schedule::parse(TriggerType::Cron, &json!({"cron": "0 0 9 * * *", "timezone": "Mars/Olympus"})).is_err()
        );
    }

    #[test]
    fn cron_never_returns_a_past_tick_when_clocks_go_back() {
        let s = Schedule::parse(TriggerType::Cron, &json!({"cron": "0 */15 * * * *", "timezone": "America/New_York"}))
            .unwrap();
        let now = at("2026-11-01T06:10:00Z"); // 01:10 in the repeated hour
        let next = s.first(now).unwrap();
        assert!(next > now, "{next}");
        assert!(s.next(next, next).unwrap() > next);
    }

    #[test]
    fn absurd_intervals_are_refused_not_panicking() {
        assert!(Schedule::parse(TriggerType::Interval, &json!({"interval_seconds": 1e13})).is_err());
    }

    #[test]
    fn dates_fire_once() {
        let s = Schedule::parse(TriggerType::Date, &json!({"date": "2020-01-01T00:00:00Z"})).unwrap();
        assert_eq!(s.first(at("2026-01-01T00:00:00Z")), Some(at("2020-01-01T00:00:00Z")), "a past date is due at once");
        assert_eq!(s.next(at("2020-01-01T00:00:00Z"), at("2026-01-01T00:00:00Z")), None);
    }
}
