"""Throwaway PostgreSQL and Redis servers for the tests: Debian's binaries, free loopback ports, a
temporary folder each; stopped and removed afterwards. `.ci/run` installs them when they are missing."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

from .servers import free_port, wait_until


def postgres_bin() -> str | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return os.path.dirname(found[-1]) if found else None


def _as_postgres(*command: str) -> list[str]:
    return list(command) if os.geteuid() != 0 else ["runuser", "-u", "postgres", "--", *command]


@contextmanager
def postgres() -> Iterator[str]:
    """A PostgreSQL cluster of its own; yields its URL."""
    bin_dir = postgres_bin()
    if bin_dir is None:
        raise RuntimeError("PostgreSQL server binaries are missing: apt-get install postgresql")
    folder = tempfile.mkdtemp(prefix="rag-pg-")
    os.chmod(folder, 0o755)
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    data, port = os.path.join(folder, "data"), free_port()
    run = {"check": True, "capture_output": True}
    subprocess.run(_as_postgres(f"{bin_dir}/initdb", "-D", data, "-A", "trust", "-U", "postgres"), **run)
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=on"
    start = [f"{bin_dir}/pg_ctl", "-D", data, "-o", options, "-l", os.path.join(folder, "log"), "-w", "start"]
    subprocess.run(_as_postgres(*start), **run)
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(_as_postgres(f"{bin_dir}/pg_ctl", "-D", data, "-m", "immediate", "stop"), capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def redis() -> Iterator[str]:
    """A Redis server of its own, in memory only; yields its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is missing: apt-get install redis-server")
    folder, port = tempfile.mkdtemp(prefix="rag-redis-"), free_port()
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", folder]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        import redis as client

        probe = client.Redis(host="127.0.0.1", port=port)
        wait_until(lambda: _answers(probe), timeout=30)
        yield f"redis://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=10)
        shutil.rmtree(folder, ignore_errors=True)


def _answers(probe) -> bool:
    try:
        return bool(probe.ping())
    except Exception:  # not listening yet
        return False


NGINX = """worker_processes 1;
daemon off;
pid {folder}/nginx.pid;
error_log {folder}/error.log warn;
events {{ worker_connections 512; }}
http {{
    access_log off;
    client_body_temp_path {folder}/body;
    proxy_temp_path {folder}/proxy;
    fastcgi_temp_path {folder}/fastcgi;
    uwsgi_temp_path {folder}/uwsgi;
    scgi_temp_path {folder}/scgi;
    upstream rag {{
{servers}
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://rag;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_buffering off;
            # searches and answers change nothing that a retry could duplicate: a replica that dies
            # mid-request is retried on the other
            proxy_next_upstream error timeout http_502 http_503 non_idempotent;
        }}
    }}
}}
"""


@contextmanager
def nginx(upstreams: list[str]) -> Iterator[str]:
    """nginx in front of ``upstreams`` (``host:port``), as the load balancer; yields its URL."""
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.path.exists(binary):
        raise RuntimeError("nginx is missing: apt-get install nginx")
    folder, port = tempfile.mkdtemp(prefix="rag-nginx-"), free_port()
    os.chmod(folder, 0o755)
    servers = "\n".join(f"        server {u} max_fails=1 fail_timeout=10s;" for u in upstreams)
    conf = os.path.join(folder, "nginx.conf")
    with open(conf, "w") as fh:
        fh.write(NGINX.format(folder=folder, servers=servers, port=port))
    server = subprocess.Popen([binary, "-c", conf, "-p", folder], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        import httpx

        wait_until(lambda: _up(httpx, base), timeout=30)
        yield base
    finally:
        server.terminate()
        server.wait(timeout=10)
        shutil.rmtree(folder, ignore_errors=True)


def _up(httpx, base: str) -> bool:
    try:
        return httpx.get(base + "/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
