"""`python -m consumer`: write the KCL properties, run the MultiLangDaemon
(Java), and supervise it.

SIGTERM and SIGINT are forwarded to the daemon, which asks every record
processor to flush and checkpoint (shutdown_requested) before it exits; this
process then exits with the daemon's status. If a shard's batch cannot be made
durable its processor exits, the daemon exits non-zero, and the orchestrator
(ECS, compose) restarts the worker, which resumes from the last checkpoints.
If a sink refuses for good (access denied, a missing table), the processor
says so in a file of ours: the worker turns unready, stops its daemon at
once and exits EXIT_SINK_REFUSED, so a restart loop reads as a set-up error.
"""

from __future__ import annotations

import errno
import functools
import json
import math
import os
import signal
import subprocess  # nosec B404: argv lists of programs we name, never a shell
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Mapping

import structlog
from prometheus_client import CollectorRegistry, multiprocess

from consumer.lifetime import die_with_parent
from retail_stream import logs
from retail_stream.metrics_server import MetricsServer
from retail_stream.settings import Settings, SettingsError

log = structlog.get_logger("consumer.daemon")

MULTILANG_DAEMON = "software.amazon.kinesis.multilang.MultiLangDaemon"
# The scheduler's log line once leases can be taken: the worker is ready.
READY_LINE = "Initialization complete"
STOP_RESEND_SECONDS = 2.0
STOP_MARGIN_SECONDS = 3.0  # 25 + 3 s by default: the daemon is gone before ECS's SIGKILL at 30 s
EXIT_SINK_REFUSED = 78  # EX_CONFIG (sysexits.h): restarting will not help until the set-up is fixed
REFUSAL_GRACE_SECONDS = 5.0  # for the shards still flushing when a sink refused for good


def jars_dir() -> Path:
    import amazon_kclpy

    return Path(amazon_kclpy.__file__).parent / "jars"


def endpoint(environ: Mapping[str, str], service: str) -> str | None:
    """The endpoint boto3 would use for `service`, for the Java SDK to use too."""
    return environ.get(f"AWS_ENDPOINT_URL_{service.upper()}") or environ.get("AWS_ENDPOINT_URL") or None


def kcl_properties(settings: Settings, worker_id: str, executable: str, environ: Mapping[str, str]) -> dict:
    """The MultiLangDaemon's properties. Pure.

    Names are the setters of the KCL 3.1.3 MultiLangDaemonConfiguration, which
    ignores a name it does not know without a word: each one here was checked
    against the jar (README, "KCL settings")."""
    props = {
        "executableName": executable,
        "streamName": settings.stream_name,
        "applicationName": settings.kcl_application_name,
        "workerId": worker_id,
        "regionName": settings.region,
        **initial_position(settings),
        "AwsCredentialsProvider": "DefaultCredentialsProvider",
        **retrieval(settings),
        # Age-based flushes need a call even when a poll returns nothing.
        "callProcessRecordsEvenForEmptyRecordList": "true",
        "failoverTimeMillis": settings.kcl_failover_time_ms,
        "shardSyncIntervalMillis": settings.kcl_shard_sync_interval_ms,
        "shutdownGraceMillis": settings.kcl_shutdown_grace_ms,
        # KCL's CloudWatch metrics cost money; ours go to Prometheus.
        "metricsLevel": "NONE",
    }
    if settings.kcl_lease_table_pitr:
        # Turns point-in-time recovery on for a new or an existing lease table; false leaves it as it is.
        props["leaseTablePitrEnabled"] = "true"
    if settings.kcl_lease_assignment_interval_ms:
        props["leaseAssignmentIntervalMillis"] = settings.kcl_lease_assignment_interval_ms
    if settings.kcl_worker_metrics_interval_ms:
        # The leader counts a worker alive until its metrics are two intervals
        # old, and gives a stopped worker's leases away only then.
        props["workerMetricsReporterFreqInMillis"] = settings.kcl_worker_metrics_interval_ms
    for service, key in (("kinesis", "kinesisEndpoint"), ("dynamodb", "dynamoDBEndpoint")):
        url = endpoint(environ, service)
        if url:
            props[key] = url
    return props


