"""A real Matrix homeserver (Synapse, installed from PyPI in its own virtual environment by scripts/bootstrap.sh)
started on a free loopback port in a temporary folder, and a small client of its API for the tests' users."""

from __future__ import annotations

import hashlib
import hmac
import os
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import ROOT
from .servers import free_port, wait_until

PYTHON = ROOT / ".venv-synapse" / "bin" / "python"
SHARED = "registration-shared-secret"
LIMITS = {"per_second": 1000, "burst_count": 1000}


def _config(folder: Path, port: int) -> str:
    wide = f"{{per_second: {LIMITS['per_second']}, burst_count: {LIMITS['burst_count']}}}"
    return f"""
server_name: "localhost"
pid_file: {folder}/homeserver.pid
listeners:
  - port: {port}
    bind_addresses: ['127.0.0.1']
    type: http
    tls: false
    resources:
      - names: [client]
        compress: false
database:
  name: sqlite3
  args:
    database: {folder}/homeserver.db
media_store_path: {folder}/media
signing_key_path: {folder}/signing.key
registration_shared_secret: "{SHARED}"
macaroon_secret_key: "macaroon-{uuid.uuid4().hex}"
form_secret: "form-{uuid.uuid4().hex}"
report_stats: false
trusted_key_servers: []
suppress_key_server_warning: true
enable_metrics: false
rc_message: {wide}
rc_registration: {wide}
rc_login: {{address: {wide}, account: {wide}, failed_attempts: {wide}}}
rc_joins: {{local: {wide}, remote: {wide}}}
rc_invites: {{per_room: {wide}, per_user: {wide}, per_issuer: {wide}}}
"""


@contextmanager
def synapse(folder: Path) -> Iterator[str]:
    """A homeserver (``localhost``) for the duration of the block; its base URL."""
    if not PYTHON.exists():
        if os.environ.get("CI"):
            pytest.fail("CI needs Synapse (scripts/bootstrap.sh dev installs it in .venv-synapse)")
        pytest.skip("no Synapse here: `scripts/bootstrap.sh dev` installs it")
    port = free_port()
    config = folder / "homeserver.yaml"
    config.write_text(_config(folder, port), encoding="utf-8")
    run = [str(PYTHON), "-m", "synapse.app.homeserver", "-c", str(config)]
    subprocess.run([*run, "--generate-keys"], check=True, capture_output=True, cwd=folder)
    log = (folder / "synapse.log").open("wb")
    process = subprocess.Popen(run, stdout=log, stderr=subprocess.STDOUT, cwd=folder)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _healthy(base, process), timeout=120)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def _healthy(base: str, process: subprocess.Popen) -> bool:
    if process.poll() is not None:
        raise RuntimeError(f"Synapse stopped at start (exit {process.returncode}); see synapse.log")
    try:
        return httpx.get(base + "/health", timeout=1).text == "OK"
    except httpx.HTTPError:
        return False


@dataclass
class User:
    """A user of the homeserver, over the client-server API."""

    base: str
    user_id: str
    token: str

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        response = httpx.request(
            method,
            f"{self.base}/_matrix/client/v3{path}",
            json=body,
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=30,
        )
        assert response.status_code < 400, response.text
        return response.json()

    def say(self, room: str, text: str, thread: str | None = None) -> str:
        content: dict[str, Any] = {"msgtype": "m.text", "body": text}
        if thread:
            content["m.relates_to"] = {"rel_type": "m.thread", "event_id": thread, "is_falling_back": True}
        sent = self.call("PUT", f"/rooms/{room}/send/m.room.message/{uuid.uuid4().hex}", content)
        return sent["event_id"]

    def messages(self, room: str) -> list[dict[str, Any]]:
        """The room's messages, oldest first."""
        found = self.call("GET", f"/rooms/{room}/messages?dir=b&limit=100")
        return [e for e in reversed(found["chunk"]) if e["type"] == "m.room.message"]

    def replies(self, room: str, sender: str, root: str) -> list[dict[str, Any]]:
        """The messages ``sender`` posted in the thread of ``root``."""
        return [
            e
            for e in self.messages(room)
            if e["sender"] == sender and (e["content"].get("m.relates_to") or {}).get("event_id") == root
        ]


def register(base: str, name: str, admin: bool = False) -> User:
    """A new user, registered with the homeserver's shared secret (as `register_new_matrix_user` does). Synapse
    rate-limits no registration made this way (it has no client address); it refuses a name already taken."""
    url = f"{base}/_synapse/admin/v1/register"
    nonce = httpx.get(url, timeout=10).json()["nonce"]
    password = uuid.uuid4().hex
    message = b"\x00".join([nonce.encode(), name.encode(), password.encode(), b"admin" if admin else b"notadmin"])
    mac = hmac.new(SHARED.encode(), message, hashlib.sha1).hexdigest()
    body = {"nonce": nonce, "username": name, "password": password, "admin": admin, "mac": mac}
    done = httpx.post(url, json=body, timeout=30)
    assert done.status_code == 200, f"registering {name}: {done.status_code} {done.text}"
    return User(base, done.json()["user_id"], done.json()["access_token"])


def wait_for(check, timeout: float = 60.0):
    """:func:`wait_until`, polling the homeserver less often."""
    return wait_until(check, timeout, interval=0.2)
