from pathlib import Path

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