def initial_position(settings: Settings) -> dict:
    """Where a lease without a checkpoint starts. AT_TIMESTAMP has no value of
    initialPositionInStream (the daemon refuses it): its property is
    initialPositionInStreamExtended, in whole seconds since the epoch (so a
    fraction starts up to a second early; the sinks are idempotent)."""
    if settings.kcl_initial_position == "AT_TIMESTAMP":
        return {"initialPositionInStreamExtended": math.floor(settings.initial_timestamp.timestamp())}
    return {"initialPositionInStream": settings.kcl_initial_position}


def retrieval(settings: Settings) -> dict:
    """Polling (GetRecords, the shard's 2 MiB/s shared by every reader) or
    enhanced fan-out (SubscribeToShard as a registered stream consumer, its own
    2 MiB/s per shard). The KCL registers the consumer, named after the
    application unless fanoutConfig.consumerName says otherwise; the polling
    settings do not apply to fan-out."""
    if settings.kcl_retrieval_mode == "fanout":
        props = {"retrievalMode": "FANOUT"}
        if settings.kcl_consumer_name:
            props["fanoutConfig.consumerName"] = settings.kcl_consumer_name
        return props
    return {
        "retrievalMode": "POLLING",
        "maxRecords": settings.kcl_max_records,
        "idleTimeBetweenReadsInMillis": settings.kcl_idle_time_between_reads_ms,
    }


def render_properties(props: Mapping[str, object]) -> str:
    return "".join(f"{key} = {value}\n" for key, value in props.items())


def logback_config(level: str) -> str:
    """The daemon's own logging: plain lines on stderr at `level`. Pure.

    The multilang classes that log every message exchanged with a processor
    at INFO (several a second per shard, even when idle) are kept at WARN.
    """
    return f"""<configuration>
  <appender name="STDERR" class="ch.qos.logback.core.ConsoleAppender">
    <target>System.err</target>
    <encoder><pattern>%d{{ISO8601}} kcl %-5level %logger{{36}} [%mdc{{ShardId:-NONE}}] - %msg%n</pattern></encoder>
  </appender>
  <logger name="software.amazon.kinesis.multilang.MultiLangProtocol" level="WARN"/>
  <logger name="software.amazon.kinesis.multilang.MessageWriter" level="WARN"/>
  <logger name="software.amazon.kinesis.multilang.LineReaderTask" level="WARN"/>
  <root level="{level.upper()}"><appender-ref ref="STDERR"/></root>
</configuration>
"""


def java_command(settings: Settings, properties_file: Path, environ: Mapping[str, str]) -> list[str]:
    logback = properties_file.parent / "logback.xml"
    command = [settings.java_bin, f"-Dlogback.configurationFile={logback}"]
    if endpoint(environ, "kinesis"):
        # Emulators speak Kinesis' JSON protocol, not the CBOR the SDK prefers.
        command.append("-Daws.cborEnabled=false")
    classpath = f"{jars_dir()}/*{os.pathsep}{properties_file.parent}"
    return command + ["-cp", classpath, MULTILANG_DAEMON, "--properties-file", str(properties_file)]


def relay_processor_logs(workdir: Path) -> Path:
    """A named pipe the record processors log to, copied line by line to our
    stderr by a daemon thread. Lines under PIPE_BUF arrive whole."""
    pipe = workdir / "processors.log"
    os.mkfifo(pipe, 0o600)
    # Held open for writing too, so the reader never sees end-of-file
    # between one processor closing and the next opening.
    reader = open(os.open(pipe, os.O_RDONLY | os.O_NONBLOCK), "rb", buffering=0)
    keepalive = os.open(pipe, os.O_WRONLY)
    os.set_blocking(reader.fileno(), True)

    def copy() -> None:
        for line in reader:
            sys.stderr.buffer.write(line)
            sys.stderr.flush()

    threading.Thread(target=copy, name="processor-logs", daemon=True).start()
    return pipe


