from pathlib import Path

import pytest

from consumer.daemon import java_command, jars_dir, kcl_properties, render_properties
from retail_stream.settings import Settings


def test_properties_point_the_kcl_at_the_configured_endpoint():
    settings = Settings(kcl_lease_assignment_interval_ms=2000, kcl_worker_metrics_interval_ms=1500)
    env = {"AWS_ENDPOINT_URL": "http://127.0.0.1:4566"}
    props = kcl_properties(settings, "worker-1", "/py -u -m consumer.record_processor", env)
    assert props["kinesisEndpoint"] == props["dynamoDBEndpoint"] == "http://127.0.0.1:4566"
    assert props["workerId"] == "worker-1"
    assert props["streamName"] == "retail-transactions"
    assert props["callProcessRecordsEvenForEmptyRecordList"] == "true"
    assert props["leaseAssignmentIntervalMillis"] == 2000
    assert props["workerMetricsReporterFreqInMillis"] == 1500
    assert "executableName = /py -u -m consumer.record_processor\n" in render_properties(props)


def test_real_aws_gets_no_endpoint_and_no_cbor_switch(tmp_path: Path):
    settings = Settings()
    props = kcl_properties(settings, "w", "x", {})
    assert "kinesisEndpoint" not in props and "dynamoDBEndpoint" not in props
    assert "workerMetricsReporterFreqInMillis" not in props  # the KCL's own default
    command = java_command(settings, tmp_path / "c.properties", {})
    assert "-Daws.cborEnabled=false" not in command
    assert command[-2:] == ["--properties-file", str(tmp_path / "c.properties")]


def test_service_specific_endpoint_wins():
    env = {"AWS_ENDPOINT_URL": "http://a:1", "AWS_ENDPOINT_URL_KINESIS": "http://k:2"}
    props = kcl_properties(Settings(), "w", "x", env)
    assert props["kinesisEndpoint"] == "http://k:2"
    assert props["dynamoDBEndpoint"] == "http://a:1"


def test_the_kcl_jars_ship_in_the_wheel():
    jars = {p.name for p in jars_dir().glob("*.jar")}
    assert "amazon-kinesis-client-multilang-3.1.3.jar" in jars


