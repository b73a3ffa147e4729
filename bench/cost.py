"""What it costs a month: this service on Fargate against Firehose plus a
Lambda consumer, from AWS list prices and the bench's CPU per record.

    python -m bench.cost --cpu-us 13.9 [--jvm-us 10] [--shards 1,10,100] [--rate 1000]
                         [--record-bytes 300] [--load-mode batch|grouped]

prints the comparison as a markdown table, then the figures it rests on.

The two choices, for a Kinesis stream of N shards each written at R
records/s of S bytes:

    this service   ECS Fargate tasks (the KCL's JVM + a Python process per shard), the KCL's three
                   DynamoDB tables, the data table's writes, S3 PUTs (raw zone; markers and manifests
                   when grouped), Redshift COPYs, the private subnets' interface endpoint for Kinesis
    the other way  Firehose reading the stream into S3 and COPYing into Redshift, plus a Lambda
                   (event source mapping on the stream) writing the same DynamoDB items

The stream, the data table's writes and the storage of both stores are the
same either way: shown as common rows, counted in both totals. The Redshift
cluster (or Serverless) is the same either way too and not priced here;
what differs is how many COPYs it is asked for (counted).

Every price below is a us-east-1 list price as known on 2025-06 (the date of
the sources named beside each), on-demand, no free tier, no Savings Plans:
check them against the AWS pricing pages before relying on a figure; no
network is used here. A month is 730 hours, as AWS's calculators take it.
Everything but `sample_profile` and `main` is pure.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass, field, replace
from decimal import Decimal

# --- list prices, us-east-1, USD ------------------------------------------------------------
# https://aws.amazon.com/fargate/pricing/ (Linux/x86; ARM is about 20% less), as of 2025-06
FARGATE_VCPU_HOUR = 0.04048
FARGATE_GB_HOUR = 0.004445
# https://aws.amazon.com/kinesis/data-streams/pricing/ (provisioned mode), as of 2025-06
KINESIS_SHARD_HOUR = 0.015
KINESIS_PUT_UNITS_PER_MILLION = 0.014  # a PUT payload unit is 25 KB of a record
KINESIS_PUT_UNIT_BYTES = 25 * 1024
# https://aws.amazon.com/dynamodb/pricing/on-demand/ (after the 2024-11-01 halving), as of 2025-06
DYNAMODB_WRITE_UNITS_PER_MILLION = 0.625  # a write request unit: one write of up to 1 KB
DYNAMODB_READ_UNITS_PER_MILLION = 0.125  # a read request unit: one strong read of up to 4 KB (two eventual)
DYNAMODB_GB_MONTH = 0.25  # Standard table class; each item is billed 100 bytes over its size
DYNAMODB_ITEM_OVERHEAD_BYTES = 100
# https://aws.amazon.com/s3/pricing/ (S3 Standard), as of 2025-06
S3_PUT_PER_THOUSAND = 0.005  # PUT, COPY, POST, LIST
S3_GET_PER_THOUSAND = 0.0004  # GET, SELECT and all other requests
S3_GB_MONTH = 0.023  # the first 50 TB a month
# https://aws.amazon.com/firehose/pricing/ (Direct PUT and Kinesis Data Streams as a source), as of 2025-06:
# each record is billed rounded up to 5 KB; GB here are 2^30 bytes, as the page's worked example counts them.
FIREHOSE_RECORD_INCREMENT_BYTES = 5 * 1024
# Tiers by the month's volume: the first 500 TB, the next 1.5 PB, the next 3 PB (TB = 1,024 GB).
FIREHOSE_TIERS_GB = ((500 * 1024, 0.029), (1500 * 1024, 0.025), (3000 * 1024, 0.020))
FIREHOSE_ABOVE_TIERS_GB = 0.020  # over 5 PB a month the page says "contact us"; the last tier's price here
# https://aws.amazon.com/privatelink/pricing/ (interface endpoints), as of 2025-06; the tasks reach
# Kinesis through one (S3 and DynamoDB through gateway endpoints, which cost nothing)
VPC_ENDPOINT_AZ_HOUR = 0.01
VPC_ENDPOINT_GB = 0.01  # processed, the first PB a month
# https://aws.amazon.com/lambda/pricing/ (x86), as of 2025-06
LAMBDA_GB_SECOND = 0.0000166667
LAMBDA_REQUESTS_PER_MILLION = 0.20
LAMBDA_MB_PER_VCPU = 1769  # Lambda's documented memory at which a function has one full vCPU

HOURS_PER_MONTH = 730
SECONDS_PER_MONTH = HOURS_PER_MONTH * 3600
GIB = 1024**3

# Fargate's task sizes (Linux): vCPU -> the memory it allows, GB. The smallest is 0.25 vCPU, 0.5 GB.
FARGATE_SIZES: tuple[tuple[float, float], ...] = tuple(
    [(0.25, gb) for gb in (0.5, 1, 2)]
    + [(0.5, gb) for gb in range(1, 5)]
    + [(1, gb) for gb in range(2, 9)]
    + [(2, gb) for gb in range(4, 17)]
    + [(4, gb) for gb in range(8, 31)]
)


# --- the workload ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Workload:
    """N shards, each written at `records_per_second` records of `record_bytes`."""

    shards: int
    records_per_second: float = 1_000  # a shard's write limit
    record_bytes: int = 300
    item_bytes: int = 200  # a DynamoDB item as `to_item` makes it (sample_profile measures it)
    customer_share: float = 0.76  # rows with a customer: also written to the by_customer index
    raw_zone_bytes_per_record: float = 50  # gzip NDJSON in the raw zone (sample_profile measures it)

    @property
    def records_per_month(self) -> float:
        return self.shards * self.records_per_second * SECONDS_PER_MONTH


# --- this service: its settings and what we assume of the KCL and the task ----------------------------

@dataclass(frozen=True)
class Consumer:
    """The consumer's CPU and memory, its flush and load settings (the
    service's defaults, retail_stream/settings.py), and the KCL's intervals
    (consumer/daemon.py kcl_properties; the KCL's own defaults where it sets none)."""

    cpu_us_per_record: float  # the record processor's own (make bench: processor_us_per_record)
    # The JVM's work per record, warm: GetRecords' response parsed (CBOR), each record written to the
    # processor's pipe as a JSON line with its data in base64, the checkpoint answers read; a few
    # allocations and a base64 of 300 bytes a record: assumed 10 us. make bench's kcl_jvm_us_per_record
    # is an upper bound, far above: a short drain's JIT warm-up, idle polls and lease renewals, and the
    # emulator's JSON, all divided by its records.
    jvm_us_per_record: float = 10.0
    task_fixed_vcpu: float = 0.05  # JVM idle (lease renewals, GC, JIT), the supervisor, the metrics sidecar
    cpu_target: float = 0.7  # busy at most 70%: a task catching up after a restart drains at 1.4x the rate
    # A record processor at a full buffer, all in (its real clients), Redshift COPY as deployed: make bench's
    # processor_peak_rss_mb_redshift, 109.0 on 2026-12-07 (the local COPY FROM STDIN's, 142.0, is not deployed).
    shard_process_mb: float = 109.0
    # The JVM (its default heap, a quarter of 2 GB, + metaspace and threads), the supervisor, the collector
    # sidecar (its reservation in the template).
    task_fixed_mb: float = 600 + 60 + 128
    max_task: tuple[float, float] = (1.0, 2.0)  # the template's ConsumerCpu 1024 / ConsumerMemory 2048
    flush_max_records: int = 20_000
    flush_max_bytes: int = 8 * 1024 * 1024
    flush_max_age_seconds: float = 60.0
    load_mode: str = "batch"
    load_interval_seconds: float = 60.0
    failover_ms: int = 10_000  # lease renewals every failover/3 (the KCL's LeaseRenewer)
    lease_assignment_ms: int = 20_000  # the KCL's default, 2 x failover; workers discover leases every half
    shard_sync_ms: int = 60_000
    worker_metrics_ms: int = 30_000  # the KCL's default
    leader_heartbeat_ms: int = 30_000  # the KCL's DynamoDBLockBasedLeaderDecider heartbeat
    lease_item_bytes: int = 600  # key, owner, counter, checkpoint, hash range, throughput: under 1 KB
    worker_metrics_item_bytes: int = 1000
    endpoint_azs: int = 2  # the Kinesis interface endpoint's AZs, one per private subnet

    @property
    def us_per_record(self) -> float:
        return self.cpu_us_per_record + self.jvm_us_per_record

    @classmethod
    def of(cls, settings, cpu_us_per_record: float, **overrides) -> Consumer:
        """From the service's Settings; `overrides` for the assumptions."""
        return cls(cpu_us_per_record, flush_max_records=settings.flush_max_records,
                   flush_max_bytes=settings.flush_max_bytes, flush_max_age_seconds=settings.flush_max_age_seconds,
                   load_mode=settings.warehouse_load_mode,
                   load_interval_seconds=settings.warehouse_load_interval_seconds,
                   failover_ms=settings.kcl_failover_time_ms,
                   lease_assignment_ms=settings.kcl_lease_assignment_interval_ms or 2 * settings.kcl_failover_time_ms,
                   shard_sync_ms=settings.kcl_shard_sync_interval_ms,
                   worker_metrics_ms=settings.kcl_worker_metrics_interval_ms or 30_000, **overrides)


@dataclass(frozen=True)
class Firehose:
    """The other way: Firehose into S3 then Redshift, Lambda into DynamoDB.
    `lambda_cpu_us_per_record` None: the consumer's figure (decode, validate,
    build the item, boto3: the same work but for the gzip and the COPY statement)."""

    buffer_mib: int = 128  # Firehose's largest buffer for a Redshift destination
    buffer_seconds: int = 60  # as fresh as the service's grouped loads
    lambda_memory_mb: int = 512
    lambda_batch_size: int = 1_000
    lambda_batching_window_s: float = 1.0
    lambda_cpu_us_per_record: float | None = None
    dynamodb_calls_in_flight: int = 8  # as the service's DYNAMODB_CONCURRENCY
    dynamodb_round_trip_ms: float = 10.0  # a 25-item BatchWriteItem in the region, assumed


# --- the arithmetic, piece by piece ------------------------------------------------------------------

def firehose_billed_bytes(record_bytes: int) -> int:
    """What Firehose bills for one record: its size rounded up to 5 KB."""
    return math.ceil(record_bytes / FIREHOSE_RECORD_INCREMENT_BYTES) * FIREHOSE_RECORD_INCREMENT_BYTES


def firehose_ingestion_usd(gb: float) -> float:
    """A month's ingestion of `gb` (2^30 bytes) over Firehose's tiers."""
    cost, left = 0.0, gb
    for size, price in FIREHOSE_TIERS_GB:
        cost += min(left, size) * price
        left = max(0.0, left - size)
    return cost + left * FIREHOSE_ABOVE_TIERS_GB


def write_units(item_bytes: int) -> int:
    """DynamoDB write request units for one write of an item: 1 per KB started."""
    return max(1, math.ceil(item_bytes / 1024))


def attribute_value_bytes(value: dict) -> int:
    """An attribute value's size as DynamoDB counts it: a string its UTF-8
    bytes, a number 1 byte per two significant digits plus 1."""
    (kind, raw), = value.items()
    if kind == "S":
        return len(raw.encode())
    if kind == "N":
        digits = Decimal(raw).normalize().as_tuple().digits
        return math.ceil(len(digits) / 2) + 1
    raise ValueError(f"no size rule here for {kind!r}")


def item_bytes(item: dict) -> int:
    """An item's size as DynamoDB counts it: every attribute's name and value."""
    return sum(len(name.encode()) + attribute_value_bytes(value) for name, value in item.items())


def kinesis_put_units(record_bytes: int) -> int:
    return max(1, math.ceil(record_bytes / KINESIS_PUT_UNIT_BYTES))


def flush_seconds(consumer: Consumer, workload: Workload) -> float:
    """Seconds between a shard's flushes: the first of its record, byte and age limits."""
    rate = workload.records_per_second
    return min(consumer.flush_max_records / rate, consumer.flush_max_bytes / (rate * workload.record_bytes),
               consumer.flush_max_age_seconds)


def vcpu_per_shard(consumer: Consumer, workload: Workload) -> float:
    """vCPU a shard keeps busy: the processor's and the JVM's work per record at the shard's rate."""
    return workload.records_per_second * consumer.us_per_record / 1e6


def shards_that_fit(consumer: Consumer, workload: Workload, vcpu: float, memory_gb: float) -> int:
    """Shards one task of this size holds, within the CPU target and its memory."""
    by_cpu = (vcpu * consumer.cpu_target - consumer.task_fixed_vcpu) / vcpu_per_shard(consumer, workload)
    by_memory = (memory_gb * 1024 - consumer.task_fixed_mb) / consumer.shard_process_mb
    return max(0, math.floor(min(by_cpu, by_memory)))


@dataclass(frozen=True)
class TaskPlan:
    tasks: int
    shards_per_task: int  # the most any task holds
    vcpu: float
    memory_gb: float

    @property
    def usd_month(self) -> float:
        return self.tasks * (self.vcpu * FARGATE_VCPU_HOUR + self.memory_gb * FARGATE_GB_HOUR) * HOURS_PER_MONTH


def task_plan(consumer: Consumer, workload: Workload) -> TaskPlan:
    """As few tasks as the largest size allows (one JVM each), each then the
    cheapest Fargate size that holds its share of the shards. Raises
    ValueError when a single shard does not fit the largest size."""
    most = shards_that_fit(consumer, workload, *consumer.max_task)
    if most < 1:
        raise ValueError(f"a shard needs more than a {consumer.max_task[0]} vCPU / {consumer.max_task[1]} GB task")
    tasks = math.ceil(workload.shards / most)
    held = math.ceil(workload.shards / tasks)
    sizes = [s for s in FARGATE_SIZES if s[0] <= consumer.max_task[0] and s[1] <= consumer.max_task[1]
             and shards_that_fit(consumer, workload, *s) >= held]
    vcpu, memory = min(sizes, key=lambda s: s[0] * FARGATE_VCPU_HOUR + s[1] * FARGATE_GB_HOUR)
    return TaskPlan(tasks, held, vcpu, memory)


@dataclass(frozen=True)
class Requests:
    """A month's requests of one kind or another (counts, not money)."""

    s3_put: float = 0.0  # PUT, COPY, POST, LIST
    s3_get: float = 0.0
    dynamodb_write_units: float = 0.0
    dynamodb_read_units: float = 0.0

    @property
    def usd(self) -> float:
        return (self.s3_put / 1000 * S3_PUT_PER_THOUSAND + self.s3_get / 1000 * S3_GET_PER_THOUSAND
                + self.dynamodb_write_units / 1e6 * DYNAMODB_WRITE_UNITS_PER_MILLION
                + self.dynamodb_read_units / 1e6 * DYNAMODB_READ_UNITS_PER_MILLION)


def copies_per_hour(consumer: Consumer, workload: Workload, plan: TaskPlan) -> float:
    """Redshift COPY statements an hour: one per flush per shard (batch), one
    per load interval per task (grouped)."""
    if consumer.load_mode == "grouped":
        return plan.tasks * 3600 / consumer.load_interval_seconds
    return workload.shards * 3600 / flush_seconds(consumer, workload)


def service_s3_requests(consumer: Consumer, workload: Workload, plan: TaskPlan) -> Requests:
    """A month's S3 requests. Per flush: the raw-zone PUT. Batch: a COPY per
    object (Redshift LISTs its prefix, GETs it and the JSONPaths file).
    Grouped: a marker PUT per flush; per load, per task: a LIST per 1,000
    markers, a GET per marker, the manifest's PUT, the COPY's GETs (the
    manifest, the JSONPaths file, every object), a DeleteObjects per 1,000
    markers (a POST)."""
    flushes = workload.shards * SECONDS_PER_MONTH / flush_seconds(consumer, workload)
    if consumer.load_mode != "grouped":
        return Requests(s3_put=flushes * 2, s3_get=flushes * 2)
    loads = plan.tasks * SECONDS_PER_MONTH / consumer.load_interval_seconds
    pages = math.ceil(flushes / loads / 1000)
    return Requests(s3_put=flushes * 2 + loads * (2 * pages + 1), s3_get=flushes * 2 + loads * 2)


def kcl_table_requests(consumer: Consumer, workload: Workload, plan: TaskPlan) -> dict[str, Requests]:
    """A month's requests to the KCL's three tables (every item under 1 KB: one unit a write).

    lease table: per shard, a renewal every failover/3 and a checkpoint per flush; per worker, a
        Query of the owner index every lease-assignment interval / 2 (eventual: half a unit); the
        leader Scans it (strong) every lease-assignment interval and every shard sync.
    worker metrics: each worker writes its stats every interval; the leader Scans them every assignment.
    coordinator state: the leader's lock heartbeat; every worker reads the lock item as often."""
    month_ms = SECONDS_PER_MONTH * 1000
    scans = month_ms / consumer.lease_assignment_ms + month_ms / consumer.shard_sync_ms
    lease = Requests(
        dynamodb_write_units=workload.shards * (month_ms / (consumer.failover_ms / 3)
                                                + SECONDS_PER_MONTH / flush_seconds(consumer, workload)),
        dynamodb_read_units=plan.tasks * month_ms / (consumer.lease_assignment_ms / 2) * 0.5
        + scans * math.ceil(workload.shards * consumer.lease_item_bytes / 4096))
    metrics = Requests(
        dynamodb_write_units=plan.tasks * month_ms / consumer.worker_metrics_ms * write_units(
            consumer.worker_metrics_item_bytes),
        dynamodb_read_units=month_ms / consumer.lease_assignment_ms * math.ceil(
            plan.tasks * consumer.worker_metrics_item_bytes / 4096))
    coordinator = Requests(dynamodb_write_units=month_ms / consumer.leader_heartbeat_ms,
                           dynamodb_read_units=plan.tasks * month_ms / consumer.leader_heartbeat_ms)
    return {"lease": lease, "worker metrics": metrics, "coordinator state": coordinator}


def data_table_write_units(workload: Workload) -> float:
    """A month's write units into the data table: each row once, and again into
    by_customer (projection ALL: the same size) when it has a customer."""
    return workload.records_per_month * write_units(workload.item_bytes) * (1 + workload.customer_share)


def firehose_deliveries_per_hour(firehose: Firehose, workload: Workload) -> float:
    """Firehose's S3 objects (and COPYs at most) an hour: a buffer fills or its interval passes."""
    bytes_per_second = workload.shards * workload.records_per_second * workload.record_bytes
    return max(3600 / firehose.buffer_seconds, bytes_per_second * 3600 / (firehose.buffer_mib * 1024**2))


@dataclass(frozen=True)
class LambdaPlan:
    invocations_per_month: float
    seconds_per_invocation: float
    memory_mb: int

    @property
    def gb_seconds(self) -> float:
        return self.invocations_per_month * self.seconds_per_invocation * self.memory_mb / 1024

    @property
    def usd_month(self) -> float:
        return self.gb_seconds * LAMBDA_GB_SECOND + self.invocations_per_month / 1e6 * LAMBDA_REQUESTS_PER_MILLION


def lambda_plan(firehose: Firehose, workload: Workload, cpu_us_per_record: float) -> LambdaPlan:
    """One invocation per shard per batch (a full batch, or what the batching
    window gathered); its duration the batch's CPU at the memory's share of a
    vCPU, plus its BatchWriteItem round trips, `calls_in_flight` at a time."""
    per_batch = min(firehose.lambda_batch_size, workload.records_per_second * firehose.lambda_batching_window_s)
    invocations = workload.records_per_month / per_batch
    share = min(1.0, firehose.lambda_memory_mb / LAMBDA_MB_PER_VCPU)
    cpu = per_batch * cpu_us_per_record / 1e6 / share
    rounds = math.ceil(math.ceil(per_batch / 25) / firehose.dynamodb_calls_in_flight)
    return LambdaPlan(invocations, cpu + rounds * firehose.dynamodb_round_trip_ms / 1000, firehose.lambda_memory_mb)


# --- the comparison -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Line:
    """One component's monthly cost, USD, for this service and for the other way."""

    component: str
    service: float
    other: float
    common: bool = False


@dataclass(frozen=True)
class Comparison:
    workload: Workload
    lines: tuple[Line, ...]
    plan: TaskPlan
    lambdas: LambdaPlan
    copies_per_hour: dict[str, float] = field(default_factory=dict)

    @property
    def service_total(self) -> float:
        return sum(line.service for line in self.lines)

    @property
    def other_total(self) -> float:
        return sum(line.other for line in self.lines)


def compare(workload: Workload, consumer: Consumer, firehose: Firehose = Firehose()) -> Comparison:
    """Every component's monthly cost for both choices. Pure."""
    plan = task_plan(consumer, workload)
    records = workload.records_per_month
    stream = (workload.shards * KINESIS_SHARD_HOUR * HOURS_PER_MONTH
              + records * kinesis_put_units(workload.record_bytes) / 1e6 * KINESIS_PUT_UNITS_PER_MILLION)
    data_writes = Requests(dynamodb_write_units=data_table_write_units(workload)).usd
    stored = records * (workload.item_bytes + DYNAMODB_ITEM_OVERHEAD_BYTES) * (1 + workload.customer_share)
    dynamodb_storage = stored / GIB * DYNAMODB_GB_MONTH
    s3_storage = records * workload.raw_zone_bytes_per_record / GIB * S3_GB_MONTH
    kcl = sum(r.usd for r in kcl_table_requests(consumer, workload, plan).values())
    s3 = service_s3_requests(consumer, workload, plan).usd
    # GetRecords' bytes through the interface endpoint (CBOR: the records' own size, near enough)
    endpoint = (consumer.endpoint_azs * VPC_ENDPOINT_AZ_HOUR * HOURS_PER_MONTH
                + records * workload.record_bytes / GIB * VPC_ENDPOINT_GB)
    ingested_gb = records * firehose_billed_bytes(workload.record_bytes) / GIB
    deliveries = firehose_deliveries_per_hour(firehose, workload) * HOURS_PER_MONTH
    # Per delivery: the object and Firehose's manifest PUT; the COPY's GETs of both and of the JSONPaths file.
    firehose_s3 = Requests(s3_put=2 * deliveries, s3_get=3 * deliveries).usd
    lambdas = lambda_plan(firehose, workload, firehose.lambda_cpu_us_per_record or consumer.cpu_us_per_record)
    lines = (
        Line("Kinesis stream (shard-hours, PUT payload units)", stream, stream, common=True),
        Line("DynamoDB data table writes (table + by_customer)", data_writes, data_writes, common=True),
        Line("DynamoDB storage, one month's rows", dynamodb_storage, dynamodb_storage, common=True),
        Line("S3 storage, one month's raw zone (gzip)", s3_storage, s3_storage, common=True),
        Line("Fargate consumer tasks", plan.usd_month, 0.0),
        Line("KCL tables (lease, worker metrics, coordinator)", kcl, 0.0),
        Line("S3 requests (raw zone; markers, manifests if grouped; COPY reads)", s3, 0.0),
        Line("VPC interface endpoint for Kinesis (hours, GB read)", endpoint, 0.0),
        Line("Firehose ingestion (5 KB a record)", 0.0, firehose_ingestion_usd(ingested_gb)),
        Line("Firehose S3 requests (objects, manifests, COPY reads)", 0.0, firehose_s3),
        Line("Lambda consumer (GB-seconds, requests)", 0.0, lambdas.usd_month),
    )
    copies = {f"service ({consumer.load_mode})": copies_per_hour(consumer, workload, plan),
              "Firehose (at most)": firehose_deliveries_per_hour(firehose, workload)}
    return Comparison(workload, lines, plan, lambdas, copies)


def per_shard_figures(cpu_us_per_record: float, settings, shards: int = 100, **workload) -> dict:
    """What `make bench` prints: the vCPU a shard at its write limit keeps busy,
    and this service's own cost a shard a month (tasks, KCL tables, S3
    requests; the common costs left out) against the other way's, at `shards`."""
    consumer = Consumer.of(settings, cpu_us_per_record)
    found = compare(Workload(shards, **workload), consumer)
    own = sum(line.service for line in found.lines if not line.common)
    other = sum(line.other for line in found.lines if not line.common)
    return {"consumer_vcpu_per_shard": round(vcpu_per_shard(consumer, found.workload), 4),
            "cost_per_shard_month_usd": round(own / shards, 2),
            "cost_per_shard_month_firehose_lambda_usd": round(other / shards, 2),
            "cost_model": f"{shards} shards at {found.workload.records_per_second:g} records/s of "
                          f"{found.workload.record_bytes} B, {cpu_us_per_record:g} + {consumer.jvm_us_per_record:g} "
                          f"(KCL JVM, assumed) us a record, {found.plan.tasks} tasks of {found.plan.vcpu:g} vCPU / "
                          f"{found.plan.memory_gb:g} GB; us-east-1 list prices (bench/cost.py)"}


# --- the table -----------------------------------------------------------------------------------------

def usd(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:,.2f}"


def markdown(comparisons: list[Comparison]) -> str:
    """The comparison as a markdown table: a row per component, two columns per shard count."""
    head = "| a month, USD | " + " | ".join(
        f"{plural(c.workload.shards, 'shard')}: service | Firehose + Lambda" for c in comparisons) + " |"
    rows = [head, "|---" + "|---:" * (2 * len(comparisons)) + "|"]
    for i, line in enumerate(comparisons[0].lines):
        label = line.component + (" *(common)*" if line.common else "")
        cells = []
        for c in comparisons:
            mine = c.lines[i]
            cells += [usd(mine.service) if mine.service or mine.common else "–",
                      usd(mine.other) if mine.other or mine.common else "–"]
        rows.append(f"| {label} | " + " | ".join(cells) + " |")

    def total(label: str, pick) -> str:
        cells = []
        for c in comparisons:
            cells += [f"**{usd(pick(c, 'service'))}**", f"**{usd(pick(c, 'other'))}**"]
        return f"| **{label}** | " + " | ".join(cells) + " |"

    rows.append(total("what differs", lambda c, side: sum(getattr(l, side) for l in c.lines if not l.common)))
    rows.append(total("total", lambda c, side: sum(getattr(l, side) for l in c.lines)))
    return "\n".join(rows)


def plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'s' if count != 1 else ''}"


