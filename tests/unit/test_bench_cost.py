"""The cost model's arithmetic (bench/cost.py), on cases worked by hand."""

from __future__ import annotations

import dataclasses

import pytest

from bench import cost
from bench.cost import Consumer, Firehose, Workload
from consumer.sinks.dynamodb import to_item
from retail_stream.settings import Settings
from tests.support.consumer_fakes import transaction


@pytest.mark.parametrize("size, billed", [(1, 5120), (300, 5120), (5120, 5120), (5121, 10240), (12_000, 15360)])
def test_firehose_bills_a_record_in_5_kb_steps(size, billed):
    assert cost.firehose_billed_bytes(size) == billed


def test_firehose_tiers():
    assert cost.firehose_ingestion_usd(1000) == pytest.approx(29.0)
    first = 500 * 1024  # 500 TB in GB
    assert cost.firehose_ingestion_usd(first) == pytest.approx(first * 0.029)
    assert cost.firehose_ingestion_usd(first + 1000) == pytest.approx(first * 0.029 + 1000 * 0.025)


def test_a_shard_at_its_write_limit_of_300_byte_records_on_firehose():
    # 1,000 records/s x 5,120 B x 2,628,000 s = 12,531.3 GB, at $0.029.
    gb = 1000 * 5120 * 730 * 3600 / 2**30
    assert gb == pytest.approx(12_531.3, abs=0.1)
    found = cost.compare(Workload(1), Consumer(20.0))
    (line,) = [line for line in found.lines if line.component.startswith("Firehose ingestion")]
    assert line.other == pytest.approx(363.41, abs=0.01)
    assert line.service == 0


@pytest.mark.parametrize("size, units", [(1, 1), (300, 1), (1024, 1), (1025, 2), (4096, 4), (4097, 5)])
def test_write_units_are_per_kb_started(size, units):
    assert cost.write_units(size) == units


def test_item_size_counts_names_and_values_as_dynamodb_does():
    # "ab" 2 + "xyz" 3; "n" 1 + 12.50 -> digits 1,2,5: ceil(3/2) + 1 = 3; "m" 1 + 100 -> 1: 1 + 1 = 2
    assert cost.item_bytes({"ab": {"S": "xyz"}, "n": {"N": "12.50"}, "m": {"N": "100"}}) == 5 + 4 + 3


def test_a_sample_row_is_one_write_unit_and_two_with_its_customer():
    item = to_item(transaction(1))
    assert 100 < cost.item_bytes(item) <= 1024
    workload = Workload(1, records_per_second=10, item_bytes=cost.item_bytes(item), customer_share=0.5)
    assert cost.data_table_write_units(workload) == pytest.approx(10 * 730 * 3600 * 1.5)
    big = dataclasses.replace(workload, item_bytes=1500, customer_share=1.0)
    assert cost.data_table_write_units(big) == pytest.approx(10 * 730 * 3600 * 2 * 2)


@pytest.mark.parametrize("rate, seconds", [(1000, 20), (100, 60), (5000, 4)])
def test_a_shard_flushes_at_the_first_limit(rate, seconds):
    consumer = Consumer.of(Settings(), 10.0)  # 20,000 records, 8 MiB, 60 s
    assert cost.flush_seconds(consumer, Workload(1, records_per_second=rate)) == pytest.approx(seconds)
    # 1,000 records/s of 1,000 B: 8 MiB fills in 8.4 s, before 20,000 records
    assert cost.flush_seconds(consumer, Workload(1, record_bytes=1000)) == pytest.approx(8 * 1024 * 1024 / 1e6)


def test_tasks_follow_the_shards_a_task_holds():
    # 90 + 10 us at 1,000 records/s: 0.1 vCPU a shard; (0.7 - 0.05) / 0.1 = 6.5 -> 6 in 1 vCPU;
    # memory (2048 - 788) / 109 = 11.6 does not bind.
    consumer = Consumer(90.0, jvm_us_per_record=10.0)
    assert cost.vcpu_per_shard(consumer, Workload(1)) == pytest.approx(0.1)
    assert cost.shards_that_fit(consumer, Workload(1), 1.0, 2.0) == 6
    plan = cost.task_plan(consumer, Workload(100))
    assert (plan.tasks, plan.shards_per_task, plan.vcpu, plan.memory_gb) == (17, 6, 1.0, 2.0)
    assert plan.usd_month == pytest.approx(17 * (0.04048 + 2 * 0.004445) * 730)


def test_memory_binds_when_the_cpu_is_cheap():
    consumer = Consumer(1.0, jvm_us_per_record=1.0)  # 0.002 vCPU a shard: memory decides, (2048 - 788) / 109 -> 11 a task
    assert cost.task_plan(consumer, Workload(100)).tasks == 10


