"""moto's DynamoDB, made to keep every item written at once, as DynamoDB does.

Applied by the emulator (local_stack/emulator.py) before it serves; written
against moto 5.2 and refusing to start when what it replaces has moved.

moto keeps a table's items as {partition key: {sort key: item}} in a
defaultdict. Its keys hash and compare in Python, so two of Hypercorn's
threads putting the first items of one partition at once can each make a
new inner dict, and the second replaces the first with the first's item in
it: a BatchWriteItem answered "processed" whose item is gone. The chaos
suite lost 4 of 5,958 rows so (DynamoDB only; the raw zone and the
warehouse held them), with three shard processes writing 8 calls each at
once. One lock serialises the DynamoDB backend's item reads and writes.
"""

from __future__ import annotations

import threading

from local_stack.serialising import serialised

_LOCK = threading.RLock()
# DynamoDB backend calls that read or change a table's items (batch and
# transaction calls call the single-item ones, hence a re-entrant lock).
_SERIALISED = (
    "create_table", "delete_table", "update_table", "describe_table", "put_item", "get_item", "update_item",
    "delete_item", "query", "scan", "batch_get_item", "batch_write_item", "transact_get_items",
    "transact_write_items",
)


def apply() -> None:
    """Patch moto's DynamoDB backend in this process. Idempotent."""
    from moto.dynamodb.models import DynamoDBBackend

    if getattr(DynamoDBBackend, "_retail_stream_fidelity", False):
        return
    missing = [name for name in _SERIALISED if not callable(getattr(DynamoDBBackend, name, None))]
    if missing:
        raise RuntimeError(f"moto's DynamoDBBackend has no {missing}: local_stack/dynamodb_fidelity.py needs a look")
    for name in _SERIALISED:
        setattr(DynamoDBBackend, name, serialised(getattr(DynamoDBBackend, name), _LOCK))
    DynamoDBBackend._retail_stream_fidelity = True
