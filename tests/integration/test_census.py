"""The census's DynamoDB count against the emulator: by key, so it follows
the rows asked about, and next to it the table's own count."""

import dataclasses
import uuid

import pytest

from consumer.sinks.dynamodb import write_requests
from local_stack import census
from local_stack.provision import ensure_table
from producer.csv_source import valid_records
from retail_stream import aws
from bench.data import SAMPLE

pytestmark = pytest.mark.integration


def test_dynamodb_counts_the_keys_asked_about_and_the_table_counts_them_all(settings):
    own = dataclasses.replace(settings, dynamodb_table=f"census-{uuid.uuid4().hex[:8]}")
    ensure_table(own)
    client = aws.client("dynamodb", own)
    try:
        records = valid_records(SAMPLE, "census")[:250]  # three BatchGetItem calls' worth
        for requests in write_requests(records):
            client.batch_write_item(RequestItems={own.dynamodb_table: requests})
        keys = [(r.invoice_no, r.event_id) for r in records]
        assert census.dynamodb_items(own, keys) == 250
        assert census.dynamodb_items(own, keys + keys[:10]) == 250  # asked twice, counted once
        absent = [("536365", "0" * 32), ("999999", records[0].event_id)]
        assert census.dynamodb_items(own, keys[:40] + absent) == 40
        client.delete_item(TableName=own.dynamodb_table,
                           Key={"invoice_no": {"S": keys[7][0]}, "event_id": {"S": keys[7][1]}})
        assert census.dynamodb_items(own, keys) == 249
        assert census.dynamodb_table_items(own) == 249
    finally:
        client.delete_table(TableName=own.dynamodb_table)
