//! The "Done when" on the five real files: each imports, each defect is reported exactly.

use grodt_data::calendar::{BarLabel, Calendar, SessionCalendar};
use grodt_data::catalog::TimeRange;
use grodt_data::error::DataError;
use grodt_data::fixed::{format_fixed, parse_fixed};
use grodt_data::import::{ColumnMapping, CsvOptions};
use grodt_data::time::TimeFormat;
use grodt_data::validate::{FindingCode, GapVerdict, SourceOrder};

use crate::{catalog, request, sample, ts};

fn coinbase_options() -> CsvOptions {
    CsvOptions {
        mapping: ColumnMapping {
            timestamp: "date".into(),
            volume: "volume_btc".into(),
            ..ColumnMapping::default()
        },
        skip_lines: 1,
        time_format: TimeFormat::Pattern("%Y-%m-%d %I-%p".into()),
        ..CsvOptions::default()
    }
}

#[test]
fn spy_is_clean_and_holidays_are_the_only_weekday_gaps() {
    let (_d, cat) = catalog();
    // No tolerance: every weekday hole must be a day the NYSE was closed.
    let req = request(
        "spy_1d_1998-2021.csv",
        ("quantconnect", "SPY", "1d"),
        Calendar::UsEquityDaily,
    );
    let rec = cat.import_csv(&req).unwrap();
    let q = &rec.quality;
    assert_eq!(rec.rows, 5849);
    assert_eq!((rec.price_scale, rec.volume_scale), (4, 0));
    assert!(q.finding(FindingCode::ReturnOutlier).is_none());
    assert!(q.finding(FindingCode::Unsorted).is_none());
    assert!(
        q.finding(FindingCode::OutsideSession).is_none(),
        "no weekend bars, no bar on a day the NYSE was closed"
    );
    // The 210 weekday holes (207 one-day holidays, 2001-09-11..14, 2007-01-01..02
    // with President Ford's day of mourning, 2012-10-29..30 for Hurricane Sandy)
    // are all closures the calendar knows: none is reported or merely tolerated.
    assert!(
        q.finding(FindingCode::Gap).is_none(),
        "{:?}",
        q.finding(FindingCode::Gap)
    );
    assert_eq!((q.stats.gaps_reported, q.stats.gaps_tolerated), (0, 0));
    // Every hole between bars (weekends, holidays, closures, merged where
    // they touch) is a closure.
    assert_eq!(q.stats.gaps_closed, 1_267);
    // A missing trading day is still a gap: drop 2001-09-17, the reopening.
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../data/samples/spy_1d_1998-2021.csv"),
    )
    .unwrap();
    let holed: String = text
        .lines()
        .filter(|l| !l.starts_with("2001-09-17"))
        .map(|l| format!("{l}\n"))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spy_holed.csv");
    std::fs::write(&path, holed).unwrap();
    let mut r = req.clone();
    r.path = path;
    r.replace = true;
    let q = cat.import_csv(&r).unwrap().quality;
    assert_eq!(q.stats.gaps_reported, 1);
    let g = q
        .gaps
        .iter()
        .find(|g| g.verdict == GapVerdict::Reported)
        .unwrap();
    assert_eq!(
        (g.from, g.to, g.expected_missing),
        (ts("2001-09-10T00:00:00Z"), ts("2001-09-18T00:00:00Z"), 1)
    );
    assert_eq!(rec.partitions.len(), 24);
    assert_eq!(rec.first_ts, ts("1998-01-02T00:00:00Z"));
    assert_eq!(rec.last_ts, ts("2021-03-31T00:00:00Z"));
}

#[test]
fn aapl_split_days_are_flagged_as_outliers() {
    let (_d, cat) = catalog();
    let rec = cat
        .import_csv(&request(
            "aapl_1d_1998-2021_unadjusted.csv",
            ("quantconnect", "AAPL", "1d"),
            Calendar::UsEquityDaily,
        ))
        .unwrap();
    let f = rec.quality.finding(FindingCode::ReturnOutlier).unwrap();
    // 2000-06-21 (2:1), 2000-09-29 (the real -52% day), 2005-02-28 (2:1), 2014-06-09 (7:1), 2020-08-31 (4:1).
    assert_eq!(f.rows, vec![624, 694, 1800, 4135, 5704]);
    assert!(
        f.message
            .contains("line 4135 2014-06-09T00:00:00Z return -85.5%"),
        "{}",
        f.message
    );
    assert_eq!(rec.quality.stats.outliers, 5);
}

