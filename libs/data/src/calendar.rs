//! Trading calendars: when a bar is expected, so that a gap can be told apart
//! from a market that was closed.

use chrono::{Datelike, Timelike, Weekday};
use serde::{Deserialize, Serialize};

use crate::time::{TimestampNs, UsZone, Zone, from_ns};

/// Whether a bar's timestamp is the start or the end of its interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum BarLabel {
    /// `[ts, ts + timeframe)`: Binance, most vendors.
    #[default]
    Open,
    /// `(ts - timeframe, ts]`: e.g. the CME sample, whose first bar after the 17:00 open is 17:01.
    Close,
}

/// A weekly open window in local time: from `open` to `close`, wrapping over the week's end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeeklyWindow {
    pub open: (Weekday, u32, u32),
    pub close: (Weekday, u32, u32),
}

fn minute_of_week((d, h, m): (Weekday, u32, u32)) -> u32 {
    d.num_days_from_monday() * 1440 + h * 60 + m
}

/// Exchange sessions: weekly windows in a zone (holidays are not modelled).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionCalendar {
    pub zone: Zone,
    pub windows: Vec<WeeklyWindow>,
}

impl SessionCalendar {
    /// CME Globex FX (e.g. 6E): Sunday 17:00 to Friday 16:00 US Central, with a
    /// daily break 16:00-17:00 Monday to Thursday.
    pub fn cme_globex_fx() -> Self {
        use Weekday::*;
        let windows = [(Sun, Mon), (Mon, Tue), (Tue, Wed), (Wed, Thu), (Thu, Fri)]
            .into_iter()
            .map(|(o, c)| WeeklyWindow {
                open: (o, 17, 0),
                close: (c, 16, 0),
            })
            .collect();
        Self {
            zone: Zone::Us(UsZone::Central),
            windows,
        }
    }

    /// Whether the market is open at this instant (open inclusive, close exclusive).
    pub fn is_open(&self, ts: TimestampNs) -> bool {
        let local = self.zone.utc_to_local(from_ns(ts));
        let mow =
            local.weekday().num_days_from_monday() * 1440 + local.hour() * 60 + local.minute();
        self.windows.iter().any(|w| {
            let (o, c) = (minute_of_week(w.open), minute_of_week(w.close));
            if o <= c {
                (o..c).contains(&mow)
            } else {
                mow >= o || mow < c
            }
        })
    }
}

/// When bars are expected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Calendar {
    /// Every interval, around the clock (crypto).
    AlwaysOpen,
    /// Monday to Friday by the UTC date of the bar's start (US equity daily bars):
    /// weekends are not gaps; holidays are (use a gap tolerance of one bar to accept them).
    UsEquityDaily,
    /// Exchange sessions.
    Sessions(SessionCalendar),
}

impl Calendar {
    /// Whether a bar labelled `ts` is expected, i.e. its whole interval lies in trading time.
    pub fn expects_bar(&self, ts: TimestampNs, timeframe: i64, label: BarLabel) -> bool {
        let start = match label {
            BarLabel::Open => ts,
            BarLabel::Close => ts - timeframe,
        };
        match self {
            Calendar::AlwaysOpen => true,
            Calendar::UsEquityDaily => {
                !matches!(from_ns(start).weekday(), Weekday::Sat | Weekday::Sun)
            }
            Calendar::Sessions(s) => s.is_open(start) && s.is_open(start + timeframe - 1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::DateTime;

    fn ns(s: &str) -> i64 {
        DateTime::parse_from_rfc3339(s)
            .unwrap()
            .timestamp_nanos_opt()
            .unwrap()
    }

    #[test]
    fn globex_hours_in_winter_and_summer() {
        let c = SessionCalendar::cme_globex_fx();
        // Monday 2024-01-15: 16:00 CST = 22:00Z closes, 17:00 CST = 23:00Z reopens.
        assert!(c.is_open(ns("2024-01-15T21:59:00Z")));
        assert!(!c.is_open(ns("2024-01-15T22:00:00Z")));
        assert!(!c.is_open(ns("2024-01-15T22:59:00Z")));
        assert!(c.is_open(ns("2024-01-15T23:00:00Z")));
        // Saturday closed, Sunday opens 17:00 local.
        assert!(!c.is_open(ns("2024-01-13T12:00:00Z")));
        assert!(!c.is_open(ns("2024-01-14T22:59:00Z")));
        assert!(c.is_open(ns("2024-01-14T23:00:00Z")));
        // Friday closes at 16:00 local.
        assert!(c.is_open(ns("2024-01-19T21:59:00Z")));
        assert!(!c.is_open(ns("2024-01-19T22:00:00Z")));
        // July, daylight time: 16:00 CDT = 21:00Z.
        assert!(!c.is_open(ns("2024-07-15T21:00:00Z")));
        assert!(c.is_open(ns("2024-07-15T22:00:00Z")));
    }

    #[test]
    fn bar_labels_shift_the_interval() {
        let cal = Calendar::Sessions(SessionCalendar::cme_globex_fx());
        let m = 60_000_000_000;
        assert!(cal.expects_bar(ns("2024-01-15T22:00:00Z"), m, BarLabel::Close));
        assert!(!cal.expects_bar(ns("2024-01-15T22:00:00Z"), m, BarLabel::Open));
        assert!(!cal.expects_bar(ns("2024-01-15T23:00:00Z"), m, BarLabel::Close));
        assert!(cal.expects_bar(ns("2024-01-15T23:00:00Z"), m, BarLabel::Open));
        let day = 86_400_000_000_000;
        assert!(!Calendar::UsEquityDaily.expects_bar(
            ns("2024-01-13T00:00:00Z"),
            day,
            BarLabel::Open
        ));
        assert!(Calendar::UsEquityDaily.expects_bar(
            ns("2024-01-12T00:00:00Z"),
            day,
            BarLabel::Open
        ));
        assert!(Calendar::AlwaysOpen.expects_bar(ns("2024-01-13T00:00:00Z"), day, BarLabel::Open));
    }
}
