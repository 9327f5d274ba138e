"""Throwaway PostgreSQL and Redis servers for the tests: Debian's binaries, free loopback ports, a
temporary folder each; stopped and removed afterwards. `.ci/run` installs them when they are missing."""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .servers import free_port, wait_until


def postgres_bin() -> str | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return os.path.dirname(found[-1]) if found else None


def _as_postgres(*command: str) -> list[str]:
    return list(command) if os.geteuid() != 0 else ["runuser", "-u", "postgres", "--", *command]


class Postgres:
    """A PostgreSQL cluster of its own (Debian's binaries, a free loopback port, a temporary folder) that a
    test can stop and start again on the same port."""

    def __init__(self) -> None:
        bin_dir = postgres_bin()
        if bin_dir is None:
            raise RuntimeError("PostgreSQL server binaries are missing: apt-get install postgresql")
        self.bin = bin_dir
        self.folder = tempfile.mkdtemp(prefix="rag-pg-")
        os.chmod(self.folder, 0o755)
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres", "postgres")
        self.data, self.port = os.path.join(self.folder, "data"), free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        run = {"check": True, "capture_output": True}
        subprocess.run(_as_postgres(f"{self.bin}/initdb", "-D", self.data, "-A", "trust", "-U", "postgres"), **run)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=on"
        log = os.path.join(self.folder, "log")
        command = [f"{self.bin}/pg_ctl", "-D", self.data, "-o", options, "-l", log, "-w", "start"]
        subprocess.run(_as_postgres(*command), check=True, capture_output=True)

    def stop(self) -> None:
        """As a crash would: connections cut at once."""
        command = [f"{self.bin}/pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop"]
        subprocess.run(_as_postgres(*command), capture_output=True)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


@contextmanager
def postgres(started: bool = True) -> Iterator[Postgres]:
    """A PostgreSQL cluster of its own, started unless told otherwise; removed afterwards."""
    server = Postgres()
    try:
        if started:
            server.start()
        yield server
    finally:
        server.remove()


class Redis:
    """A Redis server of its own, in memory only, that a test can stop and start again on the same port."""

    def __init__(self) -> None:
        self.binary = shutil.which("redis-server")
        if self.binary is None:
            raise RuntimeError("redis-server is missing: apt-get install redis-server")
        self.folder, self.port = tempfile.mkdtemp(prefix="rag-redis-"), free_port()
        self.url = f"redis://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        command = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.process = subprocess.Popen(
            [*command, "--dir", self.folder], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        import redis as client

        probe = client.Redis(host="127.0.0.1", port=self.port)
        wait_until(lambda: _answers(probe), timeout=30)

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None


@contextmanager
def redis() -> Iterator[Redis]:
    """A Redis server of its own, started; removed afterwards."""
    server = Redis()
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.folder, ignore_errors=True)


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
    include {folder}/faq-rag.conf;
}}
"""
EXAMPLE = Path(__file__).resolve().parent.parent / "docs" / "nginx.conf"


def example_site(upstreams: list[str], port: int) -> str:
    """The documented nginx file (docs/nginx.conf) with these replicas and this port."""
    text = EXAMPLE.read_text(encoding="utf-8")
    servers = "\n".join(f"    server {u} max_fails=1 fail_timeout=10s;" for u in upstreams)
    text = re.sub(r"(?m)^    server 127\.0\.0\.1:800\d .*\n", "", text)
    text = text.replace("upstream rag {\n", "upstream rag {\n" + servers + "\n", 1)
    return text.replace("listen 80;", f"listen 127.0.0.1:{port};")


@contextmanager
def nginx(upstreams: list[str]) -> Iterator[str]:
    """nginx in front of ``upstreams`` (``host:port``), as the load balancer; yields its URL."""
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.path.exists(binary):
        raise RuntimeError("nginx is missing: apt-get install nginx")
    folder, port = tempfile.mkdtemp(prefix="rag-nginx-"), free_port()
    os.chmod(folder, 0o755)
    conf = os.path.join(folder, "nginx.conf")
    with open(conf, "w") as fh:
        fh.write(NGINX.format(folder=folder))
    with open(os.path.join(folder, "faq-rag.conf"), "w") as fh:
        fh.write(example_site(upstreams, port))
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
