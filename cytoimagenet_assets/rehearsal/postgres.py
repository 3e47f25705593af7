"""A throwaway PostgreSQL server on 127.0.0.1 for the tests and the rehearsal: Debian's ``postgresql``
package (installed by .ci/run), run from a temporary data folder on a free port; as root it runs as
the ``postgres`` user, which PostgreSQL insists on. Stopped and deleted on exit."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from cytoimagenet_assets.rehearsal.dagster_servers import free_port


class PostgresMissing(RuntimeError):
    """No PostgreSQL server binaries on this machine."""


@contextmanager
def local_postgres(folder: Path | None = None) -> Iterator[dict[str, str]]:
    """A server with database ``dagster`` under ``folder`` (default: a new folder in the system's
    temporary folder, which the ``postgres`` user can reach); yields the DAGSTER_PG_* environment the
    PostgreSQL profile (deploy/postgres/dagster.yaml) reads."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise PostgresMissing("PostgreSQL server binaries are not installed (apt-get install postgresql; .ci/run does)")
    bin_dir = Path(found[-1]).parent
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    folder = Path(tempfile.mkdtemp(prefix="cytoimagenet-pg-")) if folder is None else folder
    folder.mkdir(parents=True, exist_ok=True)
    if as_postgres:
        user = pwd.getpwnam("postgres")
        os.chown(folder, user.pw_uid, user.pw_gid)
    port = free_port()

    def run(*command):
        subprocess.run([*as_postgres, *command], check=True, capture_output=True, text=True, timeout=120)

    data = folder / "data"
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
    run(str(bin_dir / "initdb"), "-D", str(data), "-U", "dagster", "--auth=trust", "--no-sync")
    run(str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(folder / "server.log"), "-w", "-t", "60", "-o", options, "start")
    try:
        run(str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "dagster", "dagster")
        yield {
            "DAGSTER_PG_USERNAME": "dagster",
            "DAGSTER_PG_PASSWORD": "unused-with-trust-auth",
            "DAGSTER_PG_HOST": "127.0.0.1",
            "DAGSTER_PG_DB": "dagster",
            "DAGSTER_PG_PORT": str(port),
        }
    finally:
        subprocess.run([*as_postgres, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(folder, ignore_errors=True)
