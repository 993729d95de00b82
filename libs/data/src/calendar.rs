//! Trading calendars: when a bar is expected, so that a gap can be told apart
//! from a market that was closed.
//!
//! Holidays and ad hoc closures come from exchange_calendars (a maintained
//! source), written by `scripts/calendars/update` into `calendars/*.txt` and
//! embedded here: NYSE weekdays without a session 1990-2030 (the US equity
//! daily calendar and `SessionCalendar::nyse`), the NYSE sessions that close
//! early 1990-2030 (`SessionCalendar::nyse`, the US equity intraday
//! calendar), CME Globex sessions without trading 1998-2030 (the session
//! calendars that ask for them), and the CME Globex sessions that close
//! early 1998-2030 (exchange_calendars' one CME calendar, the equity and
//! interest-rate hours: `SessionCalendar::cme_globex_equity`). Outside those
//! years a weekday is expected to trade (a holiday there shows as a gap, as
//! before).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;

use chrono::{Datelike, NaiveDate, NaiveTime, Timelike, Weekday};
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

/// Dates (one `YYYY-MM-DD` per line, `#` comments) of an embedded list.
fn dates(text: &str) -> BTreeSet<NaiveDate> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            NaiveDate::parse_from_str(l, "%Y-%m-%d")
                .unwrap_or_else(|e| panic!("embedded calendar date {l:?}: {e}"))
        })
        .collect()
}

/// NYSE weekdays without a session (holidays and ad hoc closures), 1990-2030.
static NYSE_CLOSED: LazyLock<BTreeSet<NaiveDate>> =
    LazyLock::new(|| dates(include_str!("../calendars/xnys.txt")));
/// CME Globex sessions without trading, by session label, 1998-2030.
static CME_CLOSED: LazyLock<BTreeSet<NaiveDate>> =
    LazyLock::new(|| dates(include_str!("../calendars/cmes.txt")));

/// Early closes (`YYYY-MM-DD HH:MM` per line: session label, then the close
/// in the exchange's local time; `#` comments) of an embedded list.
fn early_closes(text: &str) -> BTreeMap<NaiveDate, NaiveTime> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (d, t) = l
                .split_once(' ')
                .unwrap_or_else(|| panic!("embedded early close {l:?}: no time"));
            let d = NaiveDate::parse_from_str(d, "%Y-%m-%d")
                .unwrap_or_else(|e| panic!("embedded early close {l:?}: {e}"));
            let t = NaiveTime::parse_from_str(t.trim(), "%H:%M")
                .unwrap_or_else(|e| panic!("embedded early close {l:?}: {e}"));
            (d, t)
        })
        .collect()
}

/// CME Globex sessions that close early, by session label, with the close in
/// US Central time (12:00 on every date so far), 1998-2030.
static CME_EARLY_CLOSES: LazyLock<BTreeMap<NaiveDate, NaiveTime>> =
    LazyLock::new(|| early_closes(include_str!("../calendars/cmes_early_closes.txt")));

/// NYSE sessions that close early (13:00 US Eastern since 1993, 14:00
/// before: the day before Independence Day, the day after Thanksgiving,
/// Christmas Eve, ...), 1990-2030.
static NYSE_EARLY_CLOSES: LazyLock<BTreeMap<NaiveDate, NaiveTime>> =
    LazyLock::new(|| early_closes(include_str!("../calendars/xnys_early_closes.txt")));

/// The US Eastern local time at which the NYSE session of `date` closes
/// early, if it does.
pub fn nyse_early_close(date: NaiveDate) -> Option<NaiveTime> {
    NYSE_EARLY_CLOSES.get(&date).copied()
}

/// The US Central local time at which the CME Globex session labelled `label`
/// closes early (equity and interest-rate hours), if it does.
pub fn cme_early_close(label: NaiveDate) -> Option<NaiveTime> {
    CME_EARLY_CLOSES.get(&label).copied()
}

