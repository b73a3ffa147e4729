"""The local stack's one error type: something a developer must fix by hand."""

from __future__ import annotations


class StackError(RuntimeError):
    """The local stack cannot start, stop or be provisioned; the message says
    what is wrong and what to do (missing PostgreSQL binaries, a port taken by
    another program, a service that died on start-up, a clashing resource)."""
