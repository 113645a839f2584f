"""The embedded PostgreSQL a new user gets when DATABASE_URL is unset.

The `pgserver` wheel ships PostgreSQL binaries, so nothing but Python is needed. The data
directory lives under ./var/ and persists between runs. Each process that loads the settings
attaches to the running server (or starts it); the server stops when the last attached process
exits, so no orphan server is left behind.

This server has no contrib extensions (pg_trgm, btree_gist): a migration that needs one must
create it only where available and let the feature degrade with a logged warning.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

logger = logging.getLogger(__name__)

DATABASE_NAME = "backoffice"


def _connect_uri(server_uri: str, database: str) -> str:
    # pgserver gives postgresql://postgres:@/postgres?host=/socket/dir
    head, _, query = server_uri.partition("?")
    base = head.rsplit("/", 1)[0]
    return f"{base}/{database}?{query}" if query else f"{base}/{database}"


def ensure_running(var_dir: Path) -> dict:
    """Start or attach to the embedded server and return a Django DATABASES entry for it."""
    pgdata = var_dir / "pgdata"
    try:
        var_dir.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset; its fallback is fine here.
            warnings.simplefilter("ignore")
            import pgserver
            from pgserver.postgres_server import PostgresServer

            if pgdata.exists():
                with PostgresServer._lock:
                    _forget_dead_processes(pgdata)
            server = pgserver.get_server(pgdata, cleanup_mode="stop")
        uri = server.get_uri()
        _ensure_database(uri)
    except Exception as exc:  # any failure here must tell the user what to do next
        log_file = pgdata / "log"
        raise ImproperlyConfigured(
            "DATABASE_URL is unset, so the back-office tried to start its embedded PostgreSQL "
            f"in {pgdata} and failed: {exc!r}. Either set DATABASE_URL to a PostgreSQL server "
            "(for example postgres://postgres@127.0.0.1:5432/backoffice), or inspect "
            f"{log_file} and remove {pgdata} to start from an empty embedded database."
        ) from exc

    socket_dir = uri.partition("host=")[2].split("&")[0]
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": DATABASE_NAME,
        "USER": "postgres",
        "PASSWORD": "",
        "HOST": socket_dir,
        "PORT": "",
        "CONN_MAX_AGE": 0,
        "CONN_HEALTH_CHECKS": False,
    }


def _forget_dead_processes(pgdata: Path) -> None:
    """pgserver stops the server when the last attached process exits, counting attached processes
    in a file. A process killed without running its exit handlers (SIGKILL, SIGTERM) stays in that
    file forever and the server would never stop again, so dead processes are pruned first."""
    import json

    import psutil

    handles = pgdata / ".handle_pids.json"
    if not handles.exists():
        return
    try:
        pids = json.loads(handles.read_text())
    except ValueError:
        pids = []
    alive = [pid for pid in pids if psutil.pid_exists(pid)]
    if alive != pids:
        handles.write_text(json.dumps(alive))


def _ensure_database(server_uri: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(server_uri, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE_NAME]).fetchone()
        if not exists:
            try:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE_NAME)))
                logger.info("created database %s in the embedded PostgreSQL (pid %s)", DATABASE_NAME, os.getpid())
            except psycopg.errors.DuplicateDatabase:
                pass  # another process created it at the same moment
