//! Instants in signed objects: UTC, millisecond precision, one textual form.
//!
//! Signed objects carry times as RFC 3339 strings in exactly one shape,
//! `YYYY-MM-DDTHH:MM:SS.mmmZ`, so a time has one canonical encoding (invariant 8) and reads
//! well in a receipt. The kernel has no clock: callers pass "now" as a [`Timestamp`].

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Milliseconds since 1970-01-01T00:00:00Z, between the years 1970 and 9999.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(u64);

/// 9999-12-31T23:59:59.999Z in milliseconds.
const MAX_MILLIS: u64 = 253_402_300_799_999;
const MILLIS_PER_DAY: u64 = 86_400_000;

/// Why a string or number is not a [`Timestamp`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimestampError {
    /// The text is not `YYYY-MM-DDTHH:MM:SS.mmmZ` with valid fields.
    #[error("timestamp {0:?} is not of the form YYYY-MM-DDTHH:MM:SS.mmmZ (UTC)")]
    Format(String),
    /// The instant is before 1970 or after 9999.
    #[error("timestamp is outside 1970-01-01 .. 9999-12-31")]
    OutOfRange,
}

impl Timestamp {
    /// The instant `millis` milliseconds after the Unix epoch.
    pub fn from_unix_millis(millis: u64) -> Result<Self, TimestampError> {
        if millis > MAX_MILLIS {
            return Err(TimestampError::OutOfRange);
        }
        Ok(Self(millis))
    }

    /// Milliseconds since the Unix epoch.
    pub const fn unix_millis(self) -> u64 {
        self.0
    }

    /// The UTC calendar date of this instant: (year, month 1–12, day 1–31).
    pub fn utc_date(self) -> (u64, u64, u64) {
        civil_from_days(self.0 / MILLIS_PER_DAY)
    }

    /// Midnight UTC at the start of a calendar date.
    pub fn from_utc_date(year: u64, month: u64, day: u64) -> Result<Self, TimestampError> {
        if !(1970..=9999).contains(&year)
            || !(1..=12).contains(&month)
            || day == 0
            || day > days_in_month(year, month)
        {
            return Err(TimestampError::OutOfRange);
        }
        Self::from_unix_millis(days_from_civil(year, month, day) * MILLIS_PER_DAY)
    }

    /// This instant minus `millis`, if still in range.
    pub fn checked_sub_millis(self, millis: u64) -> Option<Self> {
        self.0.checked_sub(millis).map(Self)
    }

    /// This instant plus `millis`, if still in range.
    pub fn checked_add_millis(self, millis: u64) -> Option<Self> {
        self.0
            .checked_add(millis)
            .and_then(|sum| Self::from_unix_millis(sum).ok())
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year / 400;
    let year_of_era = year - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The date of a day count since 1970-01-01 (H. Hinnant's `civil_from_days`).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let days = days + 719_468;
    let era = days / 146_097;
    let day_of_era = days - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

fn days_in_month(year: u64, month: u64) -> u64 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => {
            29
        }
        2 => 28,
        _ => 31,
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (year, month, day) = civil_from_days(self.0 / MILLIS_PER_DAY);
        let in_day = self.0 % MILLIS_PER_DAY;
        write!(
            formatter,
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
            in_day / 3_600_000,
            in_day / 60_000 % 60,
            in_day / 1000 % 60,
            in_day % 1000
        )
    }
}

impl FromStr for Timestamp {
    type Err = TimestampError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let format_error = || TimestampError::Format(text.to_owned());
        let bytes = text.as_bytes();
        // YYYY-MM-DDTHH:MM:SS.mmmZ
        const SHAPE: &[u8; 24] = b"0000-00-00T00:00:00.000Z";
        if bytes.len() != SHAPE.len() {
            return Err(format_error());
        }
        for (byte, expected) in bytes.iter().zip(SHAPE) {
            let fits = if *expected == b'0' {
                byte.is_ascii_digit()
            } else {
                byte == expected
            };
            if !fits {
                return Err(format_error());
            }
        }
        let number = |range: std::ops::Range<usize>| {
            bytes[range]
                .iter()
                .fold(0u64, |acc, digit| acc * 10 + u64::from(digit - b'0'))
        };
        let (year, month, day) = (number(0..4), number(5..7), number(8..10));
        let (hour, minute, second, milli) = (
            number(11..13),
            number(14..16),
            number(17..19),
            number(20..23),
        );
        if year < 1970
            || !(1..=12).contains(&month)
            || day == 0
            || day > days_in_month(year, month)
            || hour > 23
            || minute > 59
            || second > 59
        {
            return Err(format_error());
        }
        let millis = days_from_civil(year, month, day) * MILLIS_PER_DAY
            + ((hour * 60 + minute) * 60 + second) * 1000
            + milli;
        Self::from_unix_millis(millis)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_instants() {
        let cases = [
            (0, "1970-01-01T00:00:00.000Z"),
            (951_782_400_000, "2000-02-29T00:00:00.000Z"),
            (1_795_291_200_123, "2026-11-21T20:00:00.123Z"),
            (MAX_MILLIS, "9999-12-31T23:59:59.999Z"),
        ];
        for (millis, text) in cases {
            let stamp = Timestamp::from_unix_millis(millis).unwrap();
            assert_eq!(stamp.to_string(), text);
            assert_eq!(text.parse::<Timestamp>().unwrap(), stamp);
        }
    }

    #[test]
    fn only_the_one_shape_is_accepted() {
        for bad in [
            "2026-11-21T20:00:00Z",
            "2026-11-21T20:00:00.123+00:00",
            "2026-11-21t20:00:00.123Z",
            "2026-11-21 20:00:00.123Z",
            "2026-02-29T00:00:00.000Z",
            "2026-13-01T00:00:00.000Z",
            "2026-11-31T00:00:00.000Z",
            "2026-11-21T24:00:00.000Z",
            "2026-11-21T20:60:00.000Z",
            "2026-11-21T20:00:60.000Z",
            "1969-12-31T23:59:59.999Z",
            "+026-11-21T20:00:00.000Z",
            "２026-11-21T20:00:00.000Z",
        ] {
            assert!(bad.parse::<Timestamp>().is_err(), "{bad} was accepted");
        }
        assert_eq!(
            Timestamp::from_unix_millis(MAX_MILLIS + 1),
            Err(TimestampError::OutOfRange)
        );
    }

    #[test]
    fn calendar_dates() {
        let stamp: Timestamp = "2024-02-29T23:59:59.999Z".parse().unwrap();
        assert_eq!(stamp.utc_date(), (2024, 2, 29));
        assert_eq!(
            Timestamp::from_utc_date(2024, 3, 1).unwrap().to_string(),
            "2024-03-01T00:00:00.000Z"
        );
        assert!(Timestamp::from_utc_date(2023, 2, 29).is_err());
        assert!(Timestamp::from_utc_date(1969, 12, 31).is_err());
    }

    proptest! {
        #[test]
        fn text_round_trips(millis in 0..=MAX_MILLIS) {
            let stamp = Timestamp::from_unix_millis(millis).unwrap();
            prop_assert_eq!(stamp.to_string().parse::<Timestamp>().unwrap(), stamp);
        }
    }
}
