"""batching: PutRecords limits of 500 records, 5 MiB per call and 1 MiB per record."""

from __future__ import annotations

import pytest

from producer.batching import (
    MAX_BATCH_BYTES,
    MAX_RECORD_BYTES,
    BatchBuilder,
    Entry,
    UnsendableEntry,
    check_entry,
    pack,
)

MIB = 1024 * 1024


def entry(size: int, key: str = "c17850") -> Entry:
    """An entry of exactly `size` bytes, partition key included."""
    return Entry(b"x" * (size - len(key.encode())), key)


def test_size_counts_data_and_the_partition_keys_utf8_bytes():
    assert Entry(b"abc", "c1").size == 5
    assert Entry(b"abc", "iØ").size == 6  # Ø is two bytes in UTF-8


@pytest.mark.parametrize(
    "count, sizes",
    [(1, [1]), (500, [500]), (501, [500, 1]), (1001, [500, 500, 1])],
)
def test_at_most_500_records_a_batch(count, sizes):
    entries = [Entry(str(i).encode(), "k") for i in range(count)]
    batches, refused = pack(entries)
    assert [len(b) for b in batches] == sizes
    assert [e for b in batches for e in b] == entries  # order kept
    assert refused == []


def test_at_most_5_mib_a_batch_counting_partition_keys():
    one_mib = entry(MIB)
    batches, _ = pack([one_mib] * 11)
    assert [len(b) for b in batches] == [5, 5, 1]
    assert all(sum(e.size for e in b) <= MAX_BATCH_BYTES for b in batches)


def test_a_batch_filled_to_exactly_5_mib_takes_nothing_more():
    builder = BatchBuilder()
    for _ in range(5):
        assert builder.add(entry(MIB)) is None
    closed = builder.add(entry(10))
    assert closed is not None and sum(e.size for e in closed) == MAX_BATCH_BYTES
    assert len(builder) == 1


def test_the_key_tips_a_record_over_1_mib():
    check_entry(entry(MAX_RECORD_BYTES))  # exactly 1 MiB: fine
    with pytest.raises(UnsendableEntry, match=f"{MAX_RECORD_BYTES + 1} bytes"):
        check_entry(Entry(b"x" * MAX_RECORD_BYTES, "k"))


def test_an_oversize_record_is_refused_alone_and_the_others_still_batch():
    small, big = entry(100), entry(MIB + 1)
    batches, refused = pack([small, big, small])
    assert batches == [[small, small]]
    assert [(e, reason.startswith("record is 1048577 bytes")) for e, reason in refused] == [(big, True)]


def test_a_refused_entry_leaves_the_pending_batch_unchanged():
    builder = BatchBuilder(max_records=2)
    builder.add(entry(10))
    with pytest.raises(UnsendableEntry):
        builder.add(Entry(b"x", ""))
    assert len(builder) == 1
    assert builder.flush() == [entry(10)]
    assert builder.flush() is None


@pytest.mark.parametrize("key, ok", [("", False), ("k" * 256, True), ("k" * 257, False), ("ØØ", True)])
def test_partition_keys_must_be_1_to_256_characters(key, ok):
    if ok:
        check_entry(Entry(b"x", key))
    else:
        with pytest.raises(UnsendableEntry, match="partition key"):
            check_entry(Entry(b"x", key))


def test_a_smaller_batch_size_is_honoured_and_checked():
    batches, _ = pack([entry(10)] * 7, max_records=3)
    assert [len(b) for b in batches] == [3, 3, 1]
    with pytest.raises(ValueError):
        BatchBuilder(max_records=501)
    with pytest.raises(ValueError):
        BatchBuilder(max_bytes=MAX_BATCH_BYTES + 1)


def test_a_record_larger_than_a_whole_small_batch_is_unsendable():
    batches, refused = pack([entry(200)], max_bytes=100)
    assert batches == [] and len(refused) == 1