def details(comparisons: list[Comparison], consumer: Consumer) -> str:
    """The figures under the table: tasks, vCPU, COPYs, Lambda's invocations."""
    w = comparisons[0].workload
    out = [f"- CPU per record: {consumer.cpu_us_per_record:g} us (processor) + {consumer.jvm_us_per_record:g} us "
           f"(KCL JVM) = {vcpu_per_shard(consumer, w):.4f} vCPU a shard at {w.records_per_second:g} records/s; "
           f"a shard flushes every {flush_seconds(consumer, w):g} s"]
    for c in comparisons:
        p, lam = c.plan, c.lambdas
        copies = ", ".join(f"{name} {value:,.0f}" for name, value in c.copies_per_hour.items())
        out.append(f"- {plural(c.workload.shards, 'shard')}: {plural(p.tasks, 'task')} of {p.vcpu:g} vCPU / "
                   f"{p.memory_gb:g} GB ({plural(p.shards_per_task, 'shard')} a task at most); "
                   f"COPYs an hour: {copies}; "
                   f"Lambda: {lam.invocations_per_month / 1e6:,.1f} M invocations of "
                   f"{lam.seconds_per_invocation * 1000:.0f} ms at {lam.memory_mb} MB")
    return "\n".join(out)


def sample_profile(settings) -> dict:
    """From the sample CSV (data/TestSample.csv): the mean DynamoDB item size
    (`to_item`), the share of rows with a customer, and the raw zone's gzip
    bytes a record at the service's level. Reads the file."""
    from bench.data import SAMPLE, valid_records
    from consumer.sinks.dynamodb import to_item
    from consumer.sinks.raw_zone import to_ndjson_gz

    records = tuple(valid_records(SAMPLE, SAMPLE.name))
    sizes = [item_bytes(to_item(r)) for r in records]
    return {"item_bytes": math.ceil(sum(sizes) / len(sizes)), "item_bytes_max": max(sizes),
            "customer_share": round(sum(r.customer_id is not None for r in records) / len(records), 2),
            "raw_zone_bytes_per_record": round(len(to_ndjson_gz(records, settings.raw_zone_gzip_level))
                                               / len(records), 1)}


