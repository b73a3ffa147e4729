"""A throwaway PostgreSQL cluster standing in for Redshift.

Trust authentication, 127.0.0.1 only, no fsync: for tests and demos, never for
data anyone wants to keep. `initdb` refuses to run as root, so as root every
server command runs as an unprivileged user (`postgres`, else `nobody`) that
owns the cluster; if that user cannot reach the requested directory (a
project cloned inside a mode-700 folder), the cluster lives in a fallback
directory, /tmp/retail-stream-pg-<hash of the requested one>, and a warning
says so.
"""

from __future__ import annotations

import functools
import hashlib
import os
import pwd
import shutil
import subprocess  # nosec B404: argv lists of programs we name, never a shell
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg2
import structlog
from psycopg2 import sql

from local_stack.errors import StackError
from local_stack.stopping import deferred
from local_stack.ports import port_in_use

log = structlog.get_logger(__name__)

PREFERRED_MAJOR = "15"
ROLE = "retail"
DATABASE = "retail"
SUPERUSER = "postgres"
START_TIMEOUT_SECONDS = 30
# The kernel limit for a unix socket path is 107 bytes (sun_path).
MAX_SOCKET_PATH = 100

# Written once by initdb-time set-up; the per-start settings go to START_CONF.
STATIC_CONF = """
# local_stack: a throwaway cluster; durability is not wanted here.
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 100
shared_buffers = 32MB
include_if_exists = 'local_stack_start.conf'
"""
START_CONF = "local_stack_start.conf"
SERVER_BINARIES = ("initdb", "pg_ctl", "postgres")
# Fixed, not $TMPDIR: `down` must find the cluster `up` made, whatever its environment.
FALLBACK_ROOT = Path("/tmp")  # nosec B108: a folder of our own made under it, mode 0700, checked by its origin file
FALLBACK_PREFIX = "retail-stream-pg-"
# In a fallback folder: the data_dir it stands for, so orphans can be recognised.
ORIGIN_FILE = "origin"


@dataclass(frozen=True)
class ServiceUser:
    """The OS account the server runs as (None fields: the current user)."""

    name: str | None = None
    uid: int | None = None
    gid: int | None = None

    @classmethod
    def for_current_process(cls) -> ServiceUser:
        """Root hands the server to `postgres` (or `nobody`); anyone else runs it themselves."""
        if os.geteuid() != 0:
            return cls()
        for name in ("postgres", "nobody"):
            try:
                entry = pwd.getpwnam(name)
            except KeyError:
                continue
            return cls(name, entry.pw_uid, entry.pw_gid)
        raise StackError("running as root, but no 'postgres' or 'nobody' user exists to run PostgreSQL as")

    def run(self, argv: list[str], *, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        """Run `argv` as this user from `/` (the caller's cwd may be closed to
        it); returns the completed process, stdout and stderr captured as text.
        Raises StackError on a non-zero status when `check`."""
        drop = {} if self.uid is None else {"user": self.uid, "group": self.gid, "extra_groups": []}
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "LANG": "C"}
        if self.name:
            env.update(HOME="/", USER=self.name, LOGNAME=self.name)
        else:
            env.update(HOME=os.environ.get("HOME", "/"))
        result = subprocess.run(  # nosec B603: our argv, no shell
            argv, cwd="/", env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
            timeout=timeout, check=False, **drop,
        )
        if check and result.returncode != 0:
            raise StackError(
                f"{Path(argv[0]).name} failed with status {result.returncode}:\n"
                f"{(result.stderr or result.stdout).strip()}"
            )
        return result

    def can_write(self, directory: Path) -> bool:
        """Whether this user can reach and write `directory` (checked as that user)."""
        if self.uid is None:
            return os.access(directory, os.W_OK | os.X_OK)
        probe = self.run(["/bin/sh", "-c", 'test -w "$1" && test -x "$1"', "sh", str(directory)], check=False)
        return probe.returncode == 0

    def own(self, path: Path) -> None:
        if self.uid is not None:
            os.chown(path, self.uid, self.gid)