/// Whether the NYSE had (or has scheduled) no session on `date`, a weekday;
/// `false` outside 1990-2030 (unknown: treated as a trading day).
pub fn nyse_closed(date: NaiveDate) -> bool {
    NYSE_CLOSED.contains(&date)
}

/// Exchange closures a session calendar observes besides its weekly windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Closures {
    /// None: every weekly window trades.
    #[default]
    None,
    /// CME Globex holidays: a session labelled with a closed date (it would
    /// open at 17:00 US Central the day before) does not trade.
    Cme,
    /// CME Globex holidays as [`Closures::Cme`], and the early closes of
    /// exchange_calendars' CME calendar (the equity and interest-rate hours,
    /// e.g. 12:00 US Central on Martin Luther King Day): a session labelled
    /// with an early-close date ends at that time; the next one opens at
    /// 17:00 as usual. Not for FX: CME FX trades to 16:00 on the Monday
    /// holidays (the 6E sample on 2024-01-15 does).
    CmeWithEarlyCloses,
    /// NYSE holidays and ad hoc closures (no session that local date) and
    /// early closes (the session of that date ends at the listed time,
    /// 13:00 US Eastern since 1993).
    Nyse,
}

/// Exchange sessions: weekly windows in a zone, less the exchange's closed
/// sessions and, when the closures say so, the hours after an early close.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionCalendar {
    pub zone: Zone,
    pub windows: Vec<WeeklyWindow>,
    #[serde(default)]
    pub closures: Closures,
}

impl SessionCalendar {
    /// CME Globex FX (e.g. 6E): Sunday 17:00 to Friday 16:00 US Central, with a
    /// daily break 16:00-17:00 Monday to Thursday, closed on CME holidays.
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
            closures: Closures::Cme,
        }
    }

    /// CME Globex equity index and interest-rate futures (ES, ZN): the weekly
    /// hours of [`SessionCalendar::cme_globex_fx`], closed on CME holidays,
    /// and ending early (12:00 US Central) on the sessions exchange_calendars
    /// lists (Martin Luther King Day, Presidents Day, the day after
    /// Thanksgiving, ...): bars missing after such a close are a closure.
    pub fn cme_globex_equity() -> Self {
        Self {
            closures: Closures::CmeWithEarlyCloses,
            ..Self::cme_globex_fx()
        }
    }

    /// The CME Globex calendar of a futures symbol (a root such as `ES`, or a
    /// contract such as `ESZ4`, `ZNH25`, `ES.c.0`): equity index and
    /// interest-rate roots (ES, NQ, YM, RTY, EMD and their micros; ZT, ZF,
    /// ZN, TN, ZB, UB) halt early on the exchange's early-close sessions
    /// ([`SessionCalendar::cme_globex_equity`]); FX and every other root keep
    /// the FX hours ([`SessionCalendar::cme_globex_fx`]), whose holidays all
    /// of CME observes. The longest matching root wins (MES before ES).
    pub fn cme_globex_for(symbol: &str) -> Self {
        if equity_or_rates_root(symbol) {
            Self::cme_globex_equity()
        } else {
            Self::cme_globex_fx()
        }
    }

    /// The NYSE regular session (US equities and ETFs, every US exchange
    /// keeps these hours): 09:30 to 16:00 US Eastern, Monday to Friday,
    /// closed on the NYSE's holidays and ad hoc closures, ending at 13:00 on
    /// its early-close days (14:00 before 1993; exchange_calendars' XNYS).
    /// Pre- and post-market bars lie outside it.
    pub fn nyse() -> Self {
        use Weekday::*;
        Self {
            zone: Zone::Us(UsZone::Eastern),
            windows: [Mon, Tue, Wed, Thu, Fri]
                .into_iter()
                .map(|d| WeeklyWindow {
                    open: (d, 9, 30),
                    close: (d, 16, 0),
                })
                .collect(),
            closures: Closures::Nyse,
        }
    }

    /// Whether the market is open at this instant (open inclusive, close exclusive).
    pub fn is_open(&self, ts: TimestampNs) -> bool {
        let local = self.zone.utc_to_local(from_ns(ts));
        if self.closures == Closures::Nyse
            && (nyse_closed(local.date())
                || nyse_early_close(local.date()).is_some_and(|t| local.time() >= t))
        {
            return false;
        }
        if matches!(self.closures, Closures::Cme | Closures::CmeWithEarlyCloses) {
            // A session is labelled with the date it closes on: from 17:00 local
            // it is the next day's.
            let label = if local.hour() >= 17 {
                local.date().succ_opt()
            } else {
                Some(local.date())
            };
            if label.is_some_and(|d| CME_CLOSED.contains(&d)) {
                return false;
            }
            // Before 17:00 the session closes on this date: after an early
            // close it is over until the next one opens at 17:00.
            if self.closures == Closures::CmeWithEarlyCloses
                && local.hour() < 17
                && cme_early_close(local.date()).is_some_and(|t| local.time() >= t)
            {
                return false;
            }
        }
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
    /// Monday to Friday by the UTC date of the bar's start (US equity daily bars),
    /// less the days the NYSE was closed (holidays and ad hoc closures,
    /// 1990-2030): neither weekends nor closures are gaps.
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
                let day = from_ns(start).date();
                !matches!(day.weekday(), Weekday::Sat | Weekday::Sun) && !nyse_closed(day)
            }
            Calendar::Sessions(s) => s.is_open(start) && s.is_open(start + timeframe - 1),
        }
    }
}

