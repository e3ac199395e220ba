//! Ages and timestamps as kubectl shows them: `45s`, `5m12s`, `3h5m`, `2d4h`
//! in tables, and RFC 1123 times in describe pages.

use chrono::{DateTime, Utc};

/// Parses an RFC 3339 timestamp as stored in objects.
pub fn parse_time(ts: &str) -> Option<DateTime<Utc>> {
    if ts.is_empty() {
        return None;
    }
    DateTime::parse_from_rfc3339(ts)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// The age of `ts` at `now`, or `<unknown>` when there is no timestamp.
pub fn age(ts: &str, now: DateTime<Utc>) -> String {
    match parse_time(ts) {
        Some(t) => human_duration(now.signed_duration_since(t).num_seconds()),
        None => "<unknown>".to_string(),
    }
}

/// A duration in seconds, shortened with kubectl's rules: precise while
/// small, coarser as it grows.
pub fn human_duration(seconds: i64) -> String {
    if seconds < -1 {
        // More than clock skew: the timestamp is in the future.
        return "<invalid>".to_string();
    }
    if seconds < 0 {
        return "0s".to_string();
    }
    if seconds < 120 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    let days = hours / 24;
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{days}d")
        } else {
            format!("{days}d{h}h")
        };
    }
    if days < 365 * 2 {
        return format!("{days}d");
    }
    let years = days / 365;
    if years < 8 {
        let d = days % 365;
        return if d == 0 {
            format!("{years}y")
        } else {
            format!("{years}y{d}d")
        };
    }
    format!("{years}y")
}

/// A timestamp as describe prints it (`Mon, 02 Jan 2006 15:04:05 +0000`),
/// or the raw text if it does not parse.
pub fn describe_time(ts: &str) -> String {
    match parse_time(ts) {
        Some(t) => t.format("%a, %d %b %Y %H:%M:%S %z").to_string(),
        None => ts.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_follow_kubectl() {
        let cases = [
            (-5, "<invalid>"),
            (-1, "0s"),
            (0, "0s"),
            (45, "45s"),
            (119, "119s"),
            (120, "2m"),
            (5 * 60 + 12, "5m12s"),
            (9 * 60 + 59, "9m59s"),
            (10 * 60 + 30, "10m"),
            (179 * 60, "179m"),
            (3 * 3600, "3h"),
            (3 * 3600 + 5 * 60, "3h5m"),
            (8 * 3600 + 5 * 60, "8h"),
            (47 * 3600, "47h"),
            (48 * 3600, "2d"),
            (2 * 86400 + 4 * 3600, "2d4h"),
            (8 * 86400, "8d"),
            (400 * 86400, "400d"),
            (3 * 365 * 86400, "3y"),
            (3 * 365 * 86400 + 10 * 86400, "3y10d"),
            (9 * 365 * 86400, "9y"),
        ];
        for (s, want) in cases {
            assert_eq!(human_duration(s), want, "{s}s");
        }
    }

    #[test]
    fn age_of_timestamps() {
        let now = parse_time("2024-03-01T12:00:00Z").unwrap();
        assert_eq!(age("2024-03-01T11:59:15Z", now), "45s");
        assert_eq!(age("2024-03-01T11:54:48Z", now), "5m12s");
        assert_eq!(age("", now), "<unknown>");
        assert_eq!(age("garbage", now), "<unknown>");
        assert_eq!(age("2024-03-01T13:00:00+01:00", now), "0s");
    }

    #[test]
    fn describe_times_are_rfc1123() {
        assert_eq!(
            describe_time("2024-03-04T05:06:07Z"),
            "Mon, 04 Mar 2024 05:06:07 +0000"
        );
        assert_eq!(describe_time("x"), "x");
    }
}
