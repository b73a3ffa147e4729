"""Loopback TCP ports: whether one is taken, and finding a free one."""

from __future__ import annotations

import socket


def port_in_use(port: int) -> bool:
    """Whether something already listens on 127.0.0.1:`port`. Never blocks."""
    with socket.socket() as sock:
        # SO_REUSEADDR, as servers set it: only a listener makes bind fail, not TIME_WAIT.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def free_port() -> int:
    """A port free on 127.0.0.1 right now (another program may take it before we do)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def accepts_connections(port: int, timeout: float = 0.5) -> bool:
    """Whether a TCP connection to 127.0.0.1:`port` succeeds."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False