/// CME equity index and interest-rate roots whose Globex sessions end early
/// on the exchange's early-close days; longer roots first.
const EARLY_CLOSE_ROOTS: [&str; 16] = [
    "MES", "MNQ", "MYM", "M2K", "EMD", "RTY", "ES", "NQ", "YM", "ZT", "ZF", "ZN", "TN", "ZB", "UB",
    "TWE",
];

/// Month codes of futures contracts (`ESZ4`: December).
const MONTH_CODES: &str = "FGHJKMNQUVXZ";

fn equity_or_rates_root(symbol: &str) -> bool {
    let s = symbol.trim().to_ascii_uppercase();
    EARLY_CLOSE_ROOTS.iter().any(|root| {
        let Some(rest) = s.strip_prefix(root) else {
            return false;
        };
        let mut chars = rest.chars();
        match chars.next() {
            // The root alone, or a continuous-contract or venue suffix.
            None => true,
            Some(c) if !c.is_ascii_alphanumeric() => true,
            // A contract: a month code and its year.
            Some(c) if MONTH_CODES.contains(c) => chars.next().is_some_and(|d| d.is_ascii_digit()),
            Some(_) => false,
        }
    })
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;

    use super::*;

    #[test]
    fn futures_roots_pick_their_globex_calendar() {
        for s in [
            "ES", "ESZ4", "ESH25", "es.c.0", "MES", "MESZ4", "NQ", "RTYM5", "ZN", "ZNH25", "ZB",
            "UB", "ES=F",
        ] {
            assert_eq!(
                SessionCalendar::cme_globex_for(s),
                SessionCalendar::cme_globex_equity(),
                "{s}"
            );
        }
        for s in [
            "6E", "6EZ4", "M6E", "CL", "GC", "ESTR", "ZNX", "NQQQ", "", "YMCA",
        ] {
            assert_eq!(
                SessionCalendar::cme_globex_for(s),
                SessionCalendar::cme_globex_fx(),
                "{s}"
            );
        }
    }

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
    fn exchange_closures_are_not_expected_to_trade() {
        let day = 86_400_000_000_000;
        let us = |d: &str| {
            Calendar::UsEquityDaily.expects_bar(ns(&format!("{d}T00:00:00Z")), day, BarLabel::Open)
        };
        // Thanksgiving, the 2001-09-11..14 closure, Hurricane Sandy, a
        // national day of mourning; the days around them trade.
        for closed in [
            "2020-11-26",
            "2001-09-11",
            "2001-09-14",
            "2012-10-29",
            "2012-10-30",
            "2018-12-05",
        ] {
            assert!(!us(closed), "{closed}");
        }
        for open in ["2020-11-27", "2001-09-17", "2012-10-31", "2018-12-06"] {
            assert!(us(open), "{open}");
        }
        // Outside the embedded years a weekday is expected.
        assert!(us("1985-12-25"));
        // CME: the session labelled 2024-12-25 (Christmas) does not trade,
        // from its would-be open at 17:00 CST on the 24th; the next one does.
        let c = SessionCalendar::cme_globex_fx();
        assert!(!c.is_open(ns("2024-12-24T23:30:00Z")));
        assert!(!c.is_open(ns("2024-12-25T15:00:00Z")));
        assert!(c.is_open(ns("2024-12-25T23:30:00Z")));
        assert!(c.is_open(ns("2024-12-23T23:30:00Z")));
        // Without closures the same window trades.
        let plain = SessionCalendar {
            closures: Closures::None,
            ..SessionCalendar::cme_globex_fx()
        };
        assert!(plain.is_open(ns("2024-12-24T23:30:00Z")));
    }

    #[test]
    fn the_embedded_early_closes_are_exchange_calendars_cme_noon_closes() {
        let noon = NaiveTime::from_hms_opt(12, 0, 0).unwrap();
        let date = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        assert_eq!(CME_EARLY_CLOSES.len(), 250);
        assert!(CME_EARLY_CLOSES.values().all(|&t| t == noon));
        // MLK Day, Thanksgiving and the day after, Christmas Eve, July 4th.
        for d in [
            "2024-01-15",
            "2023-11-23",
            "2023-11-24",
            "2024-12-24",
            "2024-07-04",
        ] {
            assert_eq!(cme_early_close(date(d)), Some(noon), "{d}");
        }
        // A regular day and a full closure are not early closes.
        assert_eq!(cme_early_close(date("2024-01-16")), None);
        assert_eq!(cme_early_close(date("2024-12-25")), None);
        assert!(CME_CLOSED.contains(&date("2024-12-25")));
    }

    #[test]
    fn equity_sessions_end_at_the_early_close_and_fx_sessions_do_not() {
        let eq = SessionCalendar::cme_globex_equity();
        let fx = SessionCalendar::cme_globex_fx();
        // MLK Day 2024 (CST, UTC-6): the session labelled 2024-01-15 opened
        // Sunday 17:00 and halts at 12:00 local = 18:00Z; the next opens at 17:00.
        assert!(eq.is_open(ns("2024-01-15T17:59:00Z")));
        assert!(!eq.is_open(ns("2024-01-15T18:00:00Z")));
        assert!(!eq.is_open(ns("2024-01-15T21:30:00Z")));
        assert!(!eq.is_open(ns("2024-01-15T22:59:00Z")));
        assert!(eq.is_open(ns("2024-01-15T23:00:00Z")));
        // FX trades to 16:00 local that day (CME's FX holiday hours).
        assert!(fx.is_open(ns("2024-01-15T18:00:00Z")));
        assert!(fx.is_open(ns("2024-01-15T21:59:00Z")));
        // The day after Thanksgiving 2023 and July 4th 2024 (CDT, UTC-5: 12:00 = 17:00Z).
        assert!(eq.is_open(ns("2023-11-24T17:59:00Z")));
        assert!(!eq.is_open(ns("2023-11-24T18:00:00Z")));
        assert!(eq.is_open(ns("2024-07-04T16:59:00Z")));
        assert!(!eq.is_open(ns("2024-07-04T17:00:00Z")));
        assert!(eq.is_open(ns("2024-07-04T22:00:00Z")));
        // A regular day trades to 16:00 local on both.
        assert!(eq.is_open(ns("2024-01-16T21:59:00Z")));
        assert!(!eq.is_open(ns("2024-01-16T22:00:00Z")));
        // Holidays are closed on both: Christmas 2024.
        assert!(!eq.is_open(ns("2024-12-25T15:00:00Z")));
    }

    #[test]
    fn nyse_sessions_keep_regular_hours_holidays_and_early_closes() {
        let nyse = SessionCalendar::nyse();
        // A regular summer day (EDT, UTC-4): 09:30-16:00 local = 13:30-20:00Z.
        assert!(!nyse.is_open(ns("2024-07-02T13:29:00Z")));
        assert!(nyse.is_open(ns("2024-07-02T13:30:00Z")));
        assert!(nyse.is_open(ns("2024-07-02T19:59:00Z")));
        assert!(!nyse.is_open(ns("2024-07-02T20:00:00Z")));
        // Winter (EST, UTC-5): 09:30 local = 14:30Z.
        assert!(!nyse.is_open(ns("2024-01-16T14:29:00Z")));
        assert!(nyse.is_open(ns("2024-01-16T14:30:00Z")));
        assert!(nyse.is_open(ns("2024-01-16T20:59:00Z")));
        // The day before Independence Day ends at 13:00 local = 17:00Z;
        // Independence Day, a Saturday and MLK Day have no session.
        assert!(nyse.is_open(ns("2024-07-03T16:59:00Z")));
        assert!(!nyse.is_open(ns("2024-07-03T17:00:00Z")));
        assert!(!nyse.is_open(ns("2024-07-04T15:00:00Z")));
        assert!(!nyse.is_open(ns("2024-07-06T15:00:00Z")));
        assert!(!nyse.is_open(ns("2024-01-15T15:00:00Z")));
        // The day after Thanksgiving and Christmas Eve (EST): 13:00 = 18:00Z.
        assert!(nyse.is_open(ns("2024-11-29T17:59:00Z")));
        assert!(!nyse.is_open(ns("2024-11-29T18:00:00Z")));
        assert!(!nyse.is_open(ns("2024-12-24T18:00:00Z")));
        // Ad hoc closures: the week of 2001-09-11 and Hurricane Sandy.
        assert!(!nyse.is_open(ns("2001-09-12T15:00:00Z")));
        assert!(!nyse.is_open(ns("2012-10-29T15:00:00Z")));
        // One-minute bars: the last of an early-close day opens at 12:59.
        let cal = Calendar::Sessions(nyse);
        let m = 60_000_000_000;
        assert!(cal.expects_bar(ns("2024-07-03T16:59:00Z"), m, BarLabel::Open));
        assert!(!cal.expects_bar(ns("2024-07-03T17:00:00Z"), m, BarLabel::Open));
        assert!(cal.expects_bar(ns("2024-07-02T19:59:00Z"), m, BarLabel::Open));
        assert!(!cal.expects_bar(ns("2024-07-02T20:00:00Z"), m, BarLabel::Open));
    }

    #[test]
    fn the_embedded_nyse_early_closes_are_exchange_calendars_one_pm_closes() {
        let one_pm = NaiveTime::from_hms_opt(13, 0, 0).expect("time");
        let date = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date");
        for d in [
            "2024-07-03",
            "2024-11-29",
            "2024-12-24",
            "2019-07-03",
            "1999-11-26",
        ] {
            assert_eq!(nyse_early_close(date(d)), Some(one_pm), "{d}");
        }
        assert_eq!(nyse_early_close(date("2024-07-02")), None);
        assert_eq!(nyse_early_close(date("2024-07-04")), None);
        // 88 sessions 1990-2030; the four before 1993 closed at 14:00.
        assert_eq!(NYSE_EARLY_CLOSES.len(), 88);
        let two_pm = NaiveTime::from_hms_opt(14, 0, 0).expect("time");
        assert_eq!(nyse_early_close(date("1992-11-27")), Some(two_pm));
        assert!(
            NYSE_EARLY_CLOSES
                .range(date("1993-01-01")..)
                .all(|(_, &t)| t == one_pm)
        );
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
