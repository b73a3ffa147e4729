"""docker-compose.yml, checked without a container engine: what the podman
runner of `make container-test` makes of the file (hadolint and the Compose
specification's schema check it in tests/tools/test_container_files.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.containers.compose import (
    ComposeError, Project, dependencies, interpolate, seconds, start_order,
)

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"


@pytest.mark.parametrize("text, environ, expected", [
    ("${PORT:-4566}", {}, "4566"),
    ("${PORT:-4566}", {"PORT": ""}, "4566"),
    ("${PORT-4566}", {"PORT": ""}, ""),
    ("${PORT:-4566}", {"PORT": "5000"}, "5000"),
    ("a${X}b", {}, "ab"),
    ("cost $$5", {}, "cost $5"),
])
def test_interpolation_follows_compose(text, environ, expected):
    assert interpolate({"k": [text]}, environ) == {"k": [expected]}


def test_durations():
    assert seconds("30s") == 30 and seconds("1m30s") == 90 and seconds("500ms") == 0.5 and seconds(5) == 5
    with pytest.raises(ComposeError):
        seconds("30 seconds")


def test_services_start_after_what_they_depend_on():
    project = Project.load(COMPOSE, "t", {})
    order = start_order(project.services)
    for service, spec in project.services.items():
        for dependency in dependencies(spec):
            assert order.index(dependency) < order.index(service), (dependency, service)
    assert dependencies(project.services["consumer"]) == {"init": "service_completed_successfully"}


def test_the_consumer_runs_as_the_compose_file_says():
    project = Project.load(COMPOSE, "t", {"BASE_IMAGE": "localhost/base", "EMULATOR_PORT": "1234"})
    argv = project.run_argv("consumer", 2)
    assert argv[:4] == ["run", "--detach", "--name", "t_consumer_2"]
    assert ["--network-alias", "consumer"] == argv[argv.index("--network-alias"):][:2]
    assert "--read-only" in argv and ["--tmpfs", "/tmp"] == argv[argv.index("--tmpfs"):][:2]
    assert ["--stop-timeout", "30"] == argv[argv.index("--stop-timeout"):][:2]
    assert "AWS_ENDPOINT_URL=http://emulator:4566" in argv
    assert argv[-1] == "retail-stream/consumer:latest"
    build = project.build_argv("consumer")
    assert "BASE_IMAGE=localhost/base" in build and build[build.index("--target") + 1] == "consumer"
    assert "127.0.0.1:1234:4566" in project.run_argv("emulator")
    assert project.build_argv("init") is None
    assert project.run_argv("init")[-7:] == ["retail-stream/emulator:latest", "python", "-m", "local_stack", "provision",
                                             "--api-keys", "/run/api-keys"]


@pytest.mark.parametrize("service", ["emulator", "postgres", "init", "consumer", "producer", "api", "prometheus"])
def test_every_container_drops_every_capability_and_privilege_gain(service):
    argv = Project.load(COMPOSE, "t", {}).run_argv(service)
    assert ["--cap-drop", "ALL"] == argv[argv.index("--cap-drop"):][:2]
    assert ["--security-opt", "no-new-privileges"] == argv[argv.index("--security-opt"):][:2]
    assert "--read-only" in argv


def test_the_api_runs_as_the_compose_file_says():
    project = Project.load(COMPOSE, "t", {"API_PORT": "1234"})
    argv = project.run_argv("api")
    assert "127.0.0.1:1234:8080" == argv[argv.index("--publish") + 1]
    assert "--read-only" in argv and ["--tmpfs", "/tmp"] == argv[argv.index("--tmpfs"):][:2]
    assert ["--stop-timeout", "30"] == argv[argv.index("--stop-timeout"):][:2]
    assert "AWS_ENDPOINT_URL=http://emulator:4566" in argv
    health = json.loads(argv[argv.index("--health-cmd") + 1])
    assert health[:2] == ["python", "-c"] and "http://127.0.0.1:8080/healthz" in health[2]
    assert argv[-1] == "retail-stream/api:latest"
    assert dependencies(project.services["api"]) == {"init": "service_completed_successfully"}
    assert "API_KEYS_FILE=/run/api-keys/api-keys.json" in argv and "t_api-keys:/run/api-keys:ro" in argv
    build = project.build_argv("api")
    assert build[build.index("--target") + 1] == "api"
    assert "127.0.0.1:8080:8080" in Project.load(COMPOSE, "t", {}).run_argv("api")


def test_prometheus_finds_the_api_in_the_compose_targets():
    config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    (job,) = [job for job in config["scrape_configs"] if job["job_name"] == "retail-api"]
    (files,) = [sd["files"] for sd in job["file_sd_configs"]]
    assert files == ["targets/api.json"]
    targets = json.loads((ROOT / "deploy" / "prometheus" / "targets-compose" / "api.json").read_text())
    assert targets == [{"targets": ["api:9103"]}]  # API_METRICS_PORT: /metrics is not on the API's port


def test_volumes_are_the_projects_and_bind_mounts_are_absolute():
    project = Project.load(COMPOSE, "t", {})
    argv = project.run_argv("prometheus")
    volumes = [argv[i + 1] for i, arg in enumerate(argv) if arg == "--volume"]
    assert f"{ROOT}/deploy/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in volumes
    assert "t_prometheus:/prometheus" in volumes


def test_a_key_the_runner_does_not_follow_is_an_error(tmp_path):
    spec = yaml.safe_load(COMPOSE.read_text())
    spec["services"]["consumer"]["cap_add"] = ["NET_ADMIN"]
    changed = tmp_path / "docker-compose.yml"
    changed.write_text(yaml.safe_dump(spec))
    with pytest.raises(ComposeError, match="cap_add"):
        Project.load(changed, "t", {})