#[test]
fn btcusdt_is_complete_around_the_clock() {
    let (_d, cat) = catalog();
    let rec = cat
        .import_csv(&request(
            "btcusdt_1m_2025-05-20_2025-08-18.csv",
            ("binance", "BTCUSDT", "1m"),
            Calendar::AlwaysOpen,
        ))
        .unwrap();
    let q = &rec.quality;
    assert_eq!(rec.rows, 130_708);
    assert_eq!(q.stats.timeframe_ns, 60_000_000_000);
    assert!(q.gaps.is_empty());
    assert!(q.finding(FindingCode::ZeroVolume).is_none());
    assert!(q.finding(FindingCode::DuplicateBars).is_none());
    // Minute returns are heavy-tailed: six moves beyond z=20, none of them a data fault.
    assert_eq!(
        q.finding(FindingCode::ReturnOutlier).unwrap().rows,
        vec![47366, 74719, 74721, 79424, 124592, 124596]
    );
    let bars = cat.load(&rec.id, TimeRange::ALL).unwrap();
    let (i, high) = bars.high.iter().enumerate().max_by_key(|x| *x.1).unwrap();
    assert_eq!(format_fixed(*high, bars.price_scale), "124474");
    assert!(bars.ts[i] >= ts("2025-08-14T00:00:00Z") && bars.ts[i] < ts("2025-08-15T00:00:00Z"));
}

#[test]
fn coinbase_raw_banner_order_and_repeated_bars() {
    let (_d, cat) = catalog();
    let mut req = request(
        "coinbase_btcusd_1h_raw.csv",
        ("coinbase", "BTCUSD", "1h"),
        Calendar::AlwaysOpen,
    );
    // Without skipping the banner, the header is the banner and has no "date" column.
    req.csv = CsvOptions {
        skip_lines: 0,
        ..coinbase_options()
    };
    let e = cat.import_csv(&req).unwrap_err();
    assert!(e.to_string().contains("\"date\""), "{e}");

    req.csv = coinbase_options();
    let rec = cat.import_csv(&req).unwrap();
    let q = &rec.quality;
    assert_eq!(rec.rows, 20_111);
    assert_eq!(q.stats.source_order, SourceOrder::Descending);
    assert!(q.stats.sorted_on_import);
    assert_eq!(
        q.finding(FindingCode::Unsorted).unwrap().rows,
        vec![16901, 16903, 16905, 16907, 16909]
    );
    assert_eq!(
        q.finding(FindingCode::DuplicateBars).unwrap().rows,
        (16900..=16909).collect::<Vec<u64>>()
    );
    assert!(q.finding(FindingCode::DuplicateTimestamp).is_none());
    assert_eq!(
        q.finding(FindingCode::ZeroVolume).unwrap().rows,
        vec![
            2853, 4535, 7090, 10389, 10390, 10391, 10392, 10393, 10394, 10395, 10396, 10397, 10398,
            10399, 10400, 10401, 10402, 10403, 12009, 12129, 12608, 14957, 14958, 14959, 16182,
            16445, 18054, 18055
        ]
    );
    assert!(q.gaps.is_empty(), "hourly series is complete once sorted");
    assert_eq!(rec.first_ts, ts("2017-07-01T11:00:00Z"));
    assert_eq!(rec.last_ts, ts("2019-10-17T09:00:00Z"));
}

