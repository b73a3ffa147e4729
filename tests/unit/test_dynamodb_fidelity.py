"""local_stack/dynamodb_fidelity.py: items put at once into a new partition
are all kept (moto alone loses some: about 2% here)."""

from __future__ import annotations

import sys
import threading

from moto.dynamodb.models import DynamoDBBackend

from local_stack import dynamodb_fidelity

WRITERS, PARTITIONS = 8, 200


def items_kept() -> int:
    """Items a table holds after WRITERS threads each put one item into each
    of PARTITIONS new partitions, all starting each partition together."""
    backend = DynamoDBBackend("us-east-1", "123456789012")
    backend.create_table(
        "t", schema=[{"AttributeName": "p", "KeyType": "HASH"}, {"AttributeName": "s", "KeyType": "RANGE"}],
        attr=[{"AttributeName": "p", "AttributeType": "S"}, {"AttributeName": "s", "AttributeType": "S"}],
        throughput=None, global_indexes=None, indexes=None, streams=None, billing_mode="PAY_PER_REQUEST",
        sse_specification=None, tags=None, deletion_protection_enabled=False, warm_throughput=None)
    together = threading.Barrier(WRITERS)

    def write(writer: int) -> None:
        for partition in range(PARTITIONS):
            together.wait()
            backend.put_item("t", {"p": {"S": f"p{partition}"}, "s": {"S": f"s{writer}"}})

    threads = [threading.Thread(target=write, args=(n,)) for n in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(len(partition) for partition in backend.get_table("t").items.values())


def test_items_put_at_once_into_a_new_partition_are_all_kept():
    dynamodb_fidelity.apply()
    dynamodb_fidelity.apply()  # twice is once
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        assert items_kept() == WRITERS * PARTITIONS
    finally:
        sys.setswitchinterval(interval)
