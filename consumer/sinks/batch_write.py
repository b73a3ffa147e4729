"""DynamoDB's BatchWriteItem with a body we encode, sent the rest of the way by botocore.

A client call costs botocore about 660 µs of CPU on the build machine before
any byte is sent (`make bench`, "processor" steps): walking the request's
shape item by item, resolving the endpoint, building the user agent,
emitting a dozen events. At 25 items a call that is more than the record
processor's own work per record. So the body is encoded straight from the
rows (`consumer.sinks.dynamodb.request_body`, byte for byte what botocore's
serializer makes of the same items), and the request goes through the
botocore client's own parts, made once per writer where botocore makes
them per call:

- the request's URL and headers: from the client's endpoint ruleset and
  serializer, for an empty BatchWriteItem of the table, once;
- signing: the client's RequestSigner, so its credential chain (refreshed
  task-role credentials), region and signature version, every attempt;
- sending: the client's HTTP session (its connection pool, TLS and proxy
  settings, timeouts, botocore's connection errors);
- errors: the client's response parser and modeled exceptions, so a
  refused call raises the ClientError botocore would;
- retries: the client's `needs-retry` handler (standard mode: which errors,
  the backoff, the retry quota), released on success as botocore does.

What it skips is per-call event traffic no handler of ours uses
(before-call, request-created, before-send, ...); a botocore upgrade that
changes the request is caught by tests/unit/test_batch_write.py, which
compares the whole signed request with the one botocore sends.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable

from botocore.awsrequest import AWSRequest
from botocore.context import start_as_current_context
from botocore.exceptions import BotoCoreError
from botocore.hooks import first_non_none_response

OPERATION = "BatchWriteItem"


def invocation_id() -> str:
    """A call's amz-sdk-invocation-id: a random UUID4, as botocore's, but
    not from os.urandom. That system call lets go of the GIL, and the call's
    thread then queues for it behind the others: a hand-over between threads
    per call, which cost more CPU than the id (the id traces a call's
    retries; it needs no cryptographic randomness)."""
    return str(uuid.UUID(int=random.getrandbits(128), version=4))  # nosec B311: a trace id, not a secret


class UnreadableAnswer(BotoCoreError):
    """A 2xx answer that is not JSON (a proxy's page, a cut-off body): the sink retries the batch."""

    fmt = "BatchWriteItem answered what is not JSON: {error}"


@dataclass(frozen=True)
class _Made:
    operation: Any  # botocore's OperationModel
    method: str
    url: str
    headers: dict
    context: dict
    max_attempts: int | None
    needs_retry: str  # event names
    after_call: str


class BatchWriter:
    """BatchWriteItem calls of one table through one botocore DynamoDB client."""

    def __init__(self, client, table: str, sleep: Callable[[float], None] = time.sleep) -> None:
        self._client = client
        self._table = table
        self._sleep = sleep
        self._made: _Made | None = None  # on the first call: a sink is built before it writes, or never writes

    def _parts(self) -> _Made:
        """What botocore works out per call, worked out once: the endpoint (and
        the signing context its ruleset names) and the request's headers.
        Two threads may both make it the first time; the results are equal."""
        if self._made is None:
            client = self._client
            operation = client.meta.service_model.operation_model(OPERATION)
            service = client.meta.service_model.service_id.hyphenize()
            context = {"client_region": client.meta.region_name, "client_config": client.meta.config,
                       "has_streaming_input": False, "auth_type": operation.resolved_auth_type}
            params = {"RequestItems": {self._table: []}}
            with start_as_current_context():  # as in a call: the user agent names the features the resolution used
                url, headers, properties = client._resolve_endpoint_ruleset(operation, params, context)
                if properties:
                    context["endpoint_properties"] = properties
                template = client._convert_to_request_dict(params, operation, url, context=context, headers=headers)
            self._made = _Made(operation, template["method"], template["url"], template["headers"], context,
                               client.meta.config.retries.get("total_max_attempts"),
                               f"needs-retry.{service}.{OPERATION}", f"after-call.{service}.{OPERATION}")
        return self._made

    def send(self, body: bytes) -> dict:
        """One BatchWriteItem of `body` (a JSON request, as `write_calls`
        makes it): its parsed answer ({"UnprocessedItems": {...}}), after
        botocore's retries. Raises botocore's ClientError or BotoCoreError."""
        made = self._parts()
        events = self._client.meta.events
        retries = {"attempt": 1, "invocation-id": invocation_id()}
        if made.max_attempts:
            retries["max"] = made.max_attempts
        context = {**made.context, "retries": retries}
        while True:
            response, error = self._attempt(made, body, context)
            delay = first_non_none_response(events.emit(
                made.needs_retry, response=response, endpoint=self._client._endpoint, operation=made.operation,
                attempts=retries["attempt"], caught_exception=error, request_dict={"context": context}))
            if not delay:
                break
            retries["attempt"] += 1
            self._sleep(delay)
        if error is not None:
            raise error
        http, parsed = response
        events.emit(made.after_call, http_response=http, parsed=parsed, model=made.operation, context=context)
        if http.status_code >= 300:
            code = parsed.get("Error", {}).get("Code")
            raise self._client.exceptions.from_code(code)(parsed, OPERATION)
        return parsed

    def _attempt(self, made: _Made, body: bytes, context: dict):
        """One signed request: ((http response, parsed), None), or (None, the
        botocore error that kept it from being answered)."""
        request = AWSRequest(method=made.method, url=made.url, data=body, headers=dict(made.headers))
        request.context = context
        self._client._request_signer.sign(OPERATION, request)
        # After signing, as botocore adds them: they are not signed.
        retries = context["retries"]
        request.headers["amz-sdk-invocation-id"] = retries["invocation-id"]
        request.headers["amz-sdk-request"] = "; ".join(
            f"{key}={retries[key]}" for key in ("ttl", "attempt", "max") if key in retries)
        endpoint = self._client._endpoint  # its prepare_request encodes the headers as botocore sends them
        try:
            http = endpoint.http_session.send(endpoint.prepare_request(request))
        except BotoCoreError as exc:  # connection and timeout errors: the retry handler decides
            return None, exc
        return (http, self._parse(made, http)), None

    def _parse(self, made: _Made, http) -> dict:
        if http.status_code < 300:
            try:
                parsed = json.loads(http.content) if http.content else {}
            except ValueError as exc:
                raise UnreadableAnswer(error=str(exc)) from None
            parsed["ResponseMetadata"] = {"HTTPStatusCode": http.status_code, "HTTPHeaders": dict(http.headers)}
            return parsed
        # An error: botocore's own parser makes the ClientError's shape.
        return self._client._response_parser.parse(
            {"status_code": http.status_code, "headers": http.headers, "body": http.content},
            made.operation.output_shape)
