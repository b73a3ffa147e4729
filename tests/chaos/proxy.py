"""A fault-injecting HTTP proxy in front of the local AWS emulator. Test-only.

The emulator never fails by itself, and the KCL is Java, so hooks inside boto3
cannot reach its reads and checkpoints. Every client (producer, consumer,
the KCL) is pointed at this proxy instead; the tests tell it, through
`/__chaos__/rules`, which calls to fail, slow down, hold or answer partly.
It is served the way the emulator is (`local_stack.emulator.serve`):
HTTP/1.1 for boto3 and h2c for the KCL's Java SDK, on one port.

Run it as ``python -m tests.chaos.proxy --upstream http://127.0.0.1:4566 --port 4567``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable

from local_stack.emulator import serve

PROJECT_DIR = Path(__file__).resolve().parents[2]
CONTROL = "/__chaos__/"
# Request and response headers that belong to one hop (RFC 9110 7.6.1), plus
# the ones httpx and Hypercorn set themselves.
HOP_HEADERS = frozenset({
    "connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
    "host", "content-length", "expect",
})


@dataclass(frozen=True)
class Call:
    """What a request is, as the rules see it."""

    service: str  # kinesis | dynamodb | s3
    operation: str  # PutRecords, BatchWriteItem, UpdateItem, PutObject, GetObject, ...
    target: str  # the stream, the table, or bucket/key


def classify(method: str, path: str, headers: dict[str, str], body: bytes) -> Call:
    """Name a request by its service, operation and target. Pure."""
    amz_target = headers.get("x-amz-target", "")
    if amz_target:
        prefix, _, operation = amz_target.partition(".")
        service = "kinesis" if prefix.startswith("Kinesis") else "dynamodb" if prefix.startswith("DynamoDB") else prefix
        try:
            payload = json.loads(body or b"{}")
        except ValueError:
            payload = {}
        target = payload.get("StreamName") or payload.get("TableName") or ",".join(payload.get("RequestItems", {}))
        if not target and payload.get("StreamARN"):
            target = payload["StreamARN"].rsplit("/", 1)[-1]
        return Call(service, operation, target or "")
    key = path.lstrip("/")
    bucket, _, obj = key.partition("/")
    verbs = {"PUT": "PutObject", "GET": "GetObject", "HEAD": "HeadObject", "DELETE": "DeleteObject",
             "POST": "PostObject"}
    operation = verbs.get(method, method) if obj else {"GET": "ListObjects", "PUT": "CreateBucket"}.get(method, method)
    return Call("s3", operation, key)


@dataclass
class Rule:
    """One fault. `fault` is one of:
    - error: answer `status` with AWS error `code`, never reaching the emulator;
    - delay: wait `seconds`, then forward;
    - hold: keep the request until the rules change, then forward it (a write
      that was in flight when its sender died lands late, as on a real network);
    - hold_response: forward, then keep the answer until the rules change;
    - partial: Kinesis PutRecords / DynamoDB BatchWriteItem: forward only some
      entries and report the others failed
      (`code`) or unprocessed, as the real services do under throttling.
    A rule applies to calls of its `service`, `operation` (empty: any) whose
    target contains `target` and whose body contains `contains`; with
    probability `rate`; after skipping `skip` matching calls; at most `times`
    times. A partial fault fails each entry with probability `fraction`."""

    name: str
    fault: str
    service: str
    operation: str = ""
    target: str = ""
    contains: str = ""
    status: int = 500
    code: str = "InternalFailure"
    seconds: float = 0.0
    rate: float = 1.0
    fraction: float = 0.5
    skip: int = 0
    times: int | None = None
    seen: int = field(default=0)
    fired: int = field(default=0)

    def matches(self, call: Call, body: bytes) -> bool:
        return (call.service == self.service and self.operation in ("", call.operation)
                and self.target in call.target and self.contains.encode() in body)

    def fires(self, rng: random.Random) -> bool:
        """Counts a matching call; whether the fault is applied to it."""
        self.seen += 1
        if self.seen <= self.skip or (self.times is not None and self.fired >= self.times):
            return False
        if rng.random() >= self.rate:
            return False
        self.fired += 1
        return True


@dataclass(frozen=True)
class Response:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


Forward = Callable[[str, str, dict[str, str], bytes], Awaitable[Response]]


def error_response(call: Call, status: int, code: str) -> Response:
    """The error body the service itself would send, so both SDKs parse the code."""
    message = f"{code} injected by the chaos proxy"
    if call.service == "s3":
        body = (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
                f"<Message>{message}</Message></Error>").encode()
        return Response(status, [(b"content-type", b"application/xml")], body)
    content_type = b"application/x-amz-json-1.1" if call.service == "kinesis" else b"application/x-amz-json-1.0"
    body = json.dumps({"__type": code, "message": message}).encode()
    return Response(status, [(b"content-type", content_type), (b"x-amzn-errortype", code.encode())], body)


def split_entries(call: Call, body: bytes, rate: float, rng: random.Random) -> tuple[bytes | None, list[int], Any]:
    """For a partial fault: (the request body to forward, or None when nothing
    is left; the indexes of the failed entries; what the merge needs). Pure but for `rng`."""
    payload = json.loads(body)
    if call.operation == "PutRecords":
        records = payload["Records"]
        failed = [i for i in range(len(records)) if rng.random() < rate]
        refused = set(failed)
        kept = [r for i, r in enumerate(records) if i not in refused]
        forward = json.dumps({**payload, "Records": kept}).encode() if kept else None
        return forward, failed, len(records)
    # BatchWriteItem: the failed requests come back as UnprocessedItems.
    kept_items, unprocessed = {}, {}
    failed = []
    for table, requests in payload["RequestItems"].items():
        for request in requests:
            if rng.random() < rate:
                unprocessed.setdefault(table, []).append(request)
                failed.append(len(failed))
            else:
                kept_items.setdefault(table, []).append(request)
    forward = json.dumps({**payload, "RequestItems": kept_items}).encode() if kept_items else None
    return forward, failed, unprocessed


def merge_partial(call: Call, code: str, upstream: dict | None, failed: list[int], extra: Any) -> dict:
    """The answer a partly failed call gets: upstream's results with the failed entries put back. Pure."""
    if call.operation == "PutRecords":
        results, refused = iter((upstream or {}).get("Records", [])), set(failed)
        merged = [
            {"ErrorCode": code, "ErrorMessage": f"{code} injected by the chaos proxy"} if i in refused
            else next(results)
            for i in range(extra)
        ]
        return {"FailedRecordCount": sum(1 for r in merged if "ErrorCode" in r),
                "Records": merged, **({"EncryptionType": upstream["EncryptionType"]}
                                       if upstream and "EncryptionType" in upstream else {})}
    unprocessed = {table: list(requests) for table, requests in (upstream or {}).get("UnprocessedItems", {}).items()}
    for table, requests in extra.items():
        unprocessed.setdefault(table, []).extend(requests)
    return {"UnprocessedItems": unprocessed}


