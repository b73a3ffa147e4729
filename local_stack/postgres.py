"""A throwaway PostgreSQL 15 cluster standing in for Redshift.

initdb refuses to run as root, so as root the cluster belongs to the
`postgres` system user (or `nobody`) and every server command runs as that
user through runuser. The data folder is the project's when that user can
reach it, else a folder under /tmp named after the project.
"""

from __future__ import annotations

import glob
import hashlib
import os
import pwd
import shutil
import subprocess
from pathlib import Path

import psycopg2

from local_stack.processes import StackError, wait_until

ROLE = "retail"
DATABASE = "retail"


def server_bindir() -> Path:
    """Where initdb, pg_ctl and postgres live; PostgreSQL 15 preferred."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: (not p.startswith("/usr/lib/postgresql/15/"), p))
    for path in candidates:
        if Path(path, "initdb").exists() and Path(path, "pg_ctl").exists():
            return Path(path)
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    raise StackError("PostgreSQL server binaries not found (Debian: apt-get install postgresql-15)")


def server_user() -> str | None:
    """The unprivileged user that runs the server when we are root; None otherwise."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise StackError("running as root and neither a 'postgres' nor a 'nobody' user exists")


class PostgresServer:
    def __init__(self, data_dir: Path, port: int) -> None:
        self.port = port
        self.user = server_user()
        self.bindir = server_bindir()
        self.data_dir = self._reachable(Path(data_dir))
        self.log_file = self.data_dir.parent / "postgres.log"

    @property
    def dsn(self) -> str:
        return f"postgresql://{ROLE}@127.0.0.1:{self.port}/{DATABASE}"

    def _reachable(self, wanted: Path) -> Path:
        """`wanted`, or a /tmp folder when the server user cannot reach it."""
        if self.user is None:
            return wanted
        wanted.parent.mkdir(parents=True, exist_ok=True)
        probe = subprocess.run(["runuser", "-u", self.user, "--", "test", "-x", str(wanted.parent)], check=False)
        if probe.returncode == 0:
            return wanted
        digest = hashlib.sha1(str(wanted.resolve()).encode()).hexdigest()[:10]
        fallback = Path(f"/tmp/retail-stream-pg-{digest}") / wanted.name
        return fallback

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        command = [str(self.bindir / args[0]), *args[1:]]
        if self.user:
            command = ["runuser", "-u", self.user, "--", *command]
        result = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)
        if check and result.returncode != 0:
            raise StackError(f"{args[0]} failed: {result.stdout.strip()}")
        return result

    def _prepare_dirs(self) -> None:
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        if self.user:
            info = pwd.getpwnam(self.user)
            os.chown(self.data_dir.parent, info.pw_uid, info.pw_gid)

    def running(self) -> bool:
        return self._run("pg_ctl", "status", "-D", str(self.data_dir), check=False).returncode == 0

    def accepting(self) -> bool:
        try:
            psycopg2.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="postgres",
                             connect_timeout=1).close()
            return True
        except psycopg2.OperationalError:
            return False

    def start(self) -> None:
        """Create the cluster if needed, start it, create the role and database.

        Idempotent; blocks until the server accepts connections.
        """
        self._prepare_dirs()
        if not (self.data_dir / "PG_VERSION").exists():
            self._run("initdb", "-D", str(self.data_dir), "-U", "postgres", "--auth=trust",
                      "-E", "UTF8", "--locale=C.UTF-8", "--no-sync")
        if not self.running():
            options = (
                f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.data_dir} "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            )
            self._run("pg_ctl", "start", "-D", str(self.data_dir), "-o", options, "-l", str(self.log_file), "-w")
        wait_until(self.accepting, 30, f"PostgreSQL on port {self.port}", self.log_file)
        self._create_role_and_database()

    def _create_role_and_database(self) -> None:
        conn = psycopg2.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="postgres")
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (ROLE,))
            if cur.fetchone() is None:
                cur.execute(f"CREATE ROLE {ROLE} LOGIN")
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,))
            if cur.fetchone() is None:
                cur.execute(f"CREATE DATABASE {DATABASE} OWNER {ROLE}")
        conn.close()

    def stop(self) -> None:
        """Stop the server if it runs (fast shutdown). Idempotent."""
        if self.data_dir.exists() and self.running():
            self._run("pg_ctl", "stop", "-D", str(self.data_dir), "-m", "fast", "-w")

    def purge(self) -> None:
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)
