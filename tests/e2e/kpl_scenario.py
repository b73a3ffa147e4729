"""The KPL scenario of the README, at full length: `python -m tests.e2e.kpl_scenario`.

Rows of the sample (passes with their own source ids, so every row is new),
aggregated by AWS's aws-kinesis-agg about 210 rows to a Kinesis record
(grouped by destination shard, explicit hash key inside the shard), put
into the local stack's 2-shard stream and drained by the real KCL consumer
once per flush size. Each run is judged from the stores themselves; the last
line on stdout is the JSON of every run.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from local_stack import census
from retail_stream import aws, logs
from tests.conftest import running_stack
from tests.e2e.harness import Pipeline
from tests.e2e.test_foreign_producers import Sinks, put_with_aws_kinesis_agg, rows
from tests.support.waiting import wait_until


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.e2e.kpl_scenario", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--flush", type=int, nargs="+", default=[1, 100, 20_000], help="FLUSH_MAX_RECORDS of each run")
    parser.add_argument("--aggregate-bytes", type=int, default=51_200)
    args = parser.parse_args(argv)
    logs.configure("WARNING", service="kpl-scenario")  # stdout is for the JSON line alone
    results = []
    with tempfile.TemporaryDirectory(prefix="kpl-scenario-") as tmp, running_stack(Path(tmp) / "stack") as stack:
        pipeline = Pipeline(stack, Path(tmp), FLUSH_MAX_AGE_SECONDS="2")
        kinesis = aws.client("kinesis", pipeline.settings)
        for flush in args.flush:
            pipeline.env["FLUSH_MAX_RECORDS"] = str(flush)
            pipeline.start_consumer()
            try:
                sources, records, passes = [], [], 0
                while len(records) < args.rows:
                    sources.append(f"kpl-{flush}-{passes}.csv")
                    records += rows(sources[-1])
                    passes += 1
                records = records[:args.rows]
                started = time.monotonic()
                aggregates = put_with_aws_kinesis_agg(kinesis, pipeline.settings.stream_name, records,
                                                      args.aggregate_bytes)
                wait_until(pipeline.drained, 3600, "every shard checkpointed at its last user record",
                           every=1)
                seconds = time.monotonic() - started
                sinks = Sinks(pipeline.settings, sources)
                dynamodb, warehouse, raw = sinks.dynamodb(), sinks.warehouse(), sinks.raw_zone()
                expected = {r.event_id for r in records}
                result = {
                    "flush_max_records": flush, "rows": len(records), "aggregates": aggregates,
                    "rows_per_aggregate": round(len(records) / aggregates, 1),
                    "dynamodb": len(dynamodb), "dynamodb_distinct": len(set(dynamodb)),
                    "warehouse": len(warehouse), "warehouse_distinct": len(set(warehouse)),
                    "raw_zone": len(raw), "raw_zone_distinct": len(set(raw)),
                    "lost": len(expected - (set(dynamodb) & set(warehouse) & set(raw))),
                    "checkpoints": {k: list(v) for k, v in census.checkpoints(pipeline.settings).items()},
                    "drain_seconds": round(seconds, 1),
                }
                print(json.dumps(result), file=sys.stderr, flush=True)
                results.append(result)
            finally:
                pipeline.stop_consumer()
    print(json.dumps(results))
    clean = all(r["lost"] == 0 and r["dynamodb"] == r["dynamodb_distinct"] == r["rows"]
                and r["warehouse"] == r["warehouse_distinct"] == r["rows"] and r["raw_zone_distinct"] == r["rows"]
                for r in results)
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