class FaultInjector:
    """The rules and what they did; decides the fate of each request."""

    def __init__(self, forward: Forward, seed: int | None = None) -> None:
        self.forward = forward
        self.rules: list[Rule] = []
        self.requests = 0
        self.holding = 0
        self.rng = random.Random(seed)
        self._changed = asyncio.Event()

    def set_rules(self, rules: list[Rule]) -> None:
        self.rules = rules
        # Wake every held request: it is forwarded now.
        self._changed.set()
        self._changed = asyncio.Event()

    def stats(self) -> dict:
        return {"requests": self.requests, "holding": self.holding, "rules": [asdict(r) for r in self.rules]}

    async def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Response:
        self.requests += 1
        call = classify(method, path, headers, body)
        rule = next((r for r in self.rules if r.matches(call, body) and r.fires(self.rng)), None)
        if rule is None:
            return await self.forward(method, path, headers, body)
        if rule.fault == "error":
            return error_response(call, rule.status, rule.code)
        if rule.fault == "delay":
            await asyncio.sleep(rule.seconds)
            return await self.forward(method, path, headers, body)
        if rule.fault == "hold":
            await self._hold()
            return await self.forward(method, path, headers, body)
        if rule.fault == "hold_response":
            response = await self.forward(method, path, headers, body)
            await self._hold()
            return response
        if rule.fault == "partial" and call.operation in ("PutRecords", "BatchWriteItem"):
            forward_body, failed, extra = split_entries(call, body, rule.fraction, self.rng)
            upstream = None
            if forward_body is not None:
                response = await self.forward(method, path, headers, forward_body)
                if response.status != 200:
                    return response
                upstream = json.loads(response.body)
            merged = json.dumps(merge_partial(call, rule.code, upstream, failed, extra)).encode()
            content_type = b"application/x-amz-json-1.1" if call.service == "kinesis" else b"application/x-amz-json-1.0"
            return Response(200, [(b"content-type", content_type)], merged)
        return await self.forward(method, path, headers, body)

    async def _hold(self) -> None:
        self.holding += 1
        try:
            await self._changed.wait()
        finally:
            self.holding -= 1