def test_the_java_daemon_dies_with_its_supervisor(tmp_path):
    # A supervisor killed outright must not leave its JVM behind: that JVM
    # would go on renewing leases under the worker's id.
    import os
    import signal
    import subprocess
    import sys
    import time

    script = (
        "import subprocess, sys, time\n"
        "import functools, os\n"
        "from consumer.lifetime import die_with_parent\n"
        "child = subprocess.Popen(['sleep', '60'], start_new_session=True,\n"
        "                         preexec_fn=functools.partial(die_with_parent, os.getpid()))\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    parent.send_signal(signal.SIGKILL)
    parent.wait(5)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    os.kill(child, signal.SIGKILL)
    raise AssertionError("the child outlived its parent")


def test_a_processor_whose_supervisor_is_gone_logs_to_stderr_without_hanging(tmp_path, monkeypatch):
    # The log pipe has no reader once the supervisor died; a blocking open would wait forever.
    import os
    import sys

    from consumer.record_processor import LOG_PIPE_ENV, log_stream

    pipe = tmp_path / "logs.fifo"
    os.mkfifo(pipe)
    monkeypatch.setenv(LOG_PIPE_ENV, str(pipe))
    assert log_stream() is sys.stderr


# A stand-in for a JVM signalled before its handlers are in: the first
# SIGTERM is lost, the second ends it; with "never", no SIGTERM ends it.
_DEAF_CHILD = """
import signal, sys, time
lost = []
def on_term(signum, frame):
    if sys.argv[1] == "never" or not lost:
        lost.append(signum)
        return
    sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
print("ready", flush=True)
while True:
    time.sleep(0.05)
"""


def _deaf_child(mode):
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", _DEAF_CHILD, mode], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "ready"
    return child


def test_a_stop_the_daemon_missed_is_sent_again():
    import signal
    import threading

    from consumer.daemon import wait_for_exit

    child = _deaf_child("once")
    stopping = threading.Event()
    stopping.set()
    child.send_signal(signal.SIGTERM)  # lost, as the JVM loses it in its first moments
    assert wait_for_exit(child, lambda: 10 if stopping.is_set() else None, resend_seconds=0.2) == 0


def test_a_daemon_that_will_not_stop_is_killed_after_the_grace():
    import signal
    import threading
    import time

    from consumer.daemon import wait_for_exit

    child = _deaf_child("never")
    stopping = threading.Event()
    stopping.set()
    started = time.monotonic()
    assert wait_for_exit(child, lambda: 0.5 if stopping.is_set() else None, resend_seconds=0.1) == -signal.SIGKILL
    assert time.monotonic() - started < 5


def test_no_stop_asked_no_signal_sent():
    import threading

    from consumer.daemon import wait_for_exit

    child = _deaf_child("never")
    stopping = threading.Event()
    waiter = threading.Thread(target=lambda: wait_for_exit(child, lambda: 28 if stopping.is_set() else None, resend_seconds=0.05), daemon=True)
    waiter.start()
    waiter.join(0.5)
    assert waiter.is_alive() and child.poll() is None
    child.kill()
    waiter.join(5)
    assert not waiter.is_alive()


def test_readiness_goes_false_once_a_sink_refused_for_good(tmp_path: Path):
    import subprocess
    import sys

    from consumer.daemon import DaemonHealth, sink_refusal

    refusal = tmp_path / "refused.json"
    health = DaemonHealth(refusal)
    health.process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        health.initialized.set()
        assert health.ready() and sink_refusal(refusal) is None
        refusal.write_text('{"sink": "dynamodb", "resource": "t", "error": "AccessDeniedException"}')
        assert health.alive() and not health.ready()
        assert sink_refusal(refusal) == {"sink": "dynamodb", "resource": "t", "error": "AccessDeniedException"}
    finally:
        health.process.kill()
        health.process.wait()


KCL_CASES = {
    # name: (environment, properties expected, properties that must be absent)
    "defaults: polling from the trim horizon": (
        {},
        {"initialPositionInStream": "TRIM_HORIZON", "retrievalMode": "POLLING", "maxRecords": 10_000,
         "idleTimeBetweenReadsInMillis": 1_000},
        {"initialPositionInStreamExtended", "fanoutConfig.consumerName", "leaseTablePitrEnabled"},
    ),
    "latest": (
        {"KCL_INITIAL_POSITION": "LATEST"},
        {"initialPositionInStream": "LATEST"},
        {"initialPositionInStreamExtended"},
    ),
    # The daemon refuses initialPositionInStream = AT_TIMESTAMP ("Invalid InitialPosition"):
    # the extended property alone, in seconds since the epoch.
    "at a timestamp": (
        {"KCL_INITIAL_POSITION": "AT_TIMESTAMP", "KCL_INITIAL_TIMESTAMP": "2026-12-01T06:30:00Z"},
        {"initialPositionInStreamExtended": 1_796_106_600},
        {"initialPositionInStream"},
    ),
    "at a timestamp with a fraction starts at its second": (
        {"KCL_INITIAL_POSITION": "AT_TIMESTAMP", "KCL_INITIAL_TIMESTAMP": "2026-12-01T06:30:00.999+00:00"},
        {"initialPositionInStreamExtended": 1_796_106_600},
        {"initialPositionInStream"},
    ),
    "fan-out, the consumer named after the application": (
        {"KCL_RETRIEVAL_MODE": "fanout"},
        {"retrievalMode": "FANOUT"},
        {"fanoutConfig.consumerName", "maxRecords", "idleTimeBetweenReadsInMillis"},
    ),
    "fan-out with a consumer name": (
        {"KCL_RETRIEVAL_MODE": "fanout", "KCL_CONSUMER_NAME": "retail-efo"},
        {"retrievalMode": "FANOUT", "fanoutConfig.consumerName": "retail-efo"},
        {"maxRecords"},
    ),
    "lease table with point-in-time recovery": (
        {"KCL_LEASE_TABLE_PITR": "true", "KCL_LEASE_TABLE_BILLING_MODE": "PAY_PER_REQUEST"},
        {"leaseTablePitrEnabled": "true"},
        # No billing-mode property: the daemon has none for the lease table, and ignores unknown names.
        {"billingMode", "leaseTableBillingMode"},
    ),
    "lease table without it": (
        {"KCL_LEASE_TABLE_PITR": "false"},
        {},
        {"leaseTablePitrEnabled"},
    ),
}


@pytest.mark.parametrize("environment, expected, absent", KCL_CASES.values(), ids=KCL_CASES.keys())
def test_each_kcl_choice_gives_its_properties(environment, expected, absent):
    props = kcl_properties(Settings.from_env(environment), "w", "x", {})
    assert {key: props.get(key) for key in expected} == expected
    assert absent.isdisjoint(props)
    assert "initialPositionInStream" in props or "initialPositionInStreamExtended" in props


def test_at_timestamp_renders_a_whole_number_of_seconds():
    settings = Settings.from_env({"KCL_INITIAL_POSITION": "AT_TIMESTAMP",
                                  "KCL_INITIAL_TIMESTAMP": "1970-01-01T00:01:40.5Z"})
    assert "initialPositionInStreamExtended = 100\n" in render_properties(kcl_properties(settings, "w", "x", {}))
