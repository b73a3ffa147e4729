"""The e2e suites' rig: a consumer with the real KCL daemon on a local stack, and the producer."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from local_stack import census
from retail_stream import aws
from retail_stream.settings import Settings
from tests.support.ports import free_ports


class Pipeline:
    """A stack's consumer (`python -m consumer`, the real KCL daemon) and producer runs against it."""

    def __init__(self, stack, tmp: Path, **env: str):
        consumer_port, self.producer_port = free_ports(2)
        self.env = {**os.environ, **stack.environment(), "FLUSH_MAX_AGE_SECONDS": "2", "KCL_WORKER_ID": "e2e",
                    "METRICS_PORT": str(consumer_port), **env}
        self.settings = Settings.from_env(self.env)
        self.tmp = tmp
        self.consumer = None

    def produce(self, *args: str) -> dict:
        out = subprocess.run(
            [sys.executable, "-m", "producer", *args], env={**self.env, "METRICS_PORT": str(self.producer_port)},
            cwd=self.tmp,
            stdout=subprocess.PIPE, text=True, check=True,
        )
        return json.loads(out.stdout.strip().splitlines()[-1])

    def start_consumer(self):
        self.log = (self.tmp / "consumer.log").open("w")
        self.consumer = subprocess.Popen(
            [sys.executable, "-m", "consumer"], env=self.env, stdout=self.log, stderr=self.log
        )

    def stop_consumer(self) -> int:
        self.consumer.send_signal(signal.SIGTERM)
        return self.consumer.wait(60)

    def checkpoints(self) -> dict[str, str]:
        client = aws.client("dynamodb", self.settings)
        try:
            items = client.scan(TableName=self.settings.kcl_application_name)["Items"]
        except client.exceptions.ResourceNotFoundException:
            return {}  # the KCL has not created its lease table yet
        return {i["leaseKey"]["S"]: i.get("checkpoint", {}).get("S") for i in items}

    def last_sequences(self) -> dict[str, str]:
        return {
            shard: records[-1]["SequenceNumber"]
            for shard, records in census.stream_records(self.settings).items()
            if records
        }

    def drained(self) -> bool:
        """Every shard checkpointed at its last delivered position (sub-sequence included)."""
        return bool(self.last_sequences()) and census.drained(self.settings)
