"""Real server processes for end-to-end tests, bound to 127.0.0.1 on free ports."""
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from django.conf import settings
from django.db import connection

from sessions.runtime.supervisor import free_port

PROJECT_DIR = Path(__file__).resolve().parent.parent
START_TIMEOUT_SECONDS = 30


def test_database_url():
    """Return a DATABASE_URL for the test database this process uses, for child processes."""
    database = connection.settings_dict
    if database["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{Path(database['NAME']).resolve()}"
    user = database.get("USER") or ""
    password = f":{database['PASSWORD']}" if database.get("PASSWORD") else ""
    host = database.get("HOST") or "127.0.0.1"
    port = f":{database['PORT']}" if database.get("PORT") else ""
    return f"postgres://{user}{password}@{host}{port}/{database['NAME']}"


class DaphneServer:
    """A daphne process serving this project, sharing the test database and data dir."""

    def __init__(self, extra_env=None, port=None, log_path=None):
        self.port = port or free_port()
        self.extra_env = extra_env or {}
        self.log_path = log_path or Path(settings.DATA_DIR) / f"daphne-{self.port}.log"
        self.process = None

    @property
    def http_url(self):
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self):
        return f"ws://127.0.0.1:{self.port}"

    def environment(self):
        env = dict(os.environ)
        env.update(
            DJANGO_SETTINGS_MODULE="tests.settings",
            OPENHANDS_API_DATA_DIR=str(settings.DATA_DIR),
            DATABASE_URL=test_database_url(),
            PYTHONUNBUFFERED="1",
        )
        env.update(self.extra_env)
        return env

    def start(self):
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(self.port),
             "openhands_api.asgi:application"],
            cwd=PROJECT_DIR,
            env=self.environment(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self.wait_until_healthy()
        return self

    def wait_until_healthy(self):
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"daphne exited with {self.process.returncode}: {self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.http_url}/healthz", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.2)
        raise RuntimeError(f"daphne did not become healthy: {self.log_tail()}")

    def stop(self, sig=signal.SIGTERM):
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)

    def log_tail(self, lines=40):
        try:
            return "\n".join(Path(self.log_path).read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def request(self, method, path, key=None, body=None, timeout=30):
        """Send an HTTP request; return (status, JSON body or None, headers)."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.http_url}{path}", data=data, method=method)
        if body is not None:
            request.add_header("Content-Type", "application/json")
        if key is not None:
            request.add_header("Authorization", f"Bearer {key}")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, parse_json(response.read()), response.headers
        except urllib.error.HTTPError as error:
            return error.code, parse_json(error.read()), error.headers


def parse_json(raw):
    try:
        return json.loads(raw)
    except ValueError:
        return None
