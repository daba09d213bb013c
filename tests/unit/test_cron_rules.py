"""Vixie cron's rules, the extended syntax (L, W, #, H, ?) and what is refused, checked
against hand-computed instants."""

from __future__ import annotations

import itertools
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from scheduler import api
from scheduler.core.cron import next_cron_fire, next_fire_times, parse_cron, validate_timezone
from scheduler.core.cron_describe import describe
from scheduler.core.definitions import ScheduleDefinition
from scheduler.core.exceptions import InvalidScheduleError


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[arg-type, misc]


def local(tz: str, times: list[datetime]) -> list[str]:
    return [t.astimezone(ZoneInfo(tz)).strftime("%m-%d %H:%M%z") for t in times]


def fires(expr: str, after: datetime, count: int, tz: str = "UTC", **kw: str) -> list[str]:
    return local(tz, next_fire_times(expr, tz, after, count, **kw))


# --- item 1: the wildcard rule ---------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "wildcard"),
    [
        ("7 * * * *", True),
        ("* 1-6 * * *", True),
        ("*/15 2 * * *", True),
        ("0 */2 * * *", True),
        ("5,*/20 3 * * *", True),
        ("30 2 * * *", False),
        ("0 1-6 * * *", False),
        ("0,30 2,3 * * *", False),
        ("* 30 2 * * *", False),
    ],
)
def test_wildcard_means_a_star_in_the_minute_or_hour_field(expr: str, wildcard: bool) -> None:
    assert parse_cron(expr).wildcard is wildcard


def test_new_york_hourly_does_not_fire_at_the_gap_end() -> None:
    # 2026-03-08: 02:00 EST jumps to 03:00 EDT; 02:07 does not exist and is not replaced
    assert fires("7 * * * *", utc(2026, 3, 8, 5), 3, "America/New_York") == [
        "03-08 00:07-0500",
        "03-08 01:07-0500",
        "03-08 03:07-0400",
    ]


def test_new_york_every_minute_in_hours_1_to_6_fires_in_both_fall_back_passes() -> None:
    # 2026-11-01: 02:00 EDT falls back to 01:00 EST
    assert fires("* 1-6 * * *", utc(2026, 11, 1, 5, 58), 4, "America/New_York") == [
        "11-01 01:59-0400",
        "11-01 01:00-0500",
        "11-01 01:01-0500",
        "11-01 01:02-0500",
    ]
    times = next_fire_times("* 1-6 * * *", "America/New_York", utc(2026, 11, 1, 4, 59), 120)
    assert len(set(times)) == 120
    assert all(b - a == timedelta(minutes=1) for a, b in itertools.pairwise(times))


def test_new_york_fixed_hours_fire_once_in_a_repeated_hour() -> None:
    assert fires("0 1-3 * * *", utc(2026, 11, 1, 4), 3, "America/New_York") == [
        "11-01 01:00-0400",
        "11-01 02:00-0500",
        "11-01 03:00-0500",
    ]


def test_new_york_wildcard_hour_with_fixed_minute_fires_twice_in_the_repeated_hour() -> None:
    assert fires("30 * * * *", utc(2026, 11, 1, 5), 3, "America/New_York") == [
        "11-01 01:30-0400",
        "11-01 01:30-0500",
        "11-01 02:30-0500",
    ]


def test_berlin_spring_forward_wildcard_in_the_gap_hour_is_skipped_fixed_fires_at_gap_end() -> None:
    # 2026-03-29: 02:00 CET jumps to 03:00 CEST
    assert fires("*/20 2 * * *", utc(2026, 3, 28, 12), 3, "Europe/Berlin") == [
        "03-30 02:00+0200",
        "03-30 02:20+0200",
        "03-30 02:40+0200",
    ]
    assert fires("0,20,40 2 * * *", utc(2026, 3, 28, 12), 2, "Europe/Berlin") == [
        "03-29 03:00+0200",
        "03-30 02:00+0200",
    ]


def test_berlin_fall_back_both_passes_for_wildcard_one_for_fixed() -> None:
    # 2026-10-25: 03:00 CEST falls back to 02:00 CET
    assert fires("*/30 * * * *", utc(2026, 10, 24, 23, 45), 4, "Europe/Berlin") == [
        "10-25 02:00+0200",
        "10-25 02:30+0200",
        "10-25 02:00+0100",
        "10-25 02:30+0100",
    ]
    assert fires("30 2 * * *", utc(2026, 10, 24, 12), 2, "Europe/Berlin") == [
        "10-25 02:30+0200",
        "10-26 02:30+0100",
    ]


