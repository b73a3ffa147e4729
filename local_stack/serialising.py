"""A moto backend's methods made to run one at a time under one lock: what
the emulator's fidelity patches (kinesis_fidelity, dynamodb_fidelity) share.
Hypercorn serves moto from several threads; moto's models are not thread-safe."""

from __future__ import annotations

import functools
import threading
from typing import Callable


def serialised(method: Callable, lock: threading.RLock) -> Callable:
    @functools.wraps(method)
    def locked(*args, **kwargs):
        with lock:
            return method(*args, **kwargs)

    return locked
