//! Budget windows: fixed UTC calendar windows (hour, day, month) and rolling windows, and the
//! checked integer arithmetic of amounts against limits.

use std::fmt;

use trustos_kernel::timestamp::Timestamp;

const HOUR_MILLIS: u64 = 3_600_000;
const DAY_MILLIS: u64 = 24 * HOUR_MILLIS;

/// The span a budget limit applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BudgetWindow {
    /// The UTC clock hour an instant falls in.
    Hour,
    /// The UTC calendar day.
    Day,
    /// The UTC calendar month.
    Month,
    /// The `millis` milliseconds up to and including the instant: `(at − millis, at]`.
    Rolling {
        /// Length of the window.
        millis: u64,
    },
}

impl BudgetWindow {
    /// Stable label used in storage keys: `hour`, `day`, `month`, `rolling:<millis>`.
    pub fn label(&self) -> String {
        match self {
            Self::Hour => "hour".into(),
            Self::Day => "day".into(),
            Self::Month => "month".into(),
            Self::Rolling { millis } => format!("rolling:{millis}"),
        }
    }

    /// Whether the window is a fixed calendar span (aggregated) rather than rolling (summed).
    pub fn is_fixed(&self) -> bool {
        !matches!(self, Self::Rolling { .. })
    }

    /// The window containing `at`: `[start, end)` for fixed windows, `(start, end]` for rolling
    /// windows, where `end` is `at` itself.
    pub fn bounds(&self, at: Timestamp) -> (Timestamp, Timestamp) {
        let millis = at.unix_millis();
        let span = |start: u64, length: u64| {
            let start = Timestamp::from_unix_millis(start).unwrap_or(at);
            (start, start.checked_add_millis(length).unwrap_or(at))
        };
        match self {
            Self::Hour => span(millis - millis % HOUR_MILLIS, HOUR_MILLIS),
            Self::Day => span(millis - millis % DAY_MILLIS, DAY_MILLIS),
            Self::Month => {
                let (year, month, _) = at.utc_date();
                let start = Timestamp::from_utc_date(year, month, 1).unwrap_or(at);
                let (next_year, next_month) = if month == 12 {
                    (year + 1, 1)
                } else {
                    (year, month + 1)
                };
                let end = Timestamp::from_utc_date(next_year, next_month, 1)
                    .unwrap_or_else(|_| at.checked_add_millis(31 * DAY_MILLIS).unwrap_or(at));
                (start, end)
            }
            Self::Rolling { millis: length } => (
                at.checked_sub_millis(*length)
                    .unwrap_or_else(|| Timestamp::from_unix_millis(0).unwrap_or(at)),
                at,
            ),
        }
    }
}

impl fmt::Display for BudgetWindow {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.label())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn fixed_windows_follow_the_utc_calendar() {
        let instant = at("2026-12-31T23:59:59.999Z");
        assert_eq!(
            BudgetWindow::Hour.bounds(instant),
            (
                at("2026-12-31T23:00:00.000Z"),
                at("2027-01-01T00:00:00.000Z")
            )
        );
        assert_eq!(
            BudgetWindow::Day.bounds(instant),
            (
                at("2026-12-31T00:00:00.000Z"),
                at("2027-01-01T00:00:00.000Z")
            )
        );
        assert_eq!(
            BudgetWindow::Month.bounds(instant),
            (
                at("2026-12-01T00:00:00.000Z"),
                at("2027-01-01T00:00:00.000Z")
            )
        );
        assert_eq!(
            BudgetWindow::Month.bounds(at("2024-02-29T12:00:00.000Z")),
            (
                at("2024-02-01T00:00:00.000Z"),
                at("2024-03-01T00:00:00.000Z")
            )
        );
        // Midnight belongs to the new day.
        assert_eq!(
            BudgetWindow::Day.bounds(at("2027-01-01T00:00:00.000Z")).0,
            at("2027-01-01T00:00:00.000Z")
        );
    }

    #[test]
    fn rolling_windows_end_at_the_instant() {
        let instant = at("2026-01-01T00:30:00.000Z");
        assert_eq!(
            BudgetWindow::Rolling { millis: 3_600_000 }.bounds(instant),
            (at("2025-12-31T23:30:00.000Z"), instant)
        );
        assert_eq!(BudgetWindow::Rolling { millis: 5 }.label(), "rolling:5");
    }
}
