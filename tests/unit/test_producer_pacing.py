"""pacing: the token bucket and the InvoiceDate timeline, on a fake clock."""

from __future__ import annotations

import datetime as dt

import pytest

from producer.pacing import RateLimiter, TimelinePacer, default_burst
from tests.support.clocks import FakeClock


@pytest.mark.parametrize("rate, burst", [(0.5, 1), (10, 1), (200, 20), (5000, 500), (1e6, 500)])
def test_default_burst_is_a_tenth_of_a_second_within_1_and_500(rate, burst):
    assert default_burst(rate) == burst


def test_the_bucket_starts_full_then_holds_the_rate():
    clock = FakeClock()
    limiter = RateLimiter(10, burst=5, clock=clock, sleep=clock.sleep)
    for _ in range(5):
        assert limiter.acquire() == 0
    assert clock.sleeps == []
    for _ in range(95):
        limiter.acquire()
    assert clock.now - 1000.0 == pytest.approx(9.5)  # the 95 records past the burst at 10/s


def test_batches_wait_for_their_whole_size():
    clock = FakeClock()
    limiter = RateLimiter(100, burst=20, clock=clock, sleep=clock.sleep)
    limiter.acquire(20)
    assert limiter.acquire(20) == pytest.approx(0.2)
    clock.now += 0.1  # time spent sending refills half the bucket
    assert limiter.acquire(20) == pytest.approx(0.1)


def test_delay_looks_without_taking():
    clock = FakeClock()
    limiter = RateLimiter(10, burst=2, clock=clock, sleep=clock.sleep)
    assert limiter.delay(2) == 0
    assert limiter.delay(2) == 0
    limiter.acquire(2)
    assert limiter.delay(1) == pytest.approx(0.1)


def test_an_early_wakeup_is_owed_to_the_next_wait():
    clock = FakeClock()
    limiter = RateLimiter(10, burst=1, clock=clock, sleep=lambda seconds: None)  # returns at once
    limiter.acquire()
    assert limiter.acquire() == pytest.approx(0.1)
    assert limiter.acquire() == pytest.approx(0.2)  # the debt of the short sleep carries over


def test_requests_beyond_the_burst_and_bad_rates_are_refused():
    with pytest.raises(ValueError):
        RateLimiter(10, burst=5).acquire(6)
    with pytest.raises(ValueError):
        RateLimiter(0)


def test_the_timeline_follows_invoice_dates_sped_up():
    clock = FakeClock()
    pacer = TimelinePacer(3600, clock=clock, sleep=clock.sleep)
    start = dt.datetime(2010, 12, 1, 8, 26)
    assert pacer.wait(start) == 0  # the first date anchors the timeline
    assert pacer.delay(start + dt.timedelta(hours=2)) == pytest.approx(2.0)
    clock.now += 0.5
    assert pacer.wait(start + dt.timedelta(hours=1)) == pytest.approx(0.5)
    assert clock.now - 1000.0 == pytest.approx(1.0)
    assert pacer.wait(start + dt.timedelta(minutes=10)) == 0  # out of order: due already, never waits back


def test_restart_anchors_a_new_timeline():
    clock = FakeClock()
    pacer = TimelinePacer(60, clock=clock, sleep=clock.sleep)
    pacer.wait(dt.datetime(2011, 1, 1))
    pacer.restart()
    assert pacer.wait(dt.datetime(2011, 6, 1)) == 0
    assert pacer.delay(dt.datetime(2011, 6, 1, 0, 1)) == pytest.approx(1.0)


def test_a_speedup_must_be_positive():
    with pytest.raises(ValueError):
        TimelinePacer(0)
