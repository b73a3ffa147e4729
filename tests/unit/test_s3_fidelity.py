"""local_stack/s3_fidelity.py: an object read while its ETag is first worked
out comes back whole (moto alone returns it empty now and then)."""

from __future__ import annotations

import sys
import threading

from moto.s3.models import FakeKey

from local_stack import s3_fidelity


def short_reads(rounds: int) -> int:
    """Reads of a 2,000-byte object that came back shorter, while another
    thread keeps working out its ETag afresh."""
    short = 0
    for _ in range(rounds):
        key = FakeKey("k", b"x" * 2000, account_id="123456789012", region_name="us-east-1")
        sizes: list[int] = []

        def read() -> None:
            sizes.extend(len(key.value) for _ in range(200))

        def etag() -> None:
            for _ in range(200):
                key._etag = None  # as a key just stored, before its PutObject answered
                assert key.etag

        threads = [threading.Thread(target=read), threading.Thread(target=etag)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        short += sum(size != 2000 for size in sizes)
    return short


def test_an_object_read_while_its_etag_is_worked_out_is_whole():
    s3_fidelity.apply()
    s3_fidelity.apply()  # twice is once
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads switch as often as they can: moto alone loses ~1 read in 800
    try:
        assert short_reads(300) == 0
    finally:
        sys.setswitchinterval(interval)