def main(argv: list[str] | None = None) -> int:
    from retail_stream.settings import Settings

    parser = argparse.ArgumentParser(prog="python -m bench.cost", description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-us", type=float, required=True,
                        help="the consumer's CPU per record, us (make bench: processor_us_per_record)")
    parser.add_argument("--jvm-us", type=float, default=Consumer.jvm_us_per_record,
                        help="the KCL JVM's, us a record")
    parser.add_argument("--shards", default="1,10,100", help="shard counts, comma-separated")
    parser.add_argument("--rate", type=float, default=Workload.records_per_second, help="records/s a shard")
    parser.add_argument("--record-bytes", type=int, default=Workload.record_bytes)
    parser.add_argument("--load-mode", choices=("batch", "grouped"),
                        help="WAREHOUSE_LOAD_MODE (default: the setting's)")
    args = parser.parse_args(argv)
    settings = Settings()
    if args.load_mode:
        settings = replace(settings, warehouse_load_mode=args.load_mode)
    profile = sample_profile(settings)
    consumer = Consumer.of(settings, args.cpu_us, jvm_us_per_record=args.jvm_us)
    firehose = Firehose()
    comparisons = [compare(Workload(int(n), args.rate, args.record_bytes, profile["item_bytes"],
                                    profile["customer_share"], profile["raw_zone_bytes_per_record"]),
                           consumer, firehose)
                   for n in args.shards.split(",")]
    print(markdown(comparisons))
    print()
    print(f"- Sample rows (data/TestSample.csv): DynamoDB items of {profile['item_bytes']} B on average "
          f"({profile['item_bytes_max']} B at most: {write_units(profile['item_bytes_max'])} write unit), "
          f"{profile['customer_share']:.0%} with a customer, {profile['raw_zone_bytes_per_record']:g} B a record "
          f"gzip'd in the raw zone")
    print(details(comparisons, consumer))
    return 0


if __name__ == "__main__":
    sys.exit(main())