def build_app(upstream: str, seed: int | None = None):
    """The ASGI application: the control API under /__chaos__/, everything else proxied."""
    import httpx

    client = httpx.AsyncClient(base_url=upstream, timeout=None, limits=httpx.Limits(max_connections=200))

    async def forward(method: str, path: str, headers: dict[str, str], body: bytes) -> Response:
        sent = {k: v for k, v in headers.items() if k not in HOP_HEADERS}
        reply = await client.request(method, path, headers=sent, content=body)
        kept = [(k.encode(), v.encode()) for k, v in reply.headers.items() if k.lower() not in HOP_HEADERS]
        if method == "HEAD" and "content-length" in reply.headers:
            kept.append((b"content-length", reply.headers["content-length"].encode()))
        return Response(reply.status_code, kept, reply.content)

    injector = FaultInjector(forward, seed)

    async def app(scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            while True:
                event = (await receive())["type"]
                if event == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif event == "lifespan.shutdown":
                    await client.aclose()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        path = scope["raw_path"].decode()
        if scope.get("query_string"):
            path += "?" + scope["query_string"].decode()
        if path.startswith(CONTROL):
            response = control(injector, scope["method"], path[len(CONTROL):], body)
        else:
            headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
            response = await injector.handle(scope["method"], path, headers, body)
        headers = list(response.headers)
        if not any(k == b"content-length" for k, _ in headers):
            headers.append((b"content-length", str(len(response.body)).encode()))
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else response.body})

    return app


def control(injector: FaultInjector, method: str, path: str, body: bytes) -> Response:
    """PUT rules (a JSON list of Rule fields) replaces them and releases held requests; GET stats."""
    json_type = [(b"content-type", b"application/json")]
    if path == "rules" and method == "PUT":
        try:
            injector.set_rules([Rule(**spec) for spec in json.loads(body or b"[]")])
        except (TypeError, ValueError) as exc:
            return Response(400, json_type, json.dumps({"error": str(exc)}).encode())
        return Response(200, json_type, json.dumps(injector.stats()).encode())
    if path == "stats" and method == "GET":
        return Response(200, json_type, json.dumps(injector.stats()).encode())
    return Response(404, json_type, b'{"error": "unknown control path"}')


class FaultProxy:
    """The tests' handle on a proxy process: start it, set its rules, read what they did."""

    def __init__(self, state_dir: Path, port: int, upstream: str, seed: int | None = None) -> None:
        from local_stack.processes import BackgroundProcess

        self.url = f"http://127.0.0.1:{port}"
        argv = [sys.executable, "-m", "tests.chaos.proxy", "--port", str(port), "--upstream", upstream]
        if seed is not None:
            argv += ["--seed", str(seed)]
        self.process = BackgroundProcess("chaos-proxy", tuple(argv), Path(state_dir))

    def start(self) -> "FaultProxy":
        self.process.start(env={**os.environ, "PYTHONPATH": str(PROJECT_DIR)})
        self.process.wait_ready(self._answers, 30)
        return self

    def stop(self) -> None:
        self.process.stop()

    def inject(self, *rules: Rule) -> dict:
        """Replace the rules (releasing any held request) with these."""
        return self._call("PUT", "rules", [_spec(r) for r in rules])

    def clear(self) -> dict:
        return self.inject()

    def stats(self) -> dict:
        return self._call("GET", "stats")

    def fired(self, name: str) -> int:
        return next((r["fired"] for r in self.stats()["rules"] if r["name"] == name), 0)

    def wait_fired(self, name: str, times: int = 1, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while self.fired(name) < times:
            if time.monotonic() > deadline:
                raise AssertionError(f"fault {name!r} did not fire {times} time(s) within {timeout:.0f} s")
            time.sleep(0.2)

    def _answers(self) -> bool:
        try:
            self.stats()
            return True
        except OSError:
            return False

    def _call(self, method: str, path: str, payload: Any = None) -> dict:
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(f"{self.url}{CONTROL}{path}", data=data, method=method)
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(request, timeout=10) as response:
            return json.load(response)


def _spec(rule: Rule) -> dict:
    spec = asdict(rule)
    del spec["seen"], spec["fired"]
    return spec


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="the emulator's URL")
    parser.add_argument("--seed", type=int, default=None, help="make the random faults repeatable")
    args = parser.parse_args(argv)
    serve(args.host, args.port, lambda: build_app(args.upstream, args.seed))


if __name__ == "__main__":
    main()
