"""Writes the exchange closures grodt-data's calendars embed, from
exchange_calendars (a maintained data source: regular holidays by rule,
ad hoc closures such as 2001-09-11..14 and 2012-10-29..30 by date), so that
the gap check tells a closed market from missing data.

- libs/data/calendars/xnys.txt: NYSE (XNYS) weekdays without a session.
- libs/data/calendars/xnys_early_closes.txt: NYSE (XNYS) sessions that close
  early, as `date close` with the close in America/New_York local time
  (13:00 so far: the day before Independence Day, the day after
  Thanksgiving, Christmas Eve, ...).
- libs/data/calendars/cmes.txt: CME Globex (CMES) weekdays without a session,
  by session label (the date a session closes on; it opens at 17:00 US
  Central the day before).
- libs/data/calendars/cmes_early_closes.txt: CME Globex (CMES) sessions that
  close early, as `label close` with the close in the exchange's zone
  (America/Chicago local time, e.g. `2024-01-15 12:00`). exchange_calendars
  keeps one CME calendar with "the most conservative hours": these are the
  equity and interest-rate halts; FX, for one, trades to 16:00 on the Monday
  holidays.

Usage: scripts/calendars/update (makes the venv, runs this, shows the diff).
"""

import sys

import exchange_calendars as xc
import pandas as pd

FIRST, LAST = "1990-01-01", "2030-12-31"


def closed(name, first):
    cal = xc.get_calendar(name, start=first, end=LAST)
    weekdays = pd.bdate_range(first, LAST)
    return weekdays.difference(cal.sessions)


def write(path, name, first, what):
    days = closed(name, first)
    with open(path, "w") as f:
        f.write(
            f"# {what}, {first}..{LAST}: {len(days)} dates.\n"
            f"# From exchange_calendars {xc.__version__} ({name}) by scripts/calendars/generate.py;\n"
            "# regenerate with scripts/calendars/update, do not edit by hand.\n"
        )
        for d in days:
            f.write(d.strftime("%Y-%m-%d") + "\n")


def write_early_closes(path, name, first, what):
    cal = xc.get_calendar(name, start=first, end=LAST)
    closes = cal.schedule.loc[cal.early_closes, "close"].dt.tz_convert(cal.tz)
    with open(path, "w") as f:
        f.write(
            f"# {what}, {first}..{LAST}: {len(closes)} sessions.\n"
            f"# Session label, then the close in {cal.tz.key} local time.\n"
            f"# From exchange_calendars {xc.__version__} ({name}) by scripts/calendars/generate.py;\n"
            "# regenerate with scripts/calendars/update, do not edit by hand.\n"
        )
        for label, close in closes.items():
            f.write(f"{label.strftime('%Y-%m-%d')} {close.strftime('%H:%M')}\n")


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "libs/data/calendars"
    write(f"{out}/xnys.txt", "XNYS", FIRST, "NYSE weekdays without a session")
    write_early_closes(
        f"{out}/xnys_early_closes.txt",
        "XNYS",
        FIRST,
        "NYSE sessions that close early",
    )
    write(
        f"{out}/cmes.txt",
        "CMES",
        "1998-01-01",
        "CME Globex weekdays without a session (by session label)",
    )
    write_early_closes(
        f"{out}/cmes_early_closes.txt",
        "CMES",
        "1998-01-01",
        "CME Globex sessions that close early (equity and interest-rate hours)",
    )


if __name__ == "__main__":
    main()
