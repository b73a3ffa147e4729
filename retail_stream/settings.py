"""Settings from the environment (12-factor), read and validated once at start-up.

Every variable and default is here; the README's configuration table lists
them. AWS endpoints and credentials are not settings of ours: boto3 reads
`AWS_ENDPOINT_URL` (and `AWS_ENDPOINT_URL_<SERVICE>`) and the standard
credential chain itself, so the same code talks to AWS or to an emulator.
"""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Mapping


class SettingsError(ValueError):
    """A setting is missing or malformed; the service cannot start."""


_STREAM = re.compile(r"^[a-zA-Z0-9_.-]{1,128}$")
_TABLE = re.compile(r"^[a-zA-Z0-9_.-]{3,255}$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_PREFIX = re.compile(r"^[A-Za-z0-9!_.*'()/-]*$")
_SQL_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,126}$")
_IAM_ROLE = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+$")
_S3_URI = re.compile(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/\S+$")
DIALECTS = ("postgres", "redshift")
LOAD_MODES = ("batch", "grouped")
POSITIONS = ("TRIM_HORIZON", "LATEST", "AT_TIMESTAMP")
RETRIEVAL_MODES = ("polling", "fanout")  # fanout: enhanced fan-out (SubscribeToShard, a registered consumer)
# The KCL 3.1.3 MultiLangDaemon has no property for the lease table's billing mode: it creates
# the table PAY_PER_REQUEST, so that is the one value accepted (README, "KCL settings").
LEASE_TABLE_BILLING_MODES = ("PAY_PER_REQUEST",)
LOG_FORMATS = ("auto", "json", "console")  # auto: console on a terminal, JSON lines otherwise
API_TLS = ("off", "self-signed")
SECRETS = frozenset({"api_cursor_secret", "api_cursor_previous_secret"})  # never in a message


@dataclass(frozen=True)
class Settings:
    region: str = "us-east-1"
    stream_name: str = "retail-transactions"
    dynamodb_table: str = "retail-transactions"
    s3_bucket: str = "retail-raw"
    s3_raw_prefix: str = "raw/transactions"
    s3_dead_letter_prefix: str = "dead-letter/transactions"
    warehouse_dsn: str = "postgresql://retail@127.0.0.1:5439/retail"
    warehouse_dialect: str = "postgres"
    warehouse_schema: str = "retail"
    warehouse_table: str = "transactions"
    redshift_iam_role: str = ""
    redshift_jsonpaths_uri: str = ""
    # batch: a COPY per flush per shard (few shards); grouped: the shards queue their objects and
    # each consumer task loads the queue every interval in one COPY (many shards; consumer/loader.py).
    warehouse_load_mode: str = "batch"
    warehouse_load_interval_seconds: float = 60.0
    warehouse_load_max_objects: int = 1000
    s3_load_queue_prefix: str = "load-queue/transactions"
    s3_manifest_prefix: str = "load-manifests/transactions"
    # python -m reconcile: where its JSON reports go, a Pushgateway for its gauges ("": none), and
    # how recent an object may be and still be judged (younger ones may still be loading).
    s3_reports_prefix: str = "reports/reconciliation"
    reconcile_pushgateway_url: str = ""
    reconcile_settle_seconds: float = 600.0
    flush_max_records: int = 20_000
    flush_max_bytes: int = 8 * 1024 * 1024
    flush_max_age_seconds: float = 60.0
    flush_retry_seconds: float = 300.0
    checkpoint_attempts: int = 6  # a checkpoint the lease table throttles, tried this often in all
    dynamodb_concurrency: int = 8  # BatchWriteItem calls in flight per shard
    raw_zone_gzip_level: int = 1  # a fifth more bytes than level 6 for under half its CPU (make bench)
    aws_max_attempts: int = 3  # botocore's tries per request, in all (see retail_stream/retries.py)
    put_records_attempts: int = 8  # the producer's PutRecords calls per batch (--max-attempts)
    api_put_records_attempts: int = 5  # fewer in the API: a client is waiting
    kcl_application_name: str = "retail-consumer"
    kcl_worker_id: str = ""
    kcl_initial_position: str = "TRIM_HORIZON"
    kcl_initial_timestamp: str = ""  # AT_TIMESTAMP only: an ISO-8601 UTC time, e.g. 2026-12-01T00:00:00Z
    kcl_retrieval_mode: str = "polling"
    kcl_consumer_name: str = ""  # fanout only; "": the KCL registers one named after the application
    kcl_lease_table_billing_mode: str = "PAY_PER_REQUEST"
    kcl_lease_table_pitr: bool = False
    kcl_max_records: int = 10_000
    kcl_idle_time_between_reads_ms: int = 1_000
    kcl_failover_time_ms: int = 10_000
    kcl_shard_sync_interval_ms: int = 60_000
    kcl_lease_assignment_interval_ms: int = 0  # 0: the KCL's own default
    kcl_worker_metrics_interval_ms: int = 0  # 0: the KCL's own default (30 s)
    # Time for every shard to flush on a stop, inside ECS's 30 s stop timeout.
    kcl_shutdown_grace_ms: int = 25_000
    java_bin: str = "java"
    log_level: str = "INFO"
    log_format: str = "auto"
    kcl_log_level: str = "INFO"
    metrics_host: str = "0.0.0.0"  # nosec B104: a container's port; the network (security group) decides who reaches it
    metrics_port: int = 0  # 0: the service's own port, below
    producer_metrics_port: int = 9101
    consumer_metrics_port: int = 9102
    metrics_path: str = "/metrics"
    api_host: str = "0.0.0.0"  # nosec B104: as above, and every route but /healthz needs a credential
    api_port: int = 8080
    api_max_body_bytes: int = 5 * 1024 * 1024  # one PutRecords call's worth
    api_max_items: int = 500
    api_cursor_secret: str = ""  # "": a random key per process (cursors then die with it)
    api_cursor_previous_secret: str = ""  # the secret before a rotation: its cursors still page on
    api_cursor_ttl_seconds: int = 3600
    api_metrics_port: int = 9103  # /metrics, never on the API's own port
    # Who may call the API (api/auth.py): hashed keys from a file or a secret, and/or OIDC tokens.
    api_keys_file: str = ""
    api_keys_secret_id: str = ""  # a Secrets Manager secret holding the same JSON as the file
    api_keys_reload_seconds: float = 30.0  # a new or revoked key takes effect within this
    api_jwt_issuer: str = ""  # e.g. https://cognito-idp.<region>.amazonaws.com/<pool id>
    api_jwt_audience: str = ""  # the token's aud, or (Cognito access tokens) its client_id
    api_jwt_jwks_url: str = ""  # "": <issuer>/.well-known/jwks.json
    api_jwt_scope_prefix: str = ""  # e.g. "retail-api/": scopes <prefix>ingest and <prefix>read
    api_jwt_client_claim: str = "sub"  # the claim naming the client (its event id namespace)
    api_rate_limit_per_second: float = 20.0  # requests per credential per API process
    api_rate_limit_burst: int = 40
    api_tls: str = "off"  # off | self-signed: HTTPS with a certificate made at start (behind a load balancer)

    @property
    def jsonpaths_uri(self) -> str:
        """Where Redshift reads the JSONPaths file (uploaded by provisioning)."""
        return self.redshift_jsonpaths_uri or f"s3://{self.s3_bucket}/jsonpaths/transactions.jsonpaths"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build and validate settings; raises SettingsError naming the variable."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for name, var in ENVIRONMENT.items():
            raw = env.get(var)
            if raw is None or raw == "":
                continue
            default = getattr(cls, name)
            try:
                values[name] = _typed(default, raw)
            except ValueError:
                raise SettingsError(f"{var}={raw!r} is not a valid {type(default).__name__}") from None
        values.setdefault("region", env.get("AWS_DEFAULT_REGION") or cls.region)
        settings = cls(**values)  # type: ignore[arg-type]
        settings.validate()
        return settings

    def validate(self) -> None:
        checks = [
            ("stream_name", _STREAM.match(self.stream_name)),
            ("dynamodb_table", _TABLE.match(self.dynamodb_table)),
            ("s3_bucket", _BUCKET.match(self.s3_bucket)),
            ("s3_raw_prefix", _PREFIX.match(self.s3_raw_prefix) and not self.s3_raw_prefix.startswith("/")),
            (
                "s3_dead_letter_prefix",
                _PREFIX.match(self.s3_dead_letter_prefix) and not self.s3_dead_letter_prefix.startswith("/"),
            ),
            ("warehouse_dialect", self.warehouse_dialect in DIALECTS),
            ("warehouse_load_mode", self.warehouse_load_mode in LOAD_MODES),
            ("warehouse_load_interval_seconds", 1 <= self.warehouse_load_interval_seconds <= 3600),
            ("warehouse_load_max_objects", 1 <= self.warehouse_load_max_objects <= 100_000),
            ("s3_load_queue_prefix", _PREFIX.match(self.s3_load_queue_prefix) and self.s3_load_queue_prefix
             and not self.s3_load_queue_prefix.startswith("/")),
            ("s3_manifest_prefix", _PREFIX.match(self.s3_manifest_prefix) and self.s3_manifest_prefix
             and not self.s3_manifest_prefix.startswith("/")),
            ("s3_reports_prefix", _PREFIX.match(self.s3_reports_prefix) and self.s3_reports_prefix
             and not self.s3_reports_prefix.startswith("/")),
            ("reconcile_pushgateway_url", not self.reconcile_pushgateway_url
             or self.reconcile_pushgateway_url.startswith(("http://", "https://"))),
            ("reconcile_settle_seconds", 0 <= self.reconcile_settle_seconds <= 7 * 86_400),
            ("warehouse_schema", _SQL_NAME.match(self.warehouse_schema)),
            ("warehouse_table", _SQL_NAME.match(self.warehouse_table)),
            ("redshift_jsonpaths_uri", _S3_URI.match(self.jsonpaths_uri)),
            ("kcl_application_name", _TABLE.match(self.kcl_application_name)),
            ("kcl_initial_position", self.kcl_initial_position in POSITIONS),
            # Required with AT_TIMESTAMP and refused otherwise: a timestamp that is silently unused misleads.
            ("kcl_initial_timestamp", (self.kcl_initial_position == "AT_TIMESTAMP")
             == bool(self.kcl_initial_timestamp) and (not self.kcl_initial_timestamp or self.initial_timestamp)),
            ("kcl_retrieval_mode", self.kcl_retrieval_mode in RETRIEVAL_MODES),
            # Kinesis' rule for consumer names; only fan-out registers one.
            ("kcl_consumer_name", not self.kcl_consumer_name or (
                self.kcl_retrieval_mode == "fanout" and _STREAM.match(self.kcl_consumer_name))),
            ("kcl_lease_table_billing_mode", self.kcl_lease_table_billing_mode in LEASE_TABLE_BILLING_MODES),
            ("flush_max_records", self.flush_max_records > 0),
            ("flush_max_bytes", self.flush_max_bytes > 0),
            ("flush_max_age_seconds", self.flush_max_age_seconds > 0),
            ("flush_retry_seconds", self.flush_retry_seconds >= 0),
            ("checkpoint_attempts", 1 <= self.checkpoint_attempts <= 100),
            ("dynamodb_concurrency", 1 <= self.dynamodb_concurrency <= 64),
            ("raw_zone_gzip_level", 0 <= self.raw_zone_gzip_level <= 9),
            ("aws_max_attempts", 1 <= self.aws_max_attempts <= 20),
            ("put_records_attempts", 1 <= self.put_records_attempts <= 100),
            ("api_put_records_attempts", 1 <= self.api_put_records_attempts <= 100),
            ("kcl_shutdown_grace_ms", 1_000 <= self.kcl_shutdown_grace_ms <= 600_000),
            ("kcl_max_records", 1 <= self.kcl_max_records <= 10_000),
            ("log_level", self.log_level.upper() in ("DEBUG", "INFO", "WARNING", "ERROR")),
            ("log_format", self.log_format in LOG_FORMATS),
            ("metrics_port", 0 <= self.metrics_port <= 65535),
            ("producer_metrics_port", 1 <= self.producer_metrics_port <= 65535),
            ("consumer_metrics_port", 1 <= self.consumer_metrics_port <= 65535),
            ("metrics_path", self.metrics_path.startswith("/") and self.metrics_path not in ("/healthz", "/readyz")),
            ("kcl_log_level", self.kcl_log_level.upper() in ("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "OFF")),
            ("api_port", 0 <= self.api_port <= 65535),
            ("api_max_body_bytes", 1024 <= self.api_max_body_bytes <= 64 * 1024 * 1024),
            ("api_max_items", 1 <= self.api_max_items <= 10_000),
            ("api_cursor_ttl_seconds", 1 <= self.api_cursor_ttl_seconds <= 30 * 86_400),
            # A short secret could be found offline from one cursor: 32 bytes at least, or none (random).
            ("api_cursor_secret", not self.api_cursor_secret or len(self.api_cursor_secret.encode()) >= 32),
            ("api_cursor_previous_secret", not self.api_cursor_previous_secret
             or len(self.api_cursor_previous_secret.encode()) >= 32),
            ("api_metrics_port", 0 <= self.api_metrics_port <= 65535),
            ("api_keys_reload_seconds", 1 <= self.api_keys_reload_seconds <= 86_400),
            ("api_jwt_issuer", not self.api_jwt_issuer or self.api_jwt_issuer.startswith("https://")),
            ("api_jwt_audience", bool(self.api_jwt_audience) or not self.api_jwt_issuer),
            # Keys come over TLS, but for a provider on this machine (the tests' own).
            ("api_jwt_jwks_url", not self.api_jwt_jwks_url
             or self.api_jwt_jwks_url.startswith(("https://", "http://127.0.0.1:", "http://localhost:"))),
            ("api_jwt_client_claim", bool(self.api_jwt_client_claim)),
            ("api_rate_limit_per_second", 0 < self.api_rate_limit_per_second <= 100_000),
            ("api_rate_limit_burst", 1 <= self.api_rate_limit_burst <= 1_000_000),
            ("api_tls", self.api_tls in API_TLS),
        ]
        if self.warehouse_dialect == "redshift":
            checks.append(("redshift_iam_role", _IAM_ROLE.match(self.redshift_iam_role)))
        for name, ok in checks:
            if not ok:
                shown = "(a secret, not shown)" if name in SECRETS else repr(getattr(self, name))
                why = f": {WHY_REFUSED[name]}" if name in WHY_REFUSED else ""
                raise SettingsError(f"{ENVIRONMENT[name]}={shown} is not valid{why}")

    @property
    def initial_timestamp(self) -> datetime | None:
        """KCL_INITIAL_TIMESTAMP as an aware UTC time; None when unset or not ISO-8601 UTC."""
        try:
            instant = datetime.fromisoformat(self.kcl_initial_timestamp)
        except ValueError:
            return None
        return instant if instant.utcoffset() == timedelta(0) else None  # a naive time is ambiguous

    def metrics_port_for(self, service: str) -> int:
        """The port `service` ("producer", "consumer", "api") serves metrics on: METRICS_PORT, else its own."""
        return self.metrics_port or {"producer": self.producer_metrics_port,
                                     "consumer": self.consumer_metrics_port,
                                     "api": self.api_metrics_port}[service]

    def worker_id(self) -> str:
        """The KCL worker id: stable across restarts so a worker reclaims its
        leases at once. In ECS, the task id; otherwise the host name. Asks the
        ECS metadata endpoint: the supervisor works it out once and hands it
        to its processes as KCL_WORKER_ID."""
        if self.kcl_worker_id:
            return self.kcl_worker_id
        return ecs_task_id(os.environ) or socket.gethostname()


def _typed(default: object, raw: str) -> object:
    """`raw` as the type of `default`; a bool is spelled true or false."""
    if isinstance(default, bool):
        if raw.lower() not in ("true", "false"):
            raise ValueError(raw)
        return raw.lower() == "true"
    return type(default)(raw)


# Why a setting is refused, where the value alone does not say.
WHY_REFUSED = {
    "kcl_initial_position": "TRIM_HORIZON, LATEST or AT_TIMESTAMP (with KCL_INITIAL_TIMESTAMP)",
    "kcl_initial_timestamp": "an ISO-8601 UTC time (e.g. 2026-12-01T00:00:00Z), "
                             "required with KCL_INITIAL_POSITION=AT_TIMESTAMP and refused without it",
    "kcl_retrieval_mode": "polling or fanout",
    "kcl_consumer_name": "a stream consumer's name ([a-zA-Z0-9_.-], at most 128), "
                         "and only with KCL_RETRIEVAL_MODE=fanout",
    "kcl_lease_table_billing_mode": "the KCL 3.1.3 MultiLangDaemon has no property for the lease table's "
                                    "billing mode; it creates the table PAY_PER_REQUEST",
}


def ecs_task_id(environ: Mapping[str, str]) -> str | None:
    """The ECS task id, read from the task metadata endpoint when present."""
    uri = environ.get("ECS_CONTAINER_METADATA_URI_V4")
    if not uri or not uri.startswith("http://"):  # the agent's link-local endpoint, nothing else
        return None
    import json
    import urllib.request

    try:
        with urllib.request.urlopen(f"{uri}/task", timeout=2) as response:  # nosec B310: http:// checked above
            arn = json.load(response)["TaskARN"]
    except (OSError, ValueError, KeyError):
        return None
    return arn.rsplit("/", 1)[-1]


# Setting name -> environment variable. One place, documented in the README.
ENVIRONMENT: dict[str, str] = {
    "region": "AWS_REGION",
    "stream_name": "KINESIS_STREAM_NAME",
    "dynamodb_table": "DYNAMODB_TABLE",
    "s3_bucket": "S3_BUCKET",
    "s3_raw_prefix": "S3_RAW_PREFIX",
    "s3_dead_letter_prefix": "S3_DEAD_LETTER_PREFIX",
    "warehouse_dsn": "WAREHOUSE_DSN",
    "warehouse_dialect": "WAREHOUSE_DIALECT",
    "warehouse_schema": "WAREHOUSE_SCHEMA",
    "warehouse_table": "WAREHOUSE_TABLE",
    "redshift_iam_role": "REDSHIFT_IAM_ROLE",
    "redshift_jsonpaths_uri": "REDSHIFT_JSONPATHS_URI",
    "warehouse_load_mode": "WAREHOUSE_LOAD_MODE",
    "warehouse_load_interval_seconds": "WAREHOUSE_LOAD_INTERVAL_SECONDS",
    "warehouse_load_max_objects": "WAREHOUSE_LOAD_MAX_OBJECTS",
    "s3_load_queue_prefix": "S3_LOAD_QUEUE_PREFIX",
    "s3_manifest_prefix": "S3_MANIFEST_PREFIX",
    "s3_reports_prefix": "S3_REPORTS_PREFIX",
    "reconcile_pushgateway_url": "RECONCILE_PUSHGATEWAY_URL",
    "reconcile_settle_seconds": "RECONCILE_SETTLE_SECONDS",
    "flush_max_records": "FLUSH_MAX_RECORDS",
    "flush_max_bytes": "FLUSH_MAX_BYTES",
    "flush_max_age_seconds": "FLUSH_MAX_AGE_SECONDS",
    "flush_retry_seconds": "FLUSH_RETRY_SECONDS",
    "checkpoint_attempts": "CHECKPOINT_ATTEMPTS",
    "dynamodb_concurrency": "DYNAMODB_CONCURRENCY",
    "raw_zone_gzip_level": "RAW_ZONE_GZIP_LEVEL",
    "aws_max_attempts": "AWS_MAX_ATTEMPTS",
    "put_records_attempts": "PUT_RECORDS_ATTEMPTS",
    "api_put_records_attempts": "API_PUT_RECORDS_ATTEMPTS",
    "kcl_application_name": "KCL_APPLICATION_NAME",
    "kcl_worker_id": "KCL_WORKER_ID",
    "kcl_initial_position": "KCL_INITIAL_POSITION",
    "kcl_initial_timestamp": "KCL_INITIAL_TIMESTAMP",
    "kcl_retrieval_mode": "KCL_RETRIEVAL_MODE",
    "kcl_consumer_name": "KCL_CONSUMER_NAME",
    "kcl_lease_table_billing_mode": "KCL_LEASE_TABLE_BILLING_MODE",
    "kcl_lease_table_pitr": "KCL_LEASE_TABLE_PITR",
    "kcl_max_records": "KCL_MAX_RECORDS",
    "kcl_idle_time_between_reads_ms": "KCL_IDLE_TIME_BETWEEN_READS_MS",
    "kcl_failover_time_ms": "KCL_FAILOVER_TIME_MS",
    "kcl_shard_sync_interval_ms": "KCL_SHARD_SYNC_INTERVAL_MS",
    "kcl_lease_assignment_interval_ms": "KCL_LEASE_ASSIGNMENT_INTERVAL_MS",
    "kcl_worker_metrics_interval_ms": "KCL_WORKER_METRICS_INTERVAL_MS",
    "kcl_shutdown_grace_ms": "KCL_SHUTDOWN_GRACE_MS",
    "java_bin": "JAVA_BIN",
    "log_level": "LOG_LEVEL",
    "log_format": "LOG_FORMAT",
    "kcl_log_level": "KCL_LOG_LEVEL",
    "metrics_host": "METRICS_HOST",
    "metrics_port": "METRICS_PORT",
    "producer_metrics_port": "PRODUCER_METRICS_PORT",
    "consumer_metrics_port": "CONSUMER_METRICS_PORT",
    "metrics_path": "METRICS_PATH",
    "api_host": "API_HOST",
    "api_port": "API_PORT",
    "api_max_body_bytes": "API_MAX_BODY_BYTES",
    "api_max_items": "API_MAX_ITEMS",
    "api_cursor_secret": "API_CURSOR_SECRET",  # nosec B105: a variable's name
    "api_cursor_previous_secret": "API_CURSOR_PREVIOUS_SECRET",  # nosec B105: a variable's name
    "api_cursor_ttl_seconds": "API_CURSOR_TTL_SECONDS",
    "api_metrics_port": "API_METRICS_PORT",
    "api_keys_file": "API_KEYS_FILE",
    "api_keys_secret_id": "API_KEYS_SECRET_ID",  # nosec B105: a variable's name
    "api_keys_reload_seconds": "API_KEYS_RELOAD_SECONDS",
    "api_jwt_issuer": "API_JWT_ISSUER",
    "api_jwt_audience": "API_JWT_AUDIENCE",
    "api_jwt_jwks_url": "API_JWT_JWKS_URL",
    "api_jwt_scope_prefix": "API_JWT_SCOPE_PREFIX",
    "api_jwt_client_claim": "API_JWT_CLIENT_CLAIM",
    "api_rate_limit_per_second": "API_RATE_LIMIT_PER_SECOND",
    "api_rate_limit_burst": "API_RATE_LIMIT_BURST",
    "api_tls": "API_TLS",
}