def test_lord_howe_half_hour_shifts_for_wildcard_jobs() -> None:
    # spring: 2026-10-04 02:00 +10:30 jumps to 02:30 +11; wildcard walls 02:00-02:29 skipped
    assert fires("*/10 2 * * *", utc(2026, 10, 3, 15, 0), 3, "Australia/Lord_Howe") == [
        "10-04 02:30+1100",
        "10-04 02:40+1100",
        "10-04 02:50+1100",
    ]
    # fall back: 2026-04-05 02:00 +11 falls back to 01:30 +10:30; from inside the first pass
    assert fires("*/10 * * * *", utc(2026, 4, 4, 14, 45), 5, "Australia/Lord_Howe") == [
        "04-05 01:50+1100",
        "04-05 01:30+1030",
        "04-05 01:40+1030",
        "04-05 01:50+1030",
        "04-05 02:00+1030",
    ]
    # a fixed time in the gap fires once at the gap end
    assert fires("10,20 2 * * *", utc(2026, 10, 3, 6), 2, "Australia/Lord_Howe") == [
        "10-04 02:30+1100",
        "10-05 02:10+1100",
    ]


def test_starting_inside_the_second_pass_continues_in_the_second_pass() -> None:
    after = datetime(2026, 11, 1, 1, 10, tzinfo=ZoneInfo("America/New_York"), fold=1)
    assert fires("*/15 * * * *", after, 2, "America/New_York") == [
        "11-01 01:15-0500",
        "11-01 01:30-0500",
    ]


# --- item 2: one-element weekday ranges --------------------------------------------------


@pytest.mark.parametrize("dow", ["7-7", "0-0", "Sun-Sun", "sun", "7", "SUN-SUN"])
def test_one_element_weekday_ranges_mean_sunday_only(dow: str) -> None:
    assert fires(f"0 0 * * {dow}", utc(2026, 1, 1), 3) == [
        "01-04 00:00+0000",
        "01-11 00:00+0000",
        "01-18 00:00+0000",
    ]


def test_weekday_ranges_ending_on_sunday() -> None:
    assert fires("0 0 * * 5-7", utc(2026, 1, 1), 3) == fires("0 0 * * Fri-Sun", utc(2026, 1, 1), 3)
    assert fires("0 0 * * 5-7", utc(2026, 1, 1), 3) == [
        "01-02 00:00+0000",
        "01-03 00:00+0000",
        "01-04 00:00+0000",
    ]


# --- item 3: never fires, reversed ranges -----------------------------------------------


@pytest.mark.parametrize(
    ("expr", "reason"),
    [
        ("0 0 30 2 *", "never fires: February has no 30th"),
        ("* * 31 4 *", "never fires: April has no 31st"),
        ("0 0 31 2,4,6 *", "never fires: none of February, April, June has a 31st"),
        ("0 5-1 * * *", "reversed range 5-1 in the hour field"),
        ("0 0 * 12-1 *", "reversed range 12-1 in the month field"),
        ("*/0 * * * *", "step /0 in the minute field"),
    ],
)
def test_never_firing_and_reversed_are_refused_in_one_line(expr: str, reason: str) -> None:
    with pytest.raises(InvalidScheduleError) as info:
        parse_cron(expr)
    message = str(info.value)
    assert reason in message
    assert "\n" not in message
    assert "croniter" not in message.lower()
    assert "Croniter" not in message


def test_celery_day_match_can_make_a_never_firing_expression() -> None:
    # day 29 of February on a Monday exists (2044), so it fires; day 31 of April never does
    assert fires("0 0 29 2 1", utc(2026, 1, 1), 1, day_match="all") == ["02-29 00:00+0000"]
    with pytest.raises(InvalidScheduleError, match="never fires"):
        parse_cron("0 0 31 4 1", day_match="all")
    # POSIX any: a restricted weekday alone still fires
    assert fires("0 0 31 4 1", utc(2026, 1, 1), 1) == ["04-06 00:00+0000"]


# --- item 4: R refused, H hashed from the name --------------------------------------------


@pytest.mark.parametrize("expr", ["R * * * *", "0 R * * *", "R(0-30) * * * *"])
def test_random_r_is_refused(expr: str) -> None:
    with pytest.raises(InvalidScheduleError, match="R \\(random\\) is not supported"):
        parse_cron(expr, "x")


def test_h_is_stable_and_spreads_across_the_hour() -> None:
    minutes = [parse_cron("H * * * *", f"job-{i}").minutes[0] for i in range(1000)]
    # stable: the same name gives the same minute (blake2b, not Python's salted hash())
    assert parse_cron("H * * * *", "job-7").minutes[0] == minutes[7] == 33
    counts = [minutes.count(m) for m in range(60)]
    assert min(counts) >= 5
    assert max(counts) <= 30