def prune_dead_processes(metrics_dir: Path) -> None:
    """Drop the live-gauge files of record processors that have exited, so a
    shard's series goes with its lease. Counter files stay: totals never drop."""
    for path in metrics_dir.glob("gauge_live*_*.db"):
        pid = int(path.stem.rsplit("_", 1)[1])
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            multiprocess.mark_process_dead(pid, str(metrics_dir))
        except PermissionError:
            pass


def metrics_registry(metrics_dir: Path, own: CollectorRegistry | None = None) -> CollectorRegistry:
    """Every record processor's metrics, read afresh from their files, and
    this process's own (the group loader's), if any."""
    prune_dead_processes(metrics_dir)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(metrics_dir))
    if own is not None:
        registry.register(_Everything(own))
    return registry


class _Everything:
    """A collector yielding every metric of another registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self):
        return self._registry.collect()


def group_loader(settings: Settings):
    """The task's group loader in WAREHOUSE_LOAD_MODE=grouped, else None."""
    if settings.warehouse_load_mode != "grouped":
        return None
    from consumer.wiring import build_group_loader, service_clients

    return build_group_loader(settings, service_clients(settings))


def sink_refusal(path: Path) -> dict | None:
    """What a record processor wrote when a sink refused for good (sink,
    resource, error), or None."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except ValueError:  # caught mid-write: refused all the same
        return {}


class DaemonHealth:
    """What /healthz and /readyz report: the daemon runs; it is initialized
    (it holds leases or is waiting for them) and no sink has refused for good."""

    def __init__(self, refusal_file: Path) -> None:
        self.process: subprocess.Popen | None = None
        self.initialized = threading.Event()
        self.refusal_file = refusal_file

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def refused(self) -> bool:
        return self.refusal_file.exists()

    def ready(self) -> bool:
        return self.alive() and self.initialized.is_set() and not self.refused()

    def follow(self, process: subprocess.Popen) -> None:
        """Copy the daemon's log lines to our stderr, noting when it is initialized."""
        self.process = process

        def copy() -> None:
            for line in process.stdout:
                if not self.initialized.is_set() and READY_LINE.encode() in line:
                    self.initialized.set()
                sys.stderr.buffer.write(line)
                sys.stderr.flush()

        threading.Thread(target=copy, name="daemon-logs", daemon=True).start()


def run(settings: Settings, environ: Mapping[str, str]) -> int:
    """Run the daemon until it exits; returns its exit status (0 after a
    stop we forwarded). Its files live in a temporary folder removed after."""
    with tempfile.TemporaryDirectory(prefix="kcl-", ignore_cleanup_errors=True) as workdir:
        return supervise(settings, environ, Path(workdir))


