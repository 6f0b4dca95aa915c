//! UTC timestamps from the system clock, written without a date library or time-zone database:
//! the one civil-date conversion behind log lines, bench rows and `list`'s last-use column.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Time since the Unix epoch (zero for a clock set before 1970).
pub fn since_epoch() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// `2026-12-04T22:35:13Z` for Unix seconds.
pub fn utc(secs: u64) -> String {
    format!("{}Z", date_time(secs))
}

/// `2026-12-04T22:35:13.123Z` for Unix seconds plus milliseconds.
pub fn utc_millis(secs: u64, millis: u32) -> String {
    format!("{}.{millis:03}Z", date_time(secs))
}

/// `YYYY-MM-DDTHH:MM:SS` (days to a civil date: the proleptic Gregorian calendar's 400-year
/// cycle, counted from 0000-03-01 so that leap days fall at a year's end; Howard Hinnant's
/// algorithm, re-derived).
fn date_time(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc(1_796_425_200), "2026-12-04T23:00:00Z");
        // The last second of a leap year and the first of the next.
        assert_eq!(utc(1_735_689_599), "2024-12-31T23:59:59Z");
        assert_eq!(utc(1_735_689_600), "2025-01-01T00:00:00Z");
    }

    #[test]
    fn utc_dates_with_millis() {
        assert_eq!(utc_millis(0, 0), "1970-01-01T00:00:00.000Z");
        // 2024-02-29 (a leap day) 12:34:56 UTC.
        assert_eq!(utc_millis(1_709_210_096, 7), "2024-02-29T12:34:56.007Z");
        assert_eq!(utc_millis(1_796_342_400, 999), "2026-12-04T00:00:00.999Z");
    }
}
