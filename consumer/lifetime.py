"""A child process that dies with its parent.

The supervisor starts the JVM in a session of its own (so a terminal's Ctrl-C
reaches it only through the supervisor). Killed outright (SIGKILL, the OOM
killer), the supervisor would leave the JVM behind, renewing leases under the
worker's id: a zombie worker. The kernel can kill a child when its parent
dies (Linux prctl); elsewhere this does nothing.

Not for the record processors: the kernel sends the signal when the parent
*thread* that started the child ends, and the JVM starts them from pool
threads that come and go. They end by themselves when the JVM's pipe to
them closes.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1  # <sys/prctl.h>


def die_with_parent(parent_pid: int) -> None:
    """SIGKILL this process when its parent dies; exit now if `parent_pid`,
    the parent it was started by, has died already."""
    if not sys.platform.startswith("linux"):
        return
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:
        os._exit(1)
