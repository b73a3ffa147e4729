"""One backoff formula and one verdict on errors, for every retry loop."""

from __future__ import annotations

import psycopg2
import pytest
from botocore.exceptions import (
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ParamValidationError,
    ReadTimeoutError,
)
from botocore.exceptions import ClientError

from retail_stream.retries import Backoff, error_code, permanent


def test_waits_double_from_the_base_up_to_the_cap():
    top = Backoff(base=0.1, cap=1.0, rng=lambda: 1.0)
    assert [top.delay(n) for n in range(1, 7)] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])
    assert Backoff(base=0.1, cap=1.0, rng=lambda: 0.0).delay(3) == 0.0  # full jitter: from 0
    assert Backoff(base=0.1, cap=1.0, rng=lambda: 0.25).delay(30) == pytest.approx(0.25)


def test_jitter_is_the_share_of_each_wait_drawn_at_random():
    half = Backoff(base=1.0, cap=8.0, jitter=0.5, rng=lambda: 0.0)
    assert [half.delay(n) for n in (1, 2, 3)] == pytest.approx([0.5, 1.0, 2.0])
    assert Backoff(base=1.0, cap=8.0, jitter=0.0, rng=lambda: 0.7).delay(2) == pytest.approx(2.0)


def test_tries_stop_at_the_attempt_budget_or_the_deadline():
    three = Backoff(base=1, cap=1, attempts=3)
    assert [three.allows(n) for n in (1, 2, 3)] == [True, True, False]
    timed = Backoff(base=1, cap=1, deadline=10.0)
    assert timed.allows(1000, 9.9) and not timed.allows(1, 10.0)
    assert Backoff(base=1, cap=1).allows(10**6, 10**6)  # no limit given, none applied


@pytest.mark.parametrize("bad", [{"jitter": 1.5}, {"jitter": -0.1}, {"attempts": 0}])
def test_a_policy_that_cannot_work_is_refused(bad):
    with pytest.raises(ValueError):
        Backoff(base=1, cap=1, **bad)


def aws_error(code: str, status: int) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}},
                       "BatchWriteItem")


RETRYABLE = {
    "throttled table": aws_error("ProvisionedThroughputExceededException", 400),
    "throttled API": aws_error("ThrottlingException", 400),
    "S3 slow down": aws_error("SlowDown", 503),
    "5xx": aws_error("InternalServerError", 500),
    "unknown 5xx": aws_error("SomethingNew", 502),
    "429": aws_error("TooManyRequests", 429),
    "stream resharding": aws_error("ResourceInUseException", 400),
    "expired token, refreshed by the provider": aws_error("ExpiredTokenException", 400),
    "connection refused": EndpointConnectionError(endpoint_url="http://127.0.0.1:1"),
    "connect timeout": ConnectTimeoutError(endpoint_url="http://127.0.0.1:1"),
    "read timeout": ReadTimeoutError(endpoint_url="http://127.0.0.1:1"),
    "server gone": psycopg2.OperationalError("server closed the connection unexpectedly"),
    "refused connection": psycopg2.OperationalError('connection to server at "127.0.0.1", port 1 failed: '
                                                    "Connection refused"),
    "something else": RuntimeError("?"),
}
PERMANENT = {
    "access denied": aws_error("AccessDeniedException", 400),
    "S3 access denied": aws_error("AccessDenied", 403),
    "missing table": aws_error("ResourceNotFoundException", 400),
    "missing bucket": aws_error("NoSuchBucket", 404),
    "invalid request": aws_error("ValidationException", 400),
    "unknown 4xx": aws_error("SomethingNew", 400),
    "a code alone": ClientError({"Error": {"Code": "AccessDeniedException"}}, "PutRecords"),
    "no credentials": NoCredentialsError(),
    "a request botocore will not send": ParamValidationError(report="Missing required parameter"),
    "wrong password": psycopg2.OperationalError('connection to server at "h", port 5439 failed: FATAL:  '
                                                'password authentication failed for user "retail"'),
    "no such database": psycopg2.OperationalError('FATAL:  database "nope" does not exist'),
}


@pytest.mark.parametrize("name", RETRYABLE)
def test_passing_trouble_is_retried(name):
    assert not permanent(RETRYABLE[name])


@pytest.mark.parametrize("name", PERMANENT)
def test_what_no_retry_fixes_is_permanent(name):
    assert permanent(PERMANENT[name])


class PgError(psycopg2.Error):
    """psycopg2 sets pgcode from the server's answer; a test sets it by hand."""

    def __init__(self, pgcode: str) -> None:
        super().__init__("error")
        self._pgcode = pgcode

    @property
    def pgcode(self):
        return self._pgcode


@pytest.mark.parametrize(("sqlstate", "is_permanent"), [
    ("42501", True),  # insufficient privilege
    ("42P01", True),  # undefined table
    ("28P01", True),  # invalid password
    ("3D000", True),  # no such database
    ("22001", True),  # a value too long for its column
    ("40001", False),  # serialization failure
    ("40P01", False),  # deadlock
    ("57P01", False),  # the server shutting down
    ("53300", False),  # too many connections
    ("08006", False),  # connection failure
    ("XX000", False),  # internal error (Redshift's COPY errors too)
])
def test_warehouse_errors_by_sqlstate_class(sqlstate, is_permanent):
    assert permanent(PgError(sqlstate)) is is_permanent
    assert error_code(PgError(sqlstate)) == sqlstate


def test_error_codes_are_short_names():
    assert error_code(aws_error("AccessDenied", 403)) == "AccessDenied"
    assert error_code(EndpointConnectionError(endpoint_url="x")) == "EndpointConnectionError"


def test_one_backoff_formula_in_the_shipped_code():
    """Every retry loop waits by Backoff.delay: no other `2 ** n` with n a variable."""
    import ast
    from pathlib import Path

    project = Path(__file__).resolve().parents[2]
    found = []
    for folder in ("consumer", "producer", "api", "bench", "local_stack", "reporting", "retail_stream"):
        for path in (project / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if (isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow)
                        and isinstance(node.left, ast.Constant) and node.left.value == 2
                        and not isinstance(node.right, ast.Constant)):
                    found.append(str(path.relative_to(project)))
    assert found == ["retail_stream/retries.py"]