#[test]
fn cme_session_gaps_are_accepted_by_the_session_calendar_only() {
    let file = "6eh4_cme_1m_2024-01.csv";
    let (_d, cat) = catalog();
    let v = |calendar, label, tol| {
        let mut r = request(file, ("cme", "6EH4", "1m"), calendar);
        r.validation.label = label;
        r.validation.gap_tolerance_bars = tol;
        r.replace = true;
        cat.import_csv(&r).unwrap().quality
    };
    let always = v(Calendar::AlwaysOpen, BarLabel::Close, 0);
    assert_eq!(always.gaps.len(), 375);
    assert_eq!(always.stats.gaps_reported, 375);
    assert_eq!(always.finding(FindingCode::Gap).unwrap().rows.len(), 375);

    let globex = || Calendar::Sessions(SessionCalendar::cme_globex_fx());
    // Strict: the 22 closures (18 daily breaks, 4 weekends) are accepted; 353 holes of
    // 1-6 minutes inside sessions are minutes without trades.
    let strict = v(globex(), BarLabel::Close, 0);
    assert_eq!(
        (strict.stats.gaps_closed, strict.stats.gaps_reported),
        (22, 353)
    );
    assert!(strict.finding(FindingCode::OutsideSession).is_none());
    assert_eq!(
        strict
            .gaps
            .iter()
            .filter(|g| g.verdict == GapVerdict::Reported)
            .map(|g| g.expected_missing)
            .max(),
        Some(6)
    );
    // Tolerating up to 6 no-trade minutes, all 375 holes are accepted.
    let session = v(globex(), BarLabel::Close, 6);
    assert_eq!(
        (
            session.stats.gaps_closed,
            session.stats.gaps_tolerated,
            session.stats.gaps_reported
        ),
        (22, 353, 0)
    );
    assert!(session.finding(FindingCode::Gap).is_none());
    // Read with open-time labels, the 16:00 bars would fall into the daily break.
    let wrong = v(globex(), BarLabel::Open, 6);
    assert_eq!(
        wrong
            .finding(FindingCode::OutsideSession)
            .unwrap()
            .rows
            .len(),
        22
    );
    assert_eq!(
        wrong.finding(FindingCode::OutsideSession).unwrap().rows[0],
        1367
    );
}