def test_h_forms() -> None:
    spec = parse_cron("H(0-29)/10 H(9-17) H * H", "nightly")
    assert all(0 <= m <= 29 for m in spec.minutes)
    assert len(spec.minutes) == 3
    assert [b - a for a, b in zip(spec.minutes, spec.minutes[1:], strict=False)] == [10, 10]
    assert 9 <= spec.hours[0] <= 17
    assert 1 <= min(spec.days.dom) <= 28
    assert 0 <= min(spec.days.dow) <= 6
    with pytest.raises(InvalidScheduleError, match="give the name"):
        parse_cron("H * * * *")


# --- item 5: L, LW, nW, #, dL, ?, year fields -------------------------------------------


def test_last_day_last_weekday_and_nearest_weekday() -> None:
    assert fires("0 0 L * *", utc(2026, 1, 1), 3) == [
        "01-31 00:00+0000",
        "02-28 00:00+0000",
        "03-31 00:00+0000",
    ]
    # 2026-01-31 is a Saturday, 2026-05-31 a Sunday
    assert fires("0 0 LW 1,5 *", utc(2026, 1, 1), 2) == ["01-30 00:00+0000", "05-29 00:00+0000"]
    # 2026-02-15 is a Sunday -> Monday 16th; 2026-08-01 is a Saturday -> Monday 3rd (same month)
    assert fires("0 0 15W 2 *", utc(2026, 1, 1), 1) == ["02-16 00:00+0000"]
    assert fires("0 0 1W 8 *", utc(2026, 1, 1), 1) == ["08-03 00:00+0000"]
    # 2026-11-14 is a Saturday -> Friday 13th
    assert fires("0 0 14W 11 *", utc(2026, 1, 1), 1) == ["11-13 00:00+0000"]


def test_nth_and_last_weekday_of_the_month() -> None:
    assert fires("0 0 ? * 1#2", utc(2026, 1, 1), 2) == ["01-12 00:00+0000", "02-09 00:00+0000"]
    assert fires("0 0 * * 5L", utc(2026, 1, 1), 2) == ["01-30 00:00+0000", "02-27 00:00+0000"]
    assert fires("0 0 * * FRIL", utc(2026, 1, 1), 1) == ["01-30 00:00+0000"]
    # a list mixing # with plain days: the second Monday, and every Friday
    assert fires("0 0 ? * 1#2,5", utc(2026, 1, 1), 4) == [
        "01-02 00:00+0000",
        "01-09 00:00+0000",
        "01-12 00:00+0000",
        "01-16 00:00+0000",
    ]
    # a fifth Thursday exists in January 2026 (29th), not in February
    assert fires("0 0 * * 4#5", utc(2026, 1, 1), 2) == ["01-29 00:00+0000", "04-30 00:00+0000"]


def test_question_mark_is_any_and_year_fields_are_refused() -> None:
    assert fires("0 12 ? * *", utc(2026, 1, 1), 1) == fires("0 12 * * *", utc(2026, 1, 1), 1)
    for expr in ("0 0 1 1 * 2027", "0 0 0 1 1 * 2027", "0 0 12 * * 2026"):
        with pytest.raises(InvalidScheduleError, match="year fields are not supported"):
            parse_cron(expr)
    with pytest.raises(InvalidScheduleError, match="only allowed in the day fields"):
        parse_cron("? * * * *")
    with pytest.raises(InvalidScheduleError, match="5L for the last Friday"):
        parse_cron("0 0 ? * L")


# --- day_match (Celery's crontab) ---------------------------------------------------------


def test_day_match_any_is_posix_or_all_is_celery_and() -> None:
    year = next_fire_times("0 0 1-7 * mon", "UTC", utc(2026, 12, 31), 200)
    in_2027 = [t for t in year if t.year == 2027]
    assert (
        len(next_fire_times("0 0 1-7 * mon", "UTC", utc(2026, 12, 31), 12, day_match="all")) == 12
    )
    celery = next_fire_times("0 0 1-7 * mon", "UTC", utc(2026, 12, 31), 13, day_match="all")
    assert len([t for t in celery if t.year == 2027]) == 12
    assert len(in_2027) < 200
    posix_2027 = [
        t for t in next_fire_times("0 0 1-7 * mon", "UTC", utc(2026, 12, 31), 130) if t.year == 2027
    ]
    assert len(posix_2027) == 124
    # a star in either day field: both readings agree (Vixie ANDs then)
    assert fires("0 0 */2 * mon", utc(2026, 1, 1), 3) == fires(
        "0 0 */2 * mon", utc(2026, 1, 1), 3, day_match="all"
    )
    with pytest.raises(InvalidScheduleError, match="use any or all"):
        parse_cron("0 0 * * *", day_match="some")


# --- item 6: descriptions and DST notes ---------------------------------------------------