def test_a_lone_shard_gets_the_smallest_task_that_holds_it():
    # 788 + 109 MB > 0.5 GB: the smallest is 0.25 vCPU / 1 GB ((0.175 - 0.05) / 0.024 = 5 shards by CPU).
    plan = cost.task_plan(Consumer(14.0), Workload(1))
    assert (plan.tasks, plan.vcpu, plan.memory_gb) == (1, 0.25, 1)
    # 10 shards share one task, sized down to 0.5 vCPU / 2 GB: 788 + 1,090 MB, (0.35 - 0.05) / 0.024 = 12.5.
    plan = cost.task_plan(Consumer(14.0), Workload(10))
    assert (plan.tasks, plan.vcpu, plan.memory_gb) == (1, 0.5, 2)


def test_a_shard_too_heavy_for_the_largest_task_is_refused():
    with pytest.raises(ValueError, match="a shard needs more"):
        cost.task_plan(Consumer(1000.0), Workload(1))


def test_copies_an_hour_per_load_mode():
    workload = Workload(64)
    batch = Consumer.of(Settings(), 14.0)
    grouped = Consumer.of(dataclasses.replace(Settings(), warehouse_load_mode="grouped"), 14.0)
    plan = cost.task_plan(batch, workload)
    assert cost.copies_per_hour(batch, workload, plan) == 64 * 180  # a flush every 20 s
    assert cost.copies_per_hour(grouped, workload, plan) == plan.tasks * 60  # a load a minute a task


def test_s3_requests_per_load_mode():
    workload = Workload(1)
    batch = Consumer.of(Settings(), 14.0)
    plan = cost.task_plan(batch, workload)
    flushes = 730 * 3600 / 20
    assert cost.service_s3_requests(batch, workload, plan) == cost.Requests(s3_put=2 * flushes, s3_get=2 * flushes)
    grouped = dataclasses.replace(batch, load_mode="grouped")
    loads = 730 * 60
    # per flush: object + marker PUT, the COPY's and the loader's GET; per load: LIST, manifest, DeleteObjects
    # and the COPY's GETs of the manifest and the JSONPaths file
    assert cost.service_s3_requests(grouped, workload, plan) == cost.Requests(
        s3_put=2 * flushes + 3 * loads, s3_get=2 * flushes + 2 * loads)


def test_kcl_tables_renewals_and_checkpoints():
    consumer = Consumer.of(Settings(), 14.0)
    workload = Workload(10)
    plan = cost.task_plan(consumer, workload)
    lease = cost.kcl_table_requests(consumer, workload, plan)["lease"]
    # a renewal every 3.33 s and a checkpoint every 20 s, per shard
    assert lease.dynamodb_write_units == pytest.approx(10 * 730 * 3600 * (0.3 + 0.05))


def test_lambda_duration_and_invocations():
    # 1,000 records a batch, once a second; 50 us at 512/1769 of a vCPU = 172.8 ms, plus 40 calls, 8 at a
    # time: 5 round trips of 10 ms.
    plan = cost.lambda_plan(Firehose(), Workload(1), 50.0)
    assert plan.invocations_per_month == pytest.approx(730 * 3600)
    assert plan.seconds_per_invocation == pytest.approx(1000 * 50e-6 * 1769 / 512 + 0.05)
    assert plan.usd_month == pytest.approx(plan.gb_seconds * 0.0000166667 + 2.628 * 0.2)
    slow = cost.lambda_plan(Firehose(), Workload(1, records_per_second=100), 50.0)
    assert slow.invocations_per_month == pytest.approx(730 * 3600)  # the window closes with 100 records


def test_common_costs_are_the_same_on_both_sides_and_the_totals_add_up():
    found = cost.compare(Workload(10), Consumer(14.0))
    for line in found.lines:
        if line.common:
            assert line.service == line.other > 0
        else:
            assert (line.service == 0) != (line.other == 0)
    assert found.service_total == pytest.approx(sum(line.service for line in found.lines))
    kinesis = found.lines[0]
    assert kinesis.service == pytest.approx(10 * (0.015 * 730 + 1000 * 730 * 3600 / 1e6 * 0.014))


def test_what_make_bench_prints():
    figures = cost.per_shard_figures(14.0, Settings())
    assert figures["consumer_vcpu_per_shard"] == pytest.approx(0.024)
    assert 0 < figures["cost_per_shard_month_usd"] < figures["cost_per_shard_month_firehose_lambda_usd"]
    assert "100 shards" in figures["cost_model"]


def test_the_table_has_a_row_per_component_and_two_columns_per_shard_count():
    table = cost.markdown([cost.compare(Workload(n), Consumer(14.0)) for n in (1, 10)])
    lines = table.splitlines()
    assert len(lines) == 2 + 11 + 2
    assert all(line.count("|") == 6 for line in lines)


def test_the_tasks_read_the_stream_through_an_interface_endpoint():
    found = cost.compare(Workload(1), Consumer(14.0))
    (line,) = [line for line in found.lines if line.component.startswith("VPC interface endpoint")]
    # 2 AZs x $0.01 x 730 h, and 1,000 x 300 B x 2,628,000 s = 734.2 GB at $0.01
    assert line.service == pytest.approx(14.60 + 7.342, abs=0.001)
    assert line.other == 0