def find_bin_dir() -> Path:
    """The directory holding initdb, pg_ctl and postgres, preferring major
    version 15. Raises StackError listing where it looked."""
    candidates: list[Path] = []
    if override := os.environ.get("LOCAL_STACK_PG_BINDIR"):
        candidates.append(Path(override))
    candidates.append(Path(f"/usr/lib/postgresql/{PREFERRED_MAJOR}/bin"))
    pg_config = shutil.which("pg_config")
    if pg_config:
        # pg_config may belong to a client-only package: its bindir is checked, not trusted.
        found = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)  # nosec B603: our argv, no shell
        if found.returncode == 0 and found.stdout.strip():
            candidates.append(Path(found.stdout.strip()))
    candidates.extend(sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True))
    if initdb := shutil.which("initdb"):
        candidates.append(Path(initdb).resolve().parent)
    for directory in candidates:
        if all(os.access(directory / binary, os.X_OK) for binary in SERVER_BINARIES):
            return directory
    looked = ", ".join(dict.fromkeys(str(c) for c in candidates))
    raise StackError(
        f"PostgreSQL server binaries (initdb, pg_ctl, postgres) not found; looked in: {looked}. "
        f"Install them (Debian: apt-get install postgresql-{PREFERRED_MAJOR}) "
        "or set LOCAL_STACK_PG_BINDIR."
    )


