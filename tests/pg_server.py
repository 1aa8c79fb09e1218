"""A throwaway PostgreSQL server for tests (Debian's `postgresql` package; `.ci/run` installs it).

Fixtures:
  postgres_dsn       (session)  libpq key=value DSN of an empty database `codi` on a fresh server
  fresh_pg_database  (function) DSN of a new empty database on that server, one per test
  pg_server          (session)  the PgServer itself, to run SQL through psql or make more databases

The server lives in a temp dir under /tmp, listens on a unix socket there and on 127.0.0.1 (a free port),
trusts every local connection (user `postgres`, no password), runs with fsync off, and is killed and
deleted at the end of the session. As root it runs as the `postgres` system user (postgres refuses root).
Use the fixtures from a test module with `from pg_server import postgres_dsn, fresh_pg_database`.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest


def pg_bin_dir() -> Path | None:
    """Directory holding initdb/pg_ctl: on PATH, else the newest /usr/lib/postgresql/<ver>/bin."""
    on_path = shutil.which("pg_ctl")
    if on_path and shutil.which("initdb"):
        return Path(os.path.realpath(on_path)).parent
    dirs = [Path(d) for d in glob.glob("/usr/lib/postgresql/*/bin") if Path(d, "initdb").exists()]
    dirs.sort(key=lambda d: int(d.parent.name) if d.parent.name.isdigit() else 0)
    return dirs[-1] if dirs else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgServer:
    """One running server; `dsn(db)` gives a DuckDB/libpq DSN, `sql(stmt)` runs a statement via psql."""

    def __init__(self, bin_dir: Path, root: Path, port: int, run_as: list[str]):
        self.bin_dir, self.root, self.port, self.run_as = bin_dir, root, port, run_as

    def dsn(self, dbname: str) -> str:
        return f"dbname={dbname} host={self.root} port={self.port} user=postgres"

    def _run(self, tool: str, *args: str) -> str:
        cmd = [*self.run_as, str(self.bin_dir / tool), *args]
        done = subprocess.run(cmd, check=False, capture_output=True, text=True)
        if done.returncode:
            log = self.root / "server.log"
            log_text = log.read_text() if log.exists() else ""
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stdout}{done.stderr}{log_text}")
        return done.stdout

    def sql(self, statement: str, dbname: str = "postgres") -> str:
        return self._run("psql", "-XAtq", "-v", "ON_ERROR_STOP=1", "-d", self.dsn(dbname), "-c", statement)

    def create_database(self, dbname: str) -> str:
        self.sql(f'CREATE DATABASE "{dbname}"')
        return self.dsn(dbname)

    def drop_database(self, dbname: str) -> None:
        self.sql(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')

    def start(self) -> None:
        data = self.root / "data"
        initdb = ["-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"]
        self._run("initdb", *initdb, "--no-instructions")
        settings = {
            "listen_addresses": "127.0.0.1",
            "port": self.port,
            "unix_socket_directories": self.root,
            "max_connections": 200,
            "fsync": "off",  # a throwaway server: no durability
            "synchronous_commit": "off",
            "full_page_writes": "off",
        }
        opts = " ".join(f"-c {k}={v}" for k, v in settings.items())
        log = str(self.root / "server.log")
        self._run("pg_ctl", "start", "-w", "-t", "60", "-D", str(data), "-l", log, "-o", opts)

    def stop(self) -> None:
        self._run("pg_ctl", "stop", "-m", "immediate", "-w", "-D", str(self.root / "data"))


def start_server() -> PgServer:
    """Start a server in a new temp dir; the caller must `stop()` it and delete `root`. Skips if absent."""
    bin_dir = pg_bin_dir()
    if bin_dir is None:
        pytest.skip("PostgreSQL is not installed (no initdb/pg_ctl; `apt-get install postgresql`)")
    run_as: list[str] = []
    # /tmp keeps the socket path short (unix socket paths are limited to ~107 bytes)
    root = Path(tempfile.mkdtemp(prefix="codi-pg-", dir="/tmp"))
    if os.geteuid() == 0:
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(root)
            pytest.skip("running as root and there is no `postgres` user to run the server as")
        os.chown(root, user.pw_uid, user.pw_gid)
        run_as = [shutil.which("runuser") or "/usr/sbin/runuser", "-u", "postgres", "--"]
    server = PgServer(bin_dir, root, _free_port(), run_as)
    try:
        server.start()
    except BaseException:
        with contextlib.suppress(Exception):  # pg_ctl -w may time out with the server up
            server.stop()
        shutil.rmtree(root, ignore_errors=True)
        raise
    return server


@pytest.fixture(scope="session")
def pg_server():
    """The session's PgServer (`.dsn(db)`, `.sql(stmt, db)`, `.create_database(db)`, `.root`, `.port`)."""
    server = start_server()
    try:
        yield server
    finally:
        try:
            server.stop()
        finally:
            shutil.rmtree(server.root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_dsn(pg_server: PgServer) -> str:
    """DSN of the database `codi`, shared by the whole session, e.g.
    'dbname=codi host=/tmp/codi-pg-abc123 port=54321 user=postgres'."""
    return pg_server.create_database("codi")


@pytest.fixture
def fresh_pg_database(pg_server: PgServer):
    """DSN of a new empty database for one test; dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    yield pg_server.create_database(name)
    pg_server.drop_database(name)