def test_descriptions_of_cron_interval_and_one_off() -> None:
    now = utc(2026, 12, 1)
    assert describe(cron="30 1 * * *", now=now).text == "At 01:30"
    assert describe(cron="0 0 * * 7-7", now=now).text == "At 00:00, only on Sunday"
    assert describe(cron="0 0 ? * 1#2,5", now=now).text == (
        "At 00:00, on the second Monday of the month and every Friday"
    )
    assert describe(cron="0 0 1-7 * mon", day_match="all", now=now).text.endswith(
        "(both the day of month and the day of week must match)"
    )
    assert describe(cron="H H * * *", name="backup", now=now).text == "At 15:02"
    assert describe(interval_seconds=Decimal(300)).text == "every 5 minutes"
    assert describe(interval_seconds=Decimal("5400")).text == "every 1 hour 30 minutes"
    assert describe(interval_seconds=Decimal("0.25")).text == "every 250 milliseconds"
    assert describe(run_at=now, timezone="Europe/Paris").text == (
        "once, at 2026-12-01 01:00:00 Europe/Paris (+0100)"
    )


def test_dst_notes_for_the_coming_year() -> None:
    now = utc(2026, 12, 1)
    assert describe(cron="30 2 * * *", timezone="Europe/Berlin", now=now).dst_notes == (
        "2027-03-28: 02:30 does not exist; fires at 03:00",
        "2027-10-31: 02:30 occurs twice; fires once (the first, +0200)",
    )
    assert describe(cron="7 * * * *", timezone="America/New_York", now=now).dst_notes == (
        "2027-03-14: 02:07 does not exist; skipped",
        "2027-11-07: 01:07 occurs twice; fires in both passes",
    )
    assert describe(cron="15 2 * * *", timezone="Australia/Lord_Howe", now=now).dst_notes == (
        "2027-10-03: 02:15 does not exist; fires at 02:30",
    )
    assert describe(cron="0 12 * * *", timezone="Europe/Berlin", now=now).dst_notes == ()


def test_api_describe_takes_a_definition_or_an_expression() -> None:
    definition = ScheduleDefinition(
        name="report", task="demo.noop", cron="30 2 * * *", timezone="Europe/Berlin"
    )
    described = api.describe(definition, now=utc(2026, 12, 1))
    assert described.text == "At 02:30"
    assert "2027-03-28: 02:30 does not exist; fires at 03:00" in str(described)
    assert api.describe("*/5 * * * *").text == "Every 5 minutes"


# --- speed: the beat computes next fire times in its hot path -----------------------------


def test_next_fire_is_fast_and_parsing_is_cached() -> None:
    spec = parse_cron("*/5 9-17 * * mon-fri")
    assert parse_cron("*/5 9-17 * * mon-fri") is spec
    zone = validate_timezone("Europe/Berlin")
    after = utc(2026, 1, 1)
    started = time.perf_counter()
    for _ in range(2000):
        after = next_cron_fire(spec, zone, after)
    per_call_us = (time.perf_counter() - started) / 2000 * 1e6
    assert per_call_us < 1000


def test_ranges_to_the_last_day_and_l_before_a_weekday() -> None:
    assert fires("0 0 29-L * *", utc(2026, 2, 1), 3) == [
        "03-29 00:00+0000",
        "03-30 00:00+0000",
        "03-31 00:00+0000",
    ]
    assert fires("35 0 1-L/8 1 *", utc(2026, 1, 2), 3) == [
        "01-09 00:35+0000",
        "01-17 00:35+0000",
        "01-25 00:35+0000",
    ]
    assert fires("0 0 * * L5", utc(2026, 1, 1), 1) == fires("0 0 * * 5L", utc(2026, 1, 1), 1)
    assert fires("0 0 * * 7-mon", utc(2026, 1, 1), 2) == ["01-04 00:00+0000", "01-05 00:00+0000"]


def test_day_match_round_trips_through_yaml_and_is_validated() -> None:
    from scheduler.core.definitions import from_mapping, to_mapping, validate

    definition = from_mapping(
        {"name": "m", "task": "demo.noop", "cron": "0 9 1-7 * mon", "day_match": "all"}
    )
    assert to_mapping(validate(definition))["day_match"] == "all"
    assert "day_match" not in to_mapping(from_mapping({"name": "p", "task": "t", "cron": "@daily"}))
    with pytest.raises(InvalidScheduleError, match="day_match 'some': use any or all"):
        validate(from_mapping({"name": "x", "task": "t", "cron": "@daily", "day_match": "some"}))
    with pytest.raises(InvalidScheduleError, match="give the name"):
        parse_cron("H * * * *")
    # validation hashes H from the definition's own name
    validate(from_mapping({"name": "hashed", "task": "t", "cron": "H H * * *"}))