class PostgresServer:
    """A PostgreSQL cluster in `data_dir` serving role and database `retail`
    on 127.0.0.1:`port`."""

    def __init__(self, data_dir: Path, port: int, *, user: ServiceUser | None = None):
        self.data_dir = Path(data_dir).absolute()
        self.port = port
        self.user = user or ServiceUser.for_current_process()

    @property
    def dsn(self) -> str:
        return f"postgresql://{ROLE}@127.0.0.1:{self.port}/{DATABASE}"

    @functools.cached_property
    def bin_dir(self) -> Path:
        """Looked up on first use, so stopping a stack never needs the binaries."""
        return find_bin_dir()

    @property
    def fallback_dir(self) -> Path:
        """Where the cluster lives when the service user cannot reach `data_dir`."""
        digest = hashlib.sha256(str(self.data_dir).encode()).hexdigest()[:12]
        return FALLBACK_ROOT / f"{FALLBACK_PREFIX}{digest}"

    @property
    def home(self) -> Path:
        """The directory that holds the cluster (`pgdata/`), its log and its socket."""
        if (self.fallback_dir / "pgdata" / "PG_VERSION").exists():
            return self.fallback_dir
        return self.data_dir

    @property
    def pgdata(self) -> Path:
        return self.home / "pgdata"

    @property
    def log_file(self) -> Path:
        return self.home / "postgres.log"

    def running_port(self) -> int | None:
        """The port of the postmaster running on this cluster, or None. Never blocks long."""
        if not (self.pgdata / "postmaster.pid").exists():
            return None
        status = self.user.run([str(self.bin_dir / "pg_ctl"), "status", "-D", str(self.pgdata)], check=False)
        if status.returncode != 0:
            return None
        try:
            # postmaster.pid, line 4: the port (documented in pidfile.h).
            return int((self.pgdata / "postmaster.pid").read_text().splitlines()[3])
        except (OSError, IndexError, ValueError):
            return None

    def start(self) -> None:
        """Create the cluster if needed, start it, block until it accepts
        connections and make sure role and database `retail` exist.
        Idempotent. Raises StackError when the binaries are missing, the port
        is taken, the cluster runs on another port, or the server fails."""
        bin_dir = self.bin_dir
        running = self.running_port()
        if running is not None and running != self.port:
            raise StackError(
                f"PostgreSQL in {self.pgdata} already runs on port {running}, not {self.port}; "
                "stop the stack first"
            )
        if running is None:
            if port_in_use(self.port):
                raise StackError(
                    f"port {self.port} (PostgreSQL) is taken by another program; choose another port"
                )
            self._initdb(bin_dir)
            self._write_start_conf()
            started = time.monotonic()
            # Not cut short: a pg_ctl stopped early can leave a server starting
            # that has not written the postmaster.pid a stop looks for.
            with deferred():
                self.user.run(
                    [str(bin_dir / "pg_ctl"), "start", "-w", "-t", str(START_TIMEOUT_SECONDS),
                     "-D", str(self.pgdata), "-l", str(self.log_file)],
                    check=False, timeout=START_TIMEOUT_SECONDS + 10,
                )
            if self.running_port() != self.port:
                raise StackError(f"PostgreSQL did not start; {self.log_file} ends with:\n{self._log_tail()}")
            log.info("postgres_started", port=self.port, data=str(self.pgdata),
                     seconds=round(time.monotonic() - started, 2))
        self._ensure_role_and_database()

    def stop(self, timeout: float = 30) -> bool:
        """Fast shutdown (rolls back open sessions), blocking until the server
        is gone. Idempotent: returns False when it was not running."""
        if self.running_port() is None:
            return False
        self.user.run(
            [str(self.bin_dir / "pg_ctl"), "stop", "-w", "-m", "fast", "-t", str(int(timeout)),
             "-D", str(self.pgdata)],
            timeout=timeout + 10,
        )
        log.info("postgres_stopped", port=self.port, data=str(self.pgdata))
        return True

    def purge(self) -> None:
        """Delete the cluster's files, wherever they are. The server must be stopped."""
        for directory in (self.data_dir, self.fallback_dir):
            shutil.rmtree(directory, ignore_errors=True)

    def _initdb(self, bin_dir: Path) -> None:
        """Create the cluster unless one is there; picks `data_dir` or the fallback."""
        if (self.pgdata / "PG_VERSION").exists():
            return
        home = self._choose_home()
        pgdata = home / "pgdata"
        shutil.rmtree(pgdata, ignore_errors=True)  # a half-made cluster from an interrupted initdb
        started = time.monotonic()
        self.user.run(
            [str(bin_dir / "initdb"), "-D", str(pgdata), "--username", SUPERUSER, "--auth", "trust",
             "--encoding", "UTF8", "--locale", "C", "--no-sync", "--no-instructions"],
            timeout=120,
        )
        with (pgdata / "postgresql.conf").open("a") as conf:
            conf.write(STATIC_CONF)
        log.info("postgres_initialised", data=str(pgdata), seconds=round(time.monotonic() - started, 2))

    def _choose_home(self) -> Path:
        """`data_dir` when the service user can write there, else the fallback
        (created 0700 for that user). Both are made owned by the service user."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.user.own(self.data_dir)
        if self.user.can_write(self.data_dir):
            return self.data_dir
        self._remove_orphaned_fallbacks()
        fallback = self.fallback_dir
        fallback.mkdir(mode=0o700, exist_ok=True)
        self.user.own(fallback)
        (fallback / ORIGIN_FILE).write_text(f"{self.data_dir}\n")
        log.warning(
            "postgres_cluster_moved",
            reason=f"user {self.user.name!r} cannot reach {self.data_dir}",
            cluster=str(fallback),
        )
        return fallback

    def _remove_orphaned_fallbacks(self) -> None:
        """Stop and delete fallback clusters whose stack folder is gone (a test's
        temporary folder, cleaned up by pytest): no `down` can reach them now."""
        for fallback in FALLBACK_ROOT.glob(f"{FALLBACK_PREFIX}*"):
            try:
                origin = Path((fallback / ORIGIN_FILE).read_text().strip())
            except OSError:
                continue
            if not origin.is_absolute() or origin.exists():
                continue
            if (fallback / "pgdata" / "postmaster.pid").exists():
                self.user.run(
                    [str(self.bin_dir / "pg_ctl"), "stop", "-w", "-m", "immediate",
                     "-D", str(fallback / "pgdata")],
                    check=False,
                )
            shutil.rmtree(fallback, ignore_errors=True)
            log.info("postgres_orphan_removed", cluster=str(fallback), origin=str(origin))

    def _write_start_conf(self) -> None:
        """The settings that may change from one start to the next: port and socket."""
        socket_dir = str(self.home)
        if len(f"{socket_dir}/.s.PGSQL.{self.port}") > MAX_SOCKET_PATH:
            socket_dir = ""  # too long for a unix socket: TCP on 127.0.0.1 only
        conf = self.pgdata / START_CONF
        conf.write_text(
            f"port = {self.port}\n"
            "listen_addresses = '127.0.0.1'\n"
            f"unix_socket_directories = '{_quote_conf(socket_dir)}'\n"
        )
        self.user.own(conf)

    def _ensure_role_and_database(self) -> None:
        admin = f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/postgres"
        conn = _connect(admin)
        try:
            conn.autocommit = True  # CREATE DATABASE cannot run in a transaction
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (ROLE,))
                if cur.fetchone() is None:
                    cur.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(ROLE)))
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,))
                if cur.fetchone() is None:
                    create = sql.SQL("CREATE DATABASE {} OWNER {}")
                    cur.execute(create.format(sql.Identifier(DATABASE), sql.Identifier(ROLE)))
        finally:
            conn.close()

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def _connect(dsn: str, timeout: float = 10):
    """Connect, retrying briefly: pg_ctl -w can return a moment before TCP accepts."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return psycopg2.connect(dsn, connect_timeout=3)
        except psycopg2.OperationalError as error:
            if time.monotonic() > deadline:
                raise StackError(f"cannot connect to PostgreSQL at {dsn}: {error}") from None
            time.sleep(0.1)


def _quote_conf(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "''")
