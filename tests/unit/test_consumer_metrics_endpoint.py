"""One endpoint for every record-processor process, in prometheus_client's
multiprocess mode: a shard's gauges go with its process, totals stay."""

import os
import subprocess
import sys
import textwrap

from consumer.daemon import metrics_registry

SHARD_PROCESS = textwrap.dedent("""
    import sys, time
    from consumer.metrics import ConsumerMetrics, ShardMetrics
    metrics = ShardMetrics(ConsumerMetrics(), sys.argv[1])
    metrics.lease(True)
    metrics.lag(int(sys.argv[2]))
    metrics.received(10)
    print("ready", flush=True)
    if sys.argv[3] == "stay":
        time.sleep(60)
""")


def shard_process(directory, shard, lag, mode):
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    process = subprocess.Popen([sys.executable, "-c", SHARD_PROCESS, shard, str(lag), mode], env=env,
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "ready"
    return process


def sample(registry, name, **labels):
    return registry.get_sample_value(name, labels)


def test_live_shards_appear_and_a_gone_shard_leaves_only_its_totals(tmp_path):
    staying = shard_process(tmp_path, "shardId-000000000000", 1200, "stay")
    leaving = shard_process(tmp_path, "shardId-000000000001", 3400, "leave")
    leaving.wait(10)
    try:
        registry = metrics_registry(tmp_path)
        assert sample(registry, "retail_consumer_millis_behind_latest", shard_id="shardId-000000000000") == 1200
        assert sample(registry, "retail_consumer_millis_behind_latest", shard_id="shardId-000000000001") is None
        assert sample(registry, "retail_consumer_leases_held") == 1
        assert sample(registry, "retail_consumer_records_received_total") == 20
        assert not list(tmp_path.glob(f"gauge_live*_{leaving.pid}.db"))  # pruned, not piling up
    finally:
        staying.kill()
        staying.wait()
