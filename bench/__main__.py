"""`make bench`: the service against the naive way, in one run, on a
throwaway local stack (its own folder and free ports).

    producer   100,000 rows replayed (PutRecords, 500 a call)  vs  one PutRecord per row
               and as KPL aggregates (--aggregate)             vs  the same replay without
    consumer   draining them: KCL, batches, all three sinks,   vs  one PutItem + PutObject + INSERT
               checkpointed                                        per record
    processor  CPU per record (decode, validate, every sink's serialization), peak memory
    latency    put -> readable in DynamoDB, p50 / p99, against the flush age
    warehouse  seconds per load into tables of 100k, 1M and 10M rows (bench/warehouse.py)
    cost       the vCPU and the monthly cost a shard that CPU per record implies (bench/cost.py)

The naive baselines run on a few thousand rows (at their pace, 100,000 would
take the better part of an hour); every figure is a rate, so the ratios
compare like with like. The table goes to stderr and, as the last line on
stdout, the same figures as one JSON object.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import os
import platform
import subprocess  # nosec B404: argv lists of programs we name, never a shell
import sys
import tempfile
from pathlib import Path

from bench import consumer, cost, data, latency, processor, producer, steps, warehouse
from local_stack import census
from local_stack.services import consumer_running
from local_stack.ports import free_port
from local_stack.provision import ensure_stream
from local_stack.stack import throwaway_stack
from local_stack.stopping import stops_clean
from retail_stream import logs
from retail_stream.settings import Settings

NAIVE_STREAM = "bench-naive"
REPEAT_STREAM = "bench-replay-2"
AGGREGATED_STREAMS = ("bench-aggregated-1", "bench-aggregated-2")
# The consumer's flush limits are its defaults but for the age: 5 s instead
# of 60, so the drain's last partial batches are not a minute's wait.
FLUSH_MAX_AGE_SECONDS = 5
PROCESSOR_RUNS = 5  # CPU time per record: the best of this many (the build machines are shared VMs: noisy)


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor() or "unknown CPU")
    return f"{model}, {os.cpu_count()} cores, Python {platform.python_version()}"


@stops_clean
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="rows the producer replays and the consumer drains")
    parser.add_argument("--naive-rows", type=int, default=2_000, help="rows each naive baseline handles")
    parser.add_argument("--latency-rate", type=int, default=200, help="records/s during the latency run")
    parser.add_argument("--latency-seconds", type=float, default=30)
    args = parser.parse_args(argv)
    logs.configure("WARNING", log_format=Settings.from_env().log_format, service="bench")

    figures: dict = {"machine": machine(), "rows": args.rows, "naive_rows": args.naive_rows}
    say("starting a local stack")
    with throwaway_stack("bench") as stack:  # this process's own clients (baselines, census) use it too
        say(f"local stack up in {stack.state_dir}")
        env = {**os.environ, "FLUSH_MAX_AGE_SECONDS": str(FLUSH_MAX_AGE_SECONDS),
               "KCL_WORKER_ID": "bench", "METRICS_PORT": str(free_port()),
               "LOG_LEVEL": os.environ.get("LOG_LEVEL", "WARNING")}
        settings = Settings.from_env(env)
        with tempfile.TemporaryDirectory(prefix="retail-bench-") as tmp:
            figures.update(run_benches(args, settings, env, Path(tmp), stack.state_dir, stack.emulator.pid()))
    print_table(figures)
    print(json.dumps(figures), flush=True)
    return 0


def run_benches(args, settings: Settings, env: dict, tmp: Path, state_dir: Path, emulator_pid: int | None) -> dict:
    figures: dict = {}
    csv = data.write_csv(tmp / "bench.csv", args.rows)

    # Each producer figure is the better of two runs, taken turn about, so a
    # noisy moment on the machine does not decide the ratio.
    naive_settings = dataclasses.replace(settings, stream_name=NAIVE_STREAM)
    ensure_stream(naive_settings, shard_count=1)
    for stream in (REPEAT_STREAM, *AGGREGATED_STREAMS):
        ensure_stream(dataclasses.replace(settings, stream_name=stream), shard_count=2)
    batched_runs, naive_runs, aggregated_runs = [], [], []
    for turn, stream in enumerate((settings.stream_name, REPEAT_STREAM), 1):  # the consumer drains the first
        say(f"producer, run {turn} of 2: replaying {args.rows} rows with PutRecords")
        batched_runs.append(producer.replay(csv, {**env, "KINESIS_STREAM_NAME": stream}, tmp / "rejects.jsonl"))
        say(f"producer, run {turn} of 2: replaying {args.rows} rows as KPL aggregates (--aggregate)")
        aggregated_runs.append(producer.replay(csv, {**env, "KINESIS_STREAM_NAME": AGGREGATED_STREAMS[turn - 1]},
                                               tmp / "rejects.jsonl", "--aggregate"))
        say(f"producer, run {turn} of 2: the naive way, {args.naive_rows} rows, one PutRecord each")
        naive_runs.append(producer.naive_replay(csv, settings, NAIVE_STREAM, args.naive_rows))
    batched = max(batched_runs, key=lambda run: run.per_second)
    aggregated = max(aggregated_runs, key=lambda run: run.per_second)
    naive_put = max(naive_runs, key=lambda run: run.per_second)
    plain_records = census.stream_records(dataclasses.replace(settings, stream_name=REPEAT_STREAM))
    kpl_records = census.stream_records(dataclasses.replace(settings, stream_name=AGGREGATED_STREAMS[1]))
    figures.update(
        producer_records_per_s=round(batched.per_second), producer_naive_records_per_s=round(naive_put.per_second),
        producer_speedup=round(batched.per_second / naive_put.per_second, 1),
        producer_aggregated_records_per_s=round(aggregated.per_second),
        producer_aggregated_speedup=round(aggregated.per_second / batched.per_second, 1),
        puts_per_100k=round(batched.calls_per_100k, 1),
        puts_per_100k_aggregated=round(aggregated.calls_per_100k, 1),
        kinesis_records_per_100k_aggregated=round(
            sum(map(len, kpl_records.values())) * 100_000 / aggregated.records, 1),
        payload_units_per_100k=round(
            sum(map(producer.payload_units, plain_records.values())) * 100_000 / batched.records),
        payload_units_per_100k_aggregated=round(
            sum(map(producer.payload_units, kpl_records.values())) * 100_000 / aggregated.records),
    )

    say(f"consumer: the naive way, {naive_put.records} records, PutItem + PutObject + INSERT each")
    naive_get = consumer.naive_consume(settings, NAIVE_STREAM, args.naive_rows)
    say("consumer: what the DynamoDB endpoint itself takes, 16 BatchWriteItem calls in flight")
    ceiling = consumer.dynamodb_ceiling(settings, data.valid_records(csv, "ceiling")[:20_000],
                                        emulator_pid=emulator_pid)
    say(f"consumer: draining {batched_runs[0].records} records through the KCL into every sink")
    with consumer_running(env, state_dir / "consumer.log") as running:
        drained = consumer.drain(settings, running, emulator_pid)
        figures.update(
            consumer_records_per_s=round(drained.throughput.per_second),
            consumer_naive_records_per_s=round(naive_get.per_second),
            consumer_speedup=round(drained.throughput.per_second / naive_get.per_second, 1),
            consumer_drain_seconds=round(drained.throughput.seconds, 1),
            dynamodb_endpoint_items_per_s=round(ceiling.throughput.per_second),
            consumer_share_of_dynamodb_endpoint=round(
                drained.throughput.per_second / ceiling.throughput.per_second, 2),
            # Why the share is what it is: the emulator is one Python process
            # (one core at most, for its GIL), and in the drain it plays
            # Kinesis, S3 and the KCL's lease table too.
            emulator_cores_busy_in_ceiling=round(ceiling.emulator_cpu_seconds / ceiling.throughput.seconds, 2),
            emulator_cores_busy_in_drain=round(drained.emulator_cpu_seconds / drained.throughput.seconds, 2),
            emulator_share_on_dynamodb_items_in_drain=round(
                ceiling.emulator_cpu_seconds / ceiling.throughput.records * drained.throughput.records
                / drained.emulator_cpu_seconds, 2) if drained.emulator_cpu_seconds else None,
            copies_per_100k=round(drained.copies * 100_000 / drained.throughput.records, 1),
            s3_objects_per_100k=round(drained.s3_objects * 100_000 / drained.throughput.records, 1),
            # The whole consumer's CPU in the drain, against the emulator (its HTTP, the local COPY dialect).
            kcl_jvm_us_per_record=round(drained.jvm_cpu_seconds * 1e6 / drained.throughput.records, 1),
            consumer_processes_us_per_record=round(
                drained.processors_cpu_seconds * 1e6 / drained.throughput.records, 1),
        )
        say(f"latency: {args.latency_rate} records/s for {args.latency_seconds:.0f} s, put -> DynamoDB")
        template = data.valid_records(data.SAMPLE, "latency")[0]
        seen = latency.measure(settings, template, args.latency_rate, args.latency_seconds)
        figures.update(latency_p50_ms=round(seen.p50_ms), latency_p99_ms=round(seen.p99_ms),
                       latency_max_ms=round(seen.max_ms), flush_max_age_ms=FLUSH_MAX_AGE_SECONDS * 1000)
        say("latency: the same as KPL aggregates, one per shard every 0.1 s")
        template = data.valid_records(data.SAMPLE, "latency-aggregated")[0]
        seen = latency.measure(settings, template, args.latency_rate, args.latency_seconds, aggregate=True)
        figures.update(latency_aggregated_p50_ms=round(seen.p50_ms), latency_aggregated_p99_ms=round(seen.p99_ms))
    say(f"consumer stopped (status {running.returncode})")

    say(f"processor: CPU per record over {args.rows} records, best of {PROCESSOR_RUNS}, both warehouse dialects, "
        "own work and all in")
    payloads = processor.payloads_of(data.valid_records(csv, "processor"))
    logs.configure("WARNING", io.StringIO(), service="bench")  # the processor's own events are not the figures
    try:
        for dialect in ("redshift", "postgres"):
            for all_in, name in ((False, "processor_us_per_record"), (True, "processor_all_in_us_per_record")):
                # The local COPY all in waits seconds a load on PostgreSQL: one run of it.
                runs = 1 if all_in and dialect == "postgres" else PROCESSOR_RUNS
                best = min(processor.run_processor(payloads, settings, dialect, all_in=all_in).us_per_record
                           for _ in range(runs))
                figures[f"{name}_{dialect}"] = round(best, 1)
        say("processor: each step alone, all in, Redshift COPY")
        figures["processor_steps_us_per_record"] = steps.breakdown(payloads, settings)
    finally:
        logs.configure("WARNING", log_format=Settings.from_env().log_format, service="bench")
    figures["processor_us_per_record"] = figures["processor_us_per_record_redshift"]
    figures["processor_all_in_us_per_record"] = figures["processor_all_in_us_per_record_redshift"]
    figures["processor_steps_us_per_record"]["rest"] = round(
        figures["processor_all_in_us_per_record"] - sum(figures["processor_steps_us_per_record"].values()), 2)
    # What a task pays for (all in), at the service's own settings, not the bench's shortened flush age.
    figures.update(cost.per_shard_figures(figures["processor_all_in_us_per_record"], Settings()))
    for dialect in ("redshift", "postgres"):
        out = subprocess.run(  # nosec B603: our argv, no shell
            [sys.executable, "-m", "bench.processor", str(args.rows), "--all-in"], stdout=subprocess.PIPE,
            text=True, check=True,
            env={**env, "WAREHOUSE_DIALECT": dialect, "REDSHIFT_IAM_ROLE": "arn:aws:iam::123456789012:role/bench"},
        ).stdout
        figures[f"processor_peak_rss_mb_{dialect}"] = json.loads(out)["peak_rss_mb"]
    figures["processor_peak_rss_mb"] = max(figures["processor_peak_rss_mb_redshift"],
                                           figures["processor_peak_rss_mb_postgres"])

    say(f"warehouse: a {settings.flush_max_records:,}-row load into tables of "
        f"{', '.join(f'{size:,}' for size in warehouse.SIZES)} rows (the largest takes a minute or two to fill)")
    figures.update(warehouse.measure(settings, warehouse.SIZES, warehouse.LOADS, settings.flush_max_records))
    return figures


ROWS = [
    ("producer", "records/s, PutRecords", "producer_records_per_s", ""),
    ("", "records/s, PutRecord per row (naive)", "producer_naive_records_per_s", ""),
    ("", "speedup", "producer_speedup", "target >= 50x"),
    ("", "records/s, --aggregate (KPL aggregates)", "producer_aggregated_records_per_s", ""),
    ("", "aggregated / PutRecords", "producer_aggregated_speedup", ""),
    ("", "PutRecords calls per 100k rows", "puts_per_100k", ""),
    ("", "PutRecords calls per 100k rows, aggregated", "puts_per_100k_aggregated", ""),
    ("", "Kinesis records per 100k rows, aggregated", "kinesis_records_per_100k_aggregated", ""),
    ("", "PUT payload units per 100k rows", "payload_units_per_100k", ""),
    ("", "PUT payload units per 100k rows, aggregated", "payload_units_per_100k_aggregated", ""),
    ("consumer", "records/s, KCL to 3 sinks, checkpointed", "consumer_records_per_s", ""),
    ("", "records/s, a write per record per sink (naive)", "consumer_naive_records_per_s", ""),
    ("", "speedup", "consumer_speedup", "target >= 20x"),
    ("", "DynamoDB endpoint alone, items/s (the ceiling)", "dynamodb_endpoint_items_per_s", ""),
    ("", "consumer rate / that ceiling", "consumer_share_of_dynamodb_endpoint", "goal >= 0.9"),
    ("", "emulator cores busy, ceiling / drain", ["emulator_cores_busy_in_ceiling", "emulator_cores_busy_in_drain"],
     "one process"),
    ("", "emulator's drain CPU on DynamoDB items", "emulator_share_on_dynamodb_items_in_drain", "rest: Kinesis, S3, leases"),
    ("", "COPY statements per 100k records", "copies_per_100k", "a handful"),
    ("", "S3 objects per 100k records", "s3_objects_per_100k", ""),
    ("", "KCL JVM CPU us/record, in the drain", "kcl_jvm_us_per_record", "model assumes 10"),
    ("", "record processors' CPU us/record, in the drain", "consumer_processes_us_per_record", "boto3 + HTTP in"),
    ("processor", "CPU us/record all in, Redshift COPY", "processor_all_in_us_per_record_redshift", "target <= 35"),
    ("", "CPU us/record own work, Redshift COPY", "processor_us_per_record_redshift", "clients recorded"),
    ("", "CPU us/record all in, local COPY FROM STDIN", "processor_all_in_us_per_record_postgres", ""),
    ("", "CPU us/record own work, local COPY FROM STDIN", "processor_us_per_record_postgres", ""),
    *(("", f"  step: {step}", ("processor_steps_us_per_record", step), "") for step in steps.STEPS),
    ("", "peak RSS MB, full buffer, all in (Redshift)", "processor_peak_rss_mb_redshift", "target <= 150"),
    ("", "peak RSS MB, full buffer, all in (local)", "processor_peak_rss_mb_postgres", "target <= 150"),
    ("cost", "vCPU a shard at 1,000 records/s (model)", "consumer_vcpu_per_shard", "processor + KCL JVM"),
    ("", "USD a shard a month, 100 shards (model)", "cost_per_shard_month_usd", "tasks, KCL tables, S3"),
    ("", "the same, Firehose + Lambda (model)", "cost_per_shard_month_firehose_lambda_usd", ""),
    ("warehouse", "s per load, 100k-row table", ("warehouse_load_seconds_by_rows", "100000"), ""),
    ("", "s per load, 1M-row table", ("warehouse_load_seconds_by_rows", "1000000"), ""),
    ("", "s per load, 10M-row table", ("warehouse_load_seconds_by_rows", "10000000"), ""),
    ("", "10M / 100k", "warehouse_load_growth", "target <= 1.5"),
    ("", "commits/min, 64 shards, per-batch (model)", ("warehouse_commits_per_minute_64_shards", "batch"), ""),
    ("", "commits/min, 64 shards, grouped (model)", ("warehouse_commits_per_minute_64_shards", "grouped"),
     "<= 8 tasks x 60 / 60 s"),
    ("", "table busy share, per-batch / grouped", "warehouse_table_busy_share_64_shards", ""),
    ("", "load lag s, per-batch / grouped", "warehouse_load_lag_seconds_64_shards", ""),
    ("latency", "put -> DynamoDB p50 ms", "latency_p50_ms", ""),
    ("", "put -> DynamoDB p99 ms", "latency_p99_ms", ""),
    ("", "put -> DynamoDB p50 ms, aggregated", "latency_aggregated_p50_ms", ""),
    ("", "put -> DynamoDB p99 ms, aggregated", "latency_aggregated_p99_ms", ""),
    ("", "flush age ms (configured)", "flush_max_age_ms", ""),
]


def print_table(figures: dict) -> None:
    say(f"\n{figures['machine']}; {figures['rows']} rows, naive baselines {figures['naive_rows']} rows")
    for part, what, key, target in ROWS:
        if isinstance(key, list):  # figures side by side
            value = " / ".join(str(figures[k]) for k in key)
        else:  # a figure, or (a figure's dict, its key)
            value = figures[key[0]][key[1]] if isinstance(key, tuple) else figures[key]
        if isinstance(value, dict):
            value = " / ".join(str(v) for v in value.values())
        say(f"{part:10s} {what:48s} {value:>10}  {target}")


if __name__ == "__main__":
    sys.exit(main())