/// The sample spans an early close of exchange_calendars' CME calendar,
/// Martin Luther King Day 2024 (12:00 US Central = 18:00Z), and shows that
/// 6E traded through it to 16:00 local (CME's FX holiday hours): the equity
/// calendar calls those 155 real bars outside the session, which is why the
/// FX calendar does not observe the early closes. Cut as an equity
/// product's file would be (nothing between the halt and the 17:00 reopen),
/// the hole after the early close is a closure on the equity calendar and a
/// reported gap of 240 bars on the FX one.
#[test]
fn cme_early_close_on_martin_luther_king_day_2024() {
    let file = "6eh4_cme_1m_2024-01.csv";
    let (_d, cat) = catalog();
    let v = |path: &std::path::Path, calendar| {
        let mut r = request(file, ("cme", "6EH4", "1m"), calendar);
        r.path = path.to_path_buf();
        r.validation.label = BarLabel::Close;
        r.replace = true;
        cat.import_csv(&r).unwrap().quality
    };
    let equity = || Calendar::Sessions(SessionCalendar::cme_globex_equity());
    let fx = || Calendar::Sessions(SessionCalendar::cme_globex_fx());
    let whole = sample(file);
    let traded = v(&whole, equity());
    let outside = &traded.finding(FindingCode::OutsideSession).unwrap().rows;
    assert_eq!(outside.len(), 155);
    // Lines 13377..13531: the bars stamped 18:01Z..22:00Z on 2024-01-15.
    assert_eq!((outside[0], outside[154]), (13_377, 13_531));
    assert!(
        v(&whole, fx())
            .finding(FindingCode::OutsideSession)
            .is_none()
    );

    let text = std::fs::read_to_string(&whole).unwrap();
    let (from, to) = ("2024-01-15T18:00:00Z", "2024-01-15T23:00:00Z");
    let cut: String = text
        .lines()
        .filter(|l| {
            let stamp = l.split(',').next().unwrap_or_default();
            !(stamp > from && stamp < to)
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("6eh4_cut_at_the_early_close.csv");
    std::fs::write(&path, cut).unwrap();
    let hole = |q: &grodt_data::validate::QualityReport| {
        q.gaps
            .iter()
            .find(|g| g.from == ts(from))
            .map(|g| (g.to, g.expected_missing, g.verdict))
    };
    let eq = v(&path, equity());
    assert!(eq.finding(FindingCode::OutsideSession).is_none());
    assert_eq!(
        hole(&eq),
        Some((ts("2024-01-15T23:01:00Z"), 0, GapVerdict::Closed))
    );
    let fx = v(&path, fx());
    assert_eq!(
        hole(&fx),
        Some((ts("2024-01-15T23:01:00Z"), 240, GapVerdict::Reported))
    );
}

/// A US equity one-minute file over Independence Day week 2024 (written
/// here: the samples hold no intraday equity data), on the NYSE session:
/// nights, the weekend, the holiday and the hours after the 13:00 early
/// close are closures; one minute dropped mid-session is the only reported
/// gap; a pre-market bar is outside the session.
#[test]
fn nyse_session_tells_holidays_and_early_closes_from_missing_minutes() {
    const MIN: i64 = 60_000_000_000;
    // (UTC open of the session's first bar, of its close), EDT = UTC-4.
    let days = [
        ("2024-07-01T13:30:00Z", "2024-07-01T20:00:00Z"),
        ("2024-07-02T13:30:00Z", "2024-07-02T20:00:00Z"),
        ("2024-07-03T13:30:00Z", "2024-07-03T17:00:00Z"),
        ("2024-07-05T13:30:00Z", "2024-07-05T20:00:00Z"),
        ("2024-07-08T13:30:00Z", "2024-07-08T20:00:00Z"),
    ];
    let dropped = ts("2024-07-02T15:00:00Z");
    let premarket = ts("2024-07-05T12:00:00Z");
    let mut stamps: Vec<i64> = days
        .iter()
        .flat_map(|&(o, c)| (ts(o)..ts(c)).step_by(MIN as usize))
        .filter(|&t| t != dropped)
        .collect();
    stamps.push(premarket);
    stamps.sort_unstable();
    let mut text = String::from("timestamp,open,high,low,close,volume\n");
    for t in &stamps {
        let stamp = chrono::DateTime::from_timestamp_nanos(*t).format("%Y-%m-%dT%H:%M:%SZ");
        text.push_str(&format!("{stamp},545.10,545.20,545.00,545.15,1200\n"));
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spy_1m_2024-07-01_2024-07-08.csv");
    std::fs::write(&path, text).unwrap();
    let (_d, cat) = catalog();
    let mut r = request(
        "spy_1d_1998-2021.csv",
        ("synthetic", "SPY", "1m"),
        Calendar::Sessions(SessionCalendar::nyse()),
    );
    r.path = path;
    let q = cat.import_csv(&r).unwrap().quality;
    let reported: Vec<_> = q
        .gaps
        .iter()
        .filter(|g| g.verdict == GapVerdict::Reported)
        .map(|g| (g.from, g.to, g.expected_missing))
        .collect();
    assert_eq!(
        reported,
        vec![(dropped - MIN, dropped + MIN, 1)],
        "{:?}",
        q.gaps
    );
    let closed = |from: &str| {
        q.gaps
            .iter()
            .find(|g| g.from == ts(from))
            .map(|g| (g.expected_missing, g.verdict))
    };
    // The early close to the next session (over the holiday): nothing expected.
    assert_eq!(
        closed("2024-07-03T16:59:00Z"),
        Some((0, GapVerdict::Closed))
    );
    // Overnight and over the weekend.
    assert_eq!(
        closed("2024-07-01T19:59:00Z"),
        Some((0, GapVerdict::Closed))
    );
    assert_eq!(
        closed("2024-07-05T19:59:00Z"),
        Some((0, GapVerdict::Closed))
    );
    let outside = &q.finding(FindingCode::OutsideSession).unwrap().rows;
    let line = 2 + stamps.iter().position(|&t| t == premarket).unwrap();
    assert_eq!(outside, &vec![line as u64]);
}

#[test]
fn export_gives_back_every_digit_of_all_five_files() {
    let (dir, cat) = catalog();
    let normalised = [
        ("spy_1d_1998-2021.csv", "SPY", "1d"),
        ("aapl_1d_1998-2021_unadjusted.csv", "AAPL", "1d"),
        ("btcusdt_1m_2025-05-20_2025-08-18.csv", "BTCUSDT", "1m"),
        ("6eh4_cme_1m_2024-01.csv", "6EH4", "1m"),
    ];
    for (file, symbol, tf) in normalised {
        let rec = cat
            .import_csv(&request(file, ("s", symbol, tf), Calendar::AlwaysOpen))
            .unwrap();
        let out = dir.path().join(format!("{symbol}.csv"));
        assert_eq!(
            cat.export_csv(&rec.id, TimeRange::ALL, &out).unwrap(),
            rec.rows
        );
        let a = std::fs::read(sample(file)).unwrap();
        let b = std::fs::read(&out).unwrap();
        assert!(a == b, "{file}: export differs from the source");
    }
    // The raw file: sorted ascending on import, so compare row by row, timestamp matched.
    let mut req = request(
        "coinbase_btcusd_1h_raw.csv",
        ("coinbase", "BTCUSD", "1h"),
        Calendar::AlwaysOpen,
    );
    req.csv = coinbase_options();
    let rec = cat.import_csv(&req).unwrap();
    let out = dir.path().join("coinbase.csv");
    cat.export_csv(&rec.id, TimeRange::ALL, &out).unwrap();
    let src = std::fs::read_to_string(sample("coinbase_btcusd_1h_raw.csv")).unwrap();
    let mut src_rows: Vec<(i64, Vec<String>)> = src
        .lines()
        .skip(2)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            let t = grodt_data::time::parse_timestamp(
                f[0],
                &TimeFormat::Pattern("%Y-%m-%d %I-%p".into()),
                grodt_data::time::Zone::UTC,
            )
            .unwrap();
            (t, f[2..7].iter().map(|s| s.to_string()).collect())
        })
        .collect();
    src_rows.sort_by_key(|r| r.0);
    let exported: Vec<String> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .skip(1)
        .map(str::to_owned)
        .collect();
    assert_eq!(exported.len(), src_rows.len());
    for (line, (t, fields)) in exported.iter().zip(&src_rows) {
        let e: Vec<&str> = line.split(',').collect();
        assert_eq!(ts(e[0]), *t);
        assert_eq!(&e[1..5], &fields[..4], "prices digit for digit");
        // Volumes like "61.20" come back as "61.2": the same number.
        assert_eq!(
            parse_fixed(e[5], rec.volume_scale),
            parse_fixed(&fields[4], rec.volume_scale)
        );
    }
}

#[test]
fn excess_precision_is_rejected_with_the_line() {
    let (_d, cat) = catalog();
    let mut req = request(
        "spy_1d_1998-2021.csv",
        ("s", "SPY", "1d"),
        Calendar::UsEquityDaily,
    );
    req.csv.price_scale = grodt_data::import::Scale::Fixed(2);
    match cat.import_csv(&req).unwrap_err() {
        DataError::Rejected { report, .. } => {
            let f = report.finding(FindingCode::Unparsable).unwrap();
            assert!(f.message.starts_with("43 line(s)"), "{}", f.message);
            assert!(
                f.message
                    .contains("line 3944: low \"164.135\": 3 decimals exceed the scale of 2"),
                "{}",
                f.message
            );
            assert_eq!(f.rows.len(), 43);
            assert_eq!(f.rows[0], 3944);
        }
        e => panic!("unexpected {e}"),
    }
    assert!(cat.list().unwrap().is_empty());
}

#[test]
fn aggregation_of_real_minutes() {
    use grodt_data::aggregate::{Alignment, Timeframe, aggregate};
    use grodt_data::import::{MissingPolicy, read_csv};
    use grodt_data::validate::{ValidationOptions, validate};

    let load = |file: &str| {
        let raw = read_csv(&sample(file), &CsvOptions::default()).unwrap();
        validate(
            raw,
            MissingPolicy::Fail,
            &ValidationOptions::new(crate::now()),
        )
        .bars
    };
    let btc = load("btcusdt_1m_2025-05-20_2025-08-18.csv");
    let total: i64 = btc.volume.iter().sum();
    for tf in Timeframe::ALL {
        let a = aggregate(&btc, tf, Alignment::Utc).unwrap();
        assert_eq!(a.bars.volume.iter().sum::<i64>(), total, "{tf:?}");
        assert_eq!(a.bars.high.iter().max(), btc.high.iter().max(), "{tf:?}");
        assert!(a.gaps.is_empty(), "{tf:?}");
    }
    let m5 = aggregate(&btc, Timeframe::M5, Alignment::Utc).unwrap().bars;
    let m15 = aggregate(&btc, Timeframe::M15, Alignment::Utc)
        .unwrap()
        .bars;
    assert_eq!(
        aggregate(&m5, Timeframe::M15, Alignment::Utc).unwrap().bars,
        m15
    );
    assert_eq!(
        aggregate(&btc, Timeframe::D1, Alignment::Utc)
            .unwrap()
            .bars
            .len(),
        91
    );
    assert_eq!(
        aggregate(&btc, Timeframe::Mo1, Alignment::Utc)
            .unwrap()
            .bars
            .len(),
        4
    );

    // CME minutes are labelled by their close; shift to open labels, then cut session days at
    // 17:00 Chicago (23:00 UTC in January): 23 sessions, the 4 weekends as gaps of 2 windows.
    let mut cme = load("6eh4_cme_1m_2024-01.csv");
    for t in &mut cme.ts {
        *t -= 60_000_000_000;
    }
    let d = aggregate(
        &cme,
        Timeframe::D1,
        Alignment::SessionOffset(23 * 3_600_000_000_000),
    )
    .unwrap();
    assert_eq!(d.bars.len(), 23);
    assert_eq!(d.bars.ts[0], ts("2024-01-01T23:00:00Z"));
    assert_eq!(d.counts[0], 1366);
    assert_eq!(
        (
            d.bars.open[0],
            d.bars.high[0],
            d.bars.close[0],
            d.bars.volume[0]
        ),
        (
            parse_fixed("1.1076", 5).unwrap(),
            parse_fixed("1.10785", 5).unwrap(),
            parse_fixed("1.09735", 5).unwrap(),
            202_411
        )
    );
    assert_eq!(
        d.gaps.iter().map(|g| g.2).collect::<Vec<_>>(),
        vec![2, 2, 2, 2]
    );
    assert_eq!(d.gaps[0].0, ts("2024-01-04T23:00:00Z"));
}

/// The SPY file rewritten in other dialects (delimiters, no header, banners, date
/// formats, zones, reversed order) imports to exactly the same content.
#[test]
fn dialects_of_the_same_file_give_the_same_bars() {
    use grodt_data::import::{ColumnRef, Delimiter, MissingPolicy, Scale, parse_csv};
    use grodt_data::time::Zone;
    use grodt_data::validate::{ValidationOptions, validate};

    let src = std::fs::read_to_string(sample("spy_1d_1998-2021.csv")).unwrap();
    let rows: Vec<Vec<&str>> = src
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    let import = |text: String, o: CsvOptions| {
        let raw = parse_csv(text.as_bytes(), "variant", &o).unwrap();
        let v = validate(raw, o.missing, &ValidationOptions::new(crate::now()));
        assert!(!v.report.has_errors(), "{:?}", v.report.findings);
        v.bars
    };
    let reference = import(src.clone(), CsvOptions::default());
    let by_index = ColumnMapping {
        timestamp: ColumnRef::Index(0),
        open: ColumnRef::Index(1),
        high: ColumnRef::Index(2),
        low: ColumnRef::Index(3),
        close: ColumnRef::Index(4),
        volume: ColumnRef::Index(5),
    };
    let date = |r: &Vec<&str>| chrono::NaiveDate::parse_from_str(&r[0][..10], "%Y-%m-%d").unwrap();

    // Tab, header in another column order, epoch milliseconds.
    let mut t = String::from("Volume\tClose\tTime\tOpen\tHigh\tLow\n");
    for r in &rows {
        t.push_str(&format!(
            "{}\t{}\t{}\t{}\t{}\t{}\n",
            r[5],
            r[4],
            ts(r[0]) / 1_000_000,
            r[1],
            r[2],
            r[3]
        ));
    }
    let o = CsvOptions {
        mapping: ColumnMapping {
            timestamp: "time".into(),
            ..ColumnMapping::default()
        },
        time_format: TimeFormat::EpochMillis,
        ..CsvOptions::default()
    };
    assert_eq!(import(t, o), reference);

    // Semicolon, no header, MM/DD/YYYY, fixed scales, newest first.
    let mut t = String::new();
    for r in rows.iter().rev() {
        t.push_str(&format!(
            "{};{};{};{};{};{}\r\n",
            date(r).format("%m/%d/%Y"),
            r[1],
            r[2],
            r[3],
            r[4],
            r[5]
        ));
    }
    let o = CsvOptions {
        mapping: by_index.clone(),
        has_header: false,
        time_format: TimeFormat::UsDate,
        price_scale: Scale::Fixed(4),
        volume_scale: Scale::Fixed(0),
        ..CsvOptions::default()
    };
    assert_eq!(import(t, o), reference);

    // Pipe, two banner lines, a custom pattern, quoted cells.
    let mut t = String::from("exported by a vendor\n\nday|o|h|l|c|v\n");
    for r in &rows {
        t.push_str(&format!(
            "\"{}\"|{}|{}|{}|{}|\"{}\"\n",
            date(r).format("%d.%m.%Y"),
            r[1],
            r[2],
            r[3],
            r[4],
            r[5]
        ));
    }
    let o = CsvOptions {
        mapping: by_index.clone(),
        skip_lines: 2,
        delimiter: Delimiter::Auto,
        time_format: TimeFormat::Pattern("%d.%m.%Y".into()),
        ..CsvOptions::default()
    };
    assert_eq!(import(t, o), reference);

    // Local time at UTC+01:00 written as YYYY-MM-DD HH:MM, and as ISO 8601 with the offset.
    let mut a = String::from("timestamp,open,high,low,close,volume\n");
    let mut b = a.clone();
    for r in &rows {
        a.push_str(&format!(
            "{} 01:00,{},{},{},{},{}\n",
            date(r),
            r[1],
            r[2],
            r[3],
            r[4],
            r[5]
        ));
        b.push_str(&format!(
            "{}T01:00:00+01:00,{},{},{},{},{}\n",
            date(r),
            r[1],
            r[2],
            r[3],
            r[4],
            r[5]
        ));
    }
    let o = CsvOptions {
        time_format: TimeFormat::DateTimeMinutes,
        zone: Zone::Fixed(3600),
        ..CsvOptions::default()
    };
    assert_eq!(import(a, o), reference);
    assert_eq!(import(b, CsvOptions::default()), reference);

    // Missing cells: skipped or forward-filled, never silently zero.
    let t = src.replacen(
        "1998-01-05T00:00:00Z,97.84,98.44,96.78,97.75,4030800",
        "1998-01-05T00:00:00Z,,,,,",
        1,
    );
    let skip = import(
        t.clone(),
        CsvOptions {
            missing: MissingPolicy::Skip,
            ..CsvOptions::default()
        },
    );
    assert_eq!(skip.len(), reference.len() - 1);
    let filled = import(
        t,
        CsvOptions {
            missing: MissingPolicy::ForwardFill,
            ..CsvOptions::default()
        },
    );
    assert_eq!(filled.len(), reference.len());
    assert_eq!(
        (filled.open[1], filled.close[1], filled.volume[1]),
        (reference.close[0], reference.close[0], 0)
    );
}

/// The plausibility check against the catalog: a second source of SPY whose
/// prices came in a hundred times too small (a divisor applied twice) is
/// consistent in itself, yet a power of ten away from the SPY the catalog
/// holds, and is flagged naming that dataset; a faithful second source and
/// another symbol are not.
#[test]
fn a_second_source_a_power_of_ten_off_the_catalog_is_flagged() {
    let (_d, cat) = catalog();
    cat.import_csv(&request(
        "spy_1d_1998-2021.csv",
        ("quantconnect", "SPY", "1d"),
        Calendar::UsEquityDaily,
    ))
    .unwrap();
    let mut cents = request(
        "spy_1d_1998-2021.csv",
        ("vendor", "SPY", "1d"),
        Calendar::UsEquityDaily,
    );
    cents.csv.price_divisor = 100;
    let q = cat.import_csv(&cents).unwrap().quality;
    let f = q
        .finding(FindingCode::PriceScaleJump)
        .expect("flagged against the catalog");
    assert!(
        f.message.contains("quantconnect/SPY/1d") && f.message.contains("x10^-2"),
        "{}",
        f.message
    );
    assert_eq!(f.rows, vec![2], "the first bar's line");
    // The same file as it is: no finding, from the catalog or within the file.
    let mut same = request(
        "spy_1d_1998-2021.csv",
        ("vendor", "SPY", "1d"),
        Calendar::UsEquityDaily,
    );
    same.replace = true;
    let q = cat.import_csv(&same).unwrap().quality;
    assert!(q.finding(FindingCode::PriceScaleJump).is_none());
    // Another symbol at another price level is not compared.
    let q = cat
        .import_csv(&request(
            "aapl_1d_1998-2021_unadjusted.csv",
            ("quantconnect", "AAPL", "1d"),
            Calendar::UsEquityDaily,
        ))
        .unwrap()
        .quality;
    assert!(q.finding(FindingCode::PriceScaleJump).is_none());
}
