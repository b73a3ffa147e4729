"""How everything here retries: one backoff formula, one verdict on errors.

Three layers may retry one write. They are set so they add up, not multiply:

1. botocore, per request (standard mode, `AWS_MAX_ATTEMPTS` tries in all,
   3 by default): throttling, 5xx and dropped connections, within seconds.
   Each try waits at most the client's connect (5 s) and read (30 s) timeouts.
2. The caller, for what botocore sees as success: PutRecords entries refused
   inside a 200 answer (the producer's writers), DynamoDB `UnprocessedItems`
   (the DynamoDB sink). A bounded number of tries, with `Backoff`.
3. The shard pipeline, per batch: a sink write that still failed after 1 and
   2 is made again until `FLUSH_RETRY_SECONDS`. The deadline is checked
   before each new try, so a batch gives up within that deadline plus one
   try's worst case (3 × 35 s with the defaults).

A permanent error (`permanent`) goes through none of them: botocore does
not retry a 4xx other than throttling, and neither do we. Checkpoints (the
lease table throttling a checkpoint) have a bounded loop of their own.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Callable

import psycopg2
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    NoRegionError,
    ParamValidationError,
    PartialCredentialsError,
    UnknownServiceError,
)


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter, and when to stop.

    The n-th retry waits up to `min(cap, base * 2**(n-1))` seconds, of which
    the share `jitter` is drawn at random from `rng` (1: full jitter, uniform
    from 0; 0: no jitter). Tries stop after `attempts` tries in all, or once
    `deadline` seconds have passed since the first; None is no limit.
    """

    base: float
    cap: float
    jitter: float = 1.0
    attempts: int | None = None
    deadline: float | None = None
    rng: Callable[[], float] = field(default=random.random, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter is a share, from 0 to 1")
        if self.attempts is not None and self.attempts < 1:
            raise ValueError("attempts must be at least 1")

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number `retry` (1 is the first retry). Pure given `rng`."""
        ceiling = min(self.cap, self.base * 2 ** (retry - 1))
        return ceiling * (1 - self.jitter + self.jitter * self.rng())

    def allows(self, tries: int, elapsed: float = 0.0) -> bool:
        """Whether another try may follow `tries` tries that took `elapsed` seconds."""
        if self.attempts is not None and tries >= self.attempts:
            return False
        return self.deadline is None or elapsed < self.deadline


# botocore's standard-mode lists (botocore.retries.standard), plus the
# codes our services answer with for a passing state.
THROTTLING_CODES = frozenset({
    "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottledException",
    "TooManyRequestsException", "ProvisionedThroughputExceededException", "TransactionInProgressException",
    "RequestLimitExceeded", "BandwidthLimitExceeded", "LimitExceededException", "RequestThrottled",
    "SlowDown", "PriorRequestNotComplete", "EC2ThrottledException", "KMSThrottlingException",
})
TRANSIENT_CODES = frozenset({
    "RequestTimeout", "RequestTimeoutException", "InternalFailure", "InternalFailureException",
    "InternalError", "InternalServerError", "ServiceUnavailable", "ServiceUnavailableException",
    # A stream being created or resharded, an S3 conflicting operation.
    "ResourceInUseException", "OperationAborted",
    # Credentials that expired are refreshed by the provider chain (task roles rotate).
    "ExpiredToken", "ExpiredTokenException", "RequestExpired",
})
TRANSIENT_STATUSES = frozenset({408, 429})
# Known for good whatever the status says (an answer may lack one): access,
# identity, a missing resource, a request the service calls invalid.
PERMANENT_CODES = frozenset({
    "AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "UnrecognizedClientException",
    "InvalidAccessKeyId", "InvalidClientTokenId", "SignatureDoesNotMatch", "InvalidSignatureException",
    "MissingAuthenticationTokenException", "ResourceNotFoundException", "NoSuchBucket",
    "ValidationException", "InvalidArgumentException", "KMSAccessDeniedException", "KMSNotFoundException",
    "KMSDisabledException", "KMSInvalidStateException", "KMSOptInRequired",
})

# Set-up that no retry fixes: no credentials, no region, a request botocore refuses to send.
_PERMANENT_BOTOCORE = (NoCredentialsError, PartialCredentialsError, NoRegionError, ParamValidationError,
                       UnknownServiceError)
# SQLSTATE classes (the first two characters) no retry fixes: data exception,
# integrity, authorization, syntax or access rule (missing table, no privilege),
# unknown database or schema.
_PERMANENT_SQLSTATE_CLASSES = frozenset({"22", "23", "28", "42", "3D", "3F"})
# A connection refused by the server itself has no SQLSTATE in psycopg2: its text says.
_PERMANENT_CONNECT_TEXT = ("password authentication failed", "does not exist", "no pg_hba.conf entry",
                           "permission denied")


def error_code(exc: BaseException) -> str:
    """An AWS error code (ThrottlingException, AccessDenied…), a SQLSTATE, or
    the exception's class name: a low-cardinality name for logs and metrics."""
    if isinstance(exc, ClientError):
        return exc.response.get("Error", {}).get("Code") or "ClientError"
    if isinstance(exc, psycopg2.Error) and exc.pgcode:
        return exc.pgcode
    return type(exc).__name__


def permanent(exc: BaseException) -> bool:
    """True when trying again cannot help: access denied, a missing table,
    bucket or stream, a request the service calls invalid, no credentials.
    Throttling, 5xx, timeouts and lost connections are not permanent, and
    neither is an error this does not know."""
    if isinstance(exc, ClientError):
        code = error_code(exc)
        if code in THROTTLING_CODES or code in TRANSIENT_CODES:
            return False
        if code in PERMANENT_CODES:
            return True
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        return 400 <= status < 500 and status not in TRANSIENT_STATUSES
    if isinstance(exc, BotoCoreError):
        return isinstance(exc, _PERMANENT_BOTOCORE)
    if isinstance(exc, psycopg2.Error):
        if exc.pgcode:
            return exc.pgcode[:2] in _PERMANENT_SQLSTATE_CLASSES
        return isinstance(exc, psycopg2.OperationalError) and any(t in str(exc) for t in _PERMANENT_CONNECT_TEXT)
    return False
