"""docker-compose.yml, followed with podman.

There is no Docker engine where the project is tested, and podman-compose
cannot wait on `depends_on` conditions without systemd (podman runs
healthchecks from systemd timers). This reads the shipped compose file and
does what `docker compose up` does with it: interpolates `${VAR:-default}`,
builds the images, creates the network and volumes, starts the services in
dependency order, waits on `service_healthy` (running the healthcheck itself)
and `service_completed_successfully`, and scales. Only the keys the project's
file uses are supported; any other key is an error, not ignored, so the file
cannot drift from what is tested.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from dataclasses import dataclass, field
from graphlib import TopologicalSorter
from pathlib import Path
from typing import Any, Mapping

import yaml

SERVICE_KEYS = {
    "build", "image", "command", "environment", "ports", "volumes", "tmpfs", "read_only",
    "stop_grace_period", "depends_on", "healthcheck", "cap_drop", "security_opt",
}
BUILD_KEYS = {"context", "dockerfile", "target", "args"}
VARIABLE = re.compile(r"\$(?:\$|\{(?P<name>\w+)(?:(?P<op>:?-)(?P<default>[^}]*))?\})")


class ComposeError(Exception):
    """The compose file uses something this runner does not follow, or a service failed."""


def interpolate(value: Any, environ: Mapping[str, str]) -> Any:
    """Compose's variable substitution, over every string of a parsed file. Pure."""
    if isinstance(value, str):
        def substitute(match: re.Match) -> str:
            if match.group(0) == "$$":
                return "$"
            name, op, default = match["name"], match["op"], match["default"]
            current = environ.get(name)
            if op == ":-" and not current:
                return default
            if op == "-" and current is None:
                return default
            return current or ""
        return VARIABLE.sub(substitute, value)
    if isinstance(value, dict):
        return {key: interpolate(item, environ) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, environ) for item in value]
    return value


def seconds(duration: str | int | float) -> float:
    """A compose duration (`30s`, `1m30s`, `500ms`) in seconds. Pure."""
    if isinstance(duration, (int, float)):
        return float(duration)
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", duration)
    if not parts or "".join(n + u for n, u in parts) != duration:
        raise ComposeError(f"not a duration: {duration!r}")
    scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(float(number) * scale[unit] for number, unit in parts)


def dependencies(service: Mapping[str, Any]) -> dict[str, str]:
    """depends_on in its long form: {service: condition}. Pure."""
    depends = service.get("depends_on", {})
    if isinstance(depends, list):
        return {name: "service_started" for name in depends}
    return {name: spec.get("condition", "service_started") for name, spec in depends.items()}


