"""The cost of a business-time due instant: ``instant_after`` on cn-office, 10,000 calls (docs/benchmarks.md)."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from flows.language.calendar import Calendar, instant_after

OFFICE = {"timezone": "Asia/Shanghai", "holidays": {"country": "CN"},
          "hours": dict.fromkeys(("mon", "tue", "wed", "thu", "fri"), ["09:00-12:00", "13:00-18:00"])}


def main(calls: int = 10_000) -> None:
    calendar = Calendar.model_validate(OFFICE)
    start = datetime(2026, 2, 13, 17, tzinfo=ZoneInfo("Asia/Shanghai"))  # into the Spring Festival
    cases = {"48h (two working days)": timedelta(hours=48), "4h (working hours)": timedelta(hours=4),
             "15d (three working weeks)": timedelta(days=15)}
    instant_after(start, timedelta(hours=1), calendar=calendar)  # the year's holidays read once
    for name, duration in cases.items():
        for speed, label in ((1.0, "speed 1"), (3600.0, "speed 3600")):
            began = time.perf_counter()
            for i in range(calls):
                instant_after(start + timedelta(minutes=i % 600), duration, calendar=calendar, speed=speed,
                              anchor=start)
            took = time.perf_counter() - began
            print(f"calendar: {name:28s} {label:10s} {calls} calls {took * 1000:7.1f} ms  "
                  f"{took / calls * 1e6:6.1f} µs/call")
    began = time.perf_counter()
    for _ in range(calls):
        instant_after(start, timedelta(hours=48), speed=1.0)
    took = time.perf_counter() - began
    print(f"calendar: wall time (no calendar)          {calls} calls {took * 1000:7.1f} ms  "
          f"{took / calls * 1e6:6.1f} µs/call")


if __name__ == "__main__":
    main()