def supervise(settings: Settings, environ: Mapping[str, str], workdir: Path) -> int:
    from consumer.record_processor import LOG_PIPE_ENV, REFUSAL_FILE_ENV

    worker_id = settings.worker_id()  # once: it may ask the ECS metadata endpoint
    executable = f"{sys.executable} -u -m consumer.record_processor"
    properties_file = workdir / "consumer.properties"
    properties_file.write_text(render_properties(kcl_properties(settings, worker_id, executable, environ)))
    (workdir / "logback.xml").write_text(logback_config(settings.kcl_log_level))
    command = java_command(settings, properties_file, environ)
    metrics_dir = workdir / "metrics"
    metrics_dir.mkdir()
    refusal_file = workdir / "sink-refused.json"
    env = {
        **environ,
        "KCL_WORKER_ID": worker_id,
        LOG_PIPE_ENV: str(relay_processor_logs(workdir)),
        REFUSAL_FILE_ENV: str(refusal_file),
        # Each record processor writes its metrics here; we serve them all.
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        # Their log pipe is no terminal: they render as we do, so one stream reads alike.
        "LOG_FORMAT": "console" if logs.renders_console(settings.log_format, sys.stderr) else "json",
    }
    health = DaemonHealth(refusal_file)
    loader = group_loader(settings)  # grouped mode: this task's loader; None otherwise
    # Bound before the daemon starts, so a taken port fails fast and alone.
    server = MetricsServer(
        settings.metrics_host,
        settings.metrics_port_for("consumer"),
        metrics_path=settings.metrics_path,
        registry=lambda: metrics_registry(metrics_dir, loader.metrics.registry if loader else None),
        checks={"/healthz": health.alive, "/readyz": health.ready},
    ).start()
    log.info("daemon_starting", worker_id=worker_id, stream=settings.stream_name, command=command,
             metrics_port=server.port)
    stopping = threading.Event()
    launched: list[subprocess.Popen] = []

    def forward(signum, _frame):
        log.info("daemon_stopping", signal=signal.Signals(signum).name)
        stopping.set()
        for daemon in launched:
            if daemon.poll() is None:
                daemon.send_signal(signal.SIGTERM)

    # In place before the daemon starts: a stop that comes while it is being
    # started is not lost (wait_for_exit sends it on once the daemon runs).
    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    # Own session: a terminal's Ctrl-C reaches the daemon only through us, once.
    daemon = subprocess.Popen(  # nosec B603: our argv, no shell
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        preexec_fn=functools.partial(die_with_parent, os.getpid()),
    )
    launched.append(daemon)
    health.follow(daemon)
    loading = threading.Event()
    if loader:  # beside the daemon: the queue the shards fill is loaded every interval
        threading.Thread(target=loader.run, args=(loading, settings.warehouse_load_interval_seconds),
                         name="group-loader", daemon=True).start()

    full_grace = settings.kcl_shutdown_grace_ms / 1000 + STOP_MARGIN_SECONDS

    def stop_grace() -> float | None:
        """Seconds the daemon has to exit once a stop is asked; None while it is not."""
        if health.refused():
            if not stopping.is_set():
                log.error("daemon_stopping", reason="a sink refused for good", **(sink_refusal(refusal_file) or {}))
                stopping.set()
            # Its processors have exited, and the daemon would wait out the
            # whole grace for them; nothing is lost by not waiting.
            return REFUSAL_GRACE_SECONDS
        return full_grace if stopping.is_set() else None

    try:
        status = wait_for_exit(daemon, stop_grace)
    finally:
        loading.set()  # a load under way finishes or rolls back; what is queued waits for the next task
        server.stop()
    log.info("daemon_exited", status=status)
    if health.refused():
        return EXIT_SINK_REFUSED
    # The JVM exits 143 after a SIGTERM even when its shutdown was clean.
    if stopping.is_set() and status in (0, 128 + signal.SIGTERM):
        return 0
    return status if status >= 0 else 128 - status


def wait_for_exit(daemon: subprocess.Popen, stop_grace: Callable[[], float | None],
                  resend_seconds: float = STOP_RESEND_SECONDS) -> int:
    """The daemon's exit status. Once `stop_grace()` gives the seconds it has
    (a stop was asked), SIGTERM every
    `resend_seconds`: a JVM signalled in its first moments, before its own
    handlers are in, drops the signal and runs on (measured: a Ctrl-C 60 ms
    after the start left the worker running). Once its shutdown hooks run,
    repeats change nothing. SIGKILL once those seconds are over, still inside
    ECS's stop timeout, so this process ends by itself and says so. A wait with a
    timeout, not a blocking one: a signal the kernel hands to one of our
    other threads does not interrupt a blocking waitpid, so `forward` would
    not run until the daemon had exited by itself (measured: a worker left
    running 60 s after Ctrl-C)."""
    asked = None
    while True:
        try:
            return daemon.wait(timeout=resend_seconds)
        except subprocess.TimeoutExpired:
            pass
        grace = stop_grace()
        if grace is None:
            continue
        asked = asked or time.monotonic()
        if time.monotonic() - asked > grace:
            log.warning("daemon_killed", after_seconds=round(time.monotonic() - asked, 1))
            daemon.kill()
        else:
            daemon.send_signal(signal.SIGTERM)


def main() -> None:
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"consumer: {exc}", file=sys.stderr)
        sys.exit(2)
    logs.configure(settings.log_level, log_format=settings.log_format, service="consumer")
    try:
        sys.exit(run(settings, os.environ))
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        print(f"consumer: metrics port {settings.metrics_port_for('consumer')} is in use "
              "(set METRICS_PORT)", file=sys.stderr)
        sys.exit(2)