def start_order(services: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Services, each after those it depends on. Pure."""
    graph = {name: set(dependencies(service)) for name, service in services.items()}
    return list(TopologicalSorter(graph).static_order())


def check_supported(services: Mapping[str, Mapping[str, Any]]) -> None:
    for name, service in services.items():
        unknown = set(service) - SERVICE_KEYS
        build = service.get("build", {})
        unknown |= {f"build.{key}" for key in set(build) - BUILD_KEYS}
        if unknown:
            raise ComposeError(f"service {name}: keys this runner does not follow: {sorted(unknown)}")


def environment_list(environment: Mapping[str, Any] | list[str] | None) -> list[str]:
    if environment is None:
        return []
    if isinstance(environment, list):
        return environment
    return [f"{key}={'' if value is None else value}" for key, value in environment.items()]


@dataclass(frozen=True)
class Project:
    """A parsed, interpolated compose file."""

    name: str
    directory: Path
    services: dict[str, dict[str, Any]]
    volumes: list[str]

    @classmethod
    def load(cls, path: Path, name: str, environ: Mapping[str, str]) -> Project:
        spec = interpolate(yaml.safe_load(path.read_text()), environ)
        services = spec["services"]
        check_supported(services)
        return cls(name, path.parent.resolve(), services, list(spec.get("volumes") or {}))

    def container(self, service: str, index: int = 1) -> str:
        return f"{self.name}_{service}_{index}"

    @property
    def network(self) -> str:
        return f"{self.name}_default"

    def build_argv(self, service: str) -> list[str] | None:
        """The `podman build` of a service with a build section, else None. Pure."""
        spec = self.services[service]
        build = spec.get("build")
        if build is None:
            return None
        context = self.directory / build.get("context", ".")
        argv = ["build", "--format", "docker", "--tag", spec["image"],
                "--file", str(context / build.get("dockerfile", "Dockerfile"))]
        if "target" in build:
            argv += ["--target", build["target"]]
        for key, value in (build.get("args") or {}).items():
            argv += ["--build-arg", f"{key}={value}"]
        return argv + [str(context)]

    def run_argv(self, service: str, index: int = 1) -> list[str]:
        """The `podman run` of one replica of a service. Pure."""
        spec = self.services[service]
        argv = ["run", "--detach", "--name", self.container(service, index),
                "--label", f"com.docker.compose.project={self.name}",
                "--label", f"com.docker.compose.service={service}",
                "--network", self.network, "--network-alias", service]
        for variable in environment_list(spec.get("environment")):
            argv += ["--env", variable]
        for port in spec.get("ports", []):
            argv += ["--publish", port]
        for volume in spec.get("volumes", []):
            source, _, rest = volume.partition(":")
            if source.startswith((".", "/")):
                source = str((self.directory / source).resolve())
            elif source in self.volumes:
                source = f"{self.name}_{source}"
            argv += ["--volume", f"{source}:{rest}"]
        for mount in spec.get("tmpfs", []):
            argv += ["--tmpfs", mount]
        if spec.get("read_only"):
            argv.append("--read-only")
        for capability in spec.get("cap_drop", []):
            argv += ["--cap-drop", capability]
        for option in spec.get("security_opt", []):
            argv += ["--security-opt", option]
        if "stop_grace_period" in spec:
            argv += ["--stop-timeout", str(int(seconds(spec["stop_grace_period"])))]
        check = spec.get("healthcheck")
        if check:
            test = check["test"]
            argv += ["--health-cmd", json.dumps(test[1:]) if test[0] == "CMD" else test[1]]
            for key, flag in (("interval", "--health-interval"), ("timeout", "--health-timeout"),
                              ("start_period", "--health-start-period"), ("retries", "--health-retries")):
                if key in check:
                    argv += [flag, str(check[key])]
        argv.append(spec["image"])
        command = spec.get("command")
        if command is not None:
            argv += command if isinstance(command, list) else ["sh", "-c", command]
        return argv


@dataclass
class Podman:
    """The podman command line, with the settings this machine needs (runc, low rlimits)."""

    config: Path | None = None
    log: list[str] = field(default_factory=list)

    def __call__(self, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
        env = dict(os.environ)
        if self.config is not None:
            env["CONTAINERS_CONF"] = str(self.config)
        self.log.append(" ".join(args))
        result = subprocess.run(["podman", *args], capture_output=True, text=True, env=env, timeout=timeout)
        if check and result.returncode != 0:
            raise ComposeError(f"podman {' '.join(args[:3])}… exited {result.returncode}: {result.stderr[-2000:]}")
        return result


class ComposeStack:
    """`up`, `down` and the few other verbs of docker compose, on podman."""

    def __init__(self, project: Project, podman: Podman) -> None:
        self.project = project
        self.podman = podman

    def build(self, services: list[str]) -> dict[str, float]:
        """Builds each image once; returns seconds per service built."""
        took = {}
        for service in services:
            argv = self.project.build_argv(service)
            if argv is not None:
                started = time.monotonic()
                self.podman(*argv, timeout=1800)
                took[service] = time.monotonic() - started
        return took

    def up(self, services: list[str], scale: Mapping[str, int] | None = None, timeout: float = 300) -> None:
        scale = scale or {}
        wanted = set(services)
        order = [s for s in start_order(self.project.services) if s in wanted]
        self.podman("network", "create", self.project.network)
        for volume in self.project.volumes:
            self.podman("volume", "create", f"{self.project.name}_{volume}")
        for service in order:
            for dependency, condition in dependencies(self.project.services[service]).items():
                if dependency not in wanted:
                    raise ComposeError(f"{service} depends on {dependency}, which is not started")
                self.wait_for(dependency, condition, timeout)
            for index in range(1, scale.get(service, 1) + 1):
                self.podman(*self.project.run_argv(service, index))

    def wait_for(self, service: str, condition: str, timeout: float) -> None:
        container = self.project.container(service)
        deadline = time.monotonic() + timeout
        while True:
            state = self.state(container)
            if condition == "service_started" and state["Running"]:
                return
            if condition == "service_completed_successfully" and state["Status"] == "exited":
                if state["ExitCode"] != 0:
                    raise ComposeError(f"{service} exited {state['ExitCode']}:\n{self.logs(service)}")
                return
            if condition == "service_healthy":
                if not state["Running"]:
                    raise ComposeError(f"{service} stopped before it was healthy:\n{self.logs(service)}")
                if self.podman("healthcheck", "run", container, check=False).returncode == 0:
                    return
            if time.monotonic() > deadline:
                raise ComposeError(f"{service} not {condition} after {timeout:.0f} s:\n{self.logs(service)}")
            time.sleep(1)

    def state(self, container: str) -> dict[str, Any]:
        return json.loads(self.podman("inspect", "--format", "{{json .State}}", container).stdout)

    def containers(self, service: str | None = None) -> list[str]:
        labels = ["--filter", f"label=com.docker.compose.project={self.project.name}"]
        if service:
            labels += ["--filter", f"label=com.docker.compose.service={service}"]
        return self.podman("ps", "--all", "--format", "{{.Names}}", *labels).stdout.split()

    def logs(self, service: str, index: int = 1) -> str:
        result = self.podman("logs", self.project.container(service, index), check=False)
        return (result.stdout + result.stderr)[-4000:]

    def exec(self, service: str, *command: str, index: int = 1) -> subprocess.CompletedProcess:
        return self.podman("exec", self.project.container(service, index), *command, check=False)

    def down(self) -> None:
        """Removes containers, network and volumes, whatever state they are in."""
        names = self.containers()
        if names:
            self.podman("rm", "--force", "--time", "0", *names, check=False)
        self.podman("network", "rm", "--force", self.project.network, check=False)
        for volume in self.project.volumes:
            self.podman("volume", "rm", "--force", f"{self.project.name}_{volume}", check=False)
