"""Launch and supervise the embedded agent server: one subprocess per data dir.

The first API process that takes the lock file under DATA_DIR/agent-server/ launches the
server on a free 127.0.0.1 port and restarts it with back-off when it dies. Other processes
with the same data dir read its URL from `server.json` and take over the lock when that
process exits. The server dies with the process that launched it (PR_SET_PDEATHSIG, and
atexit for a normal exit), so it is never orphaned.
"""
import atexit
import ctypes
import fcntl
import hashlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from openhands_api.config import read_or_create_secret

logger = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1

# Max seconds from launch until /ready returns 200; the server's imports take several seconds.
READY_TIMEOUT_SECONDS = 90
# Restart back-off: 1, 2, 4 ... seconds, at most this long.
MAX_RESTART_DELAY_SECONDS = 30
# A server that ran this long before dying restarts without delay.
STABLE_SECONDS = 60
STOP_TIMEOUT_SECONDS = 10
# Maximum length of a tmux directory whose sockets stay within the 107-byte limit of a Unix
# socket path.
TMUX_DIR_MAX_LENGTH = 50
# How often a process without the lock checks whether it can take over.
FOLLOWER_POLL_SECONDS = 5


def find_executable():
    """Return the agent-server console script beside this Python, or on PATH."""
    beside = Path(sys.executable).with_name("agent-server")
    if beside.exists():
        return str(beside)
    return shutil.which("agent-server")


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _die_with_parent(parent_pid):
    """Run in the child before exec: ask the kernel for SIGTERM when the launching thread exits."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    # The parent may have died between fork and prctl.
    if os.getppid() != parent_pid:
        os._exit(1)


class EmbeddedAgentServer:
    """The agent server subprocess that the API launches when no external server is set."""

    def __init__(self, data_dir, executable=None):
        self.state_dir = Path(data_dir) / "agent-server"
        self.executable = executable or find_executable()
        self.url = None
        self._process = None
        self._lock_file = None
        self._thread = None
        self._stopping = threading.Event()
        self._ready = threading.Event()
        self._mutex = threading.Lock()
        self.last_error = ""

    @property
    def api_key(self):
        return read_or_create_secret(self.state_dir / "session_api_key")

    def start(self):
        """Start supervising in the background; return at once. Calling it again does nothing."""
        with self._mutex:
            if self._thread is not None:
                return
            self.state_dir.mkdir(parents=True, exist_ok=True)
            self._stopping.clear()
            self._thread = threading.Thread(
                target=self._supervise, name="agent-server-supervisor", daemon=True
            )
            self._thread.start()
            atexit.register(self.stop)

    def wait_ready(self, timeout):
        """Return True once the server is ready, or False after `timeout` seconds."""
        return self._ready.wait(timeout)

    def is_ready(self):
        return self._ready.is_set()

    def stop(self):
        """Stop supervising and terminate the server if this process launched it."""
        self._stopping.set()
        process = self._process
        if process is not None and process.poll() is None:
            logger.info("Stopping the embedded agent server (pid %s)", process.pid)
            process.terminate()
            try:
                process.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                logger.warning("Agent server pid %s ignored SIGTERM; killing it", process.pid)
                process.kill()
                process.wait(timeout=STOP_TIMEOUT_SECONDS)
            self.stop_tmux_servers()
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None
        self._ready.clear()

    def _supervise(self):
        # Everything runs on this thread: PR_SET_PDEATHSIG fires when the thread that forked
        # the child exits, so the launching thread must live as long as the server.
        while not self._stopping.is_set():
            if self._take_lock():
                self._run_as_owner()
                return
            self._follow()

    def _take_lock(self):
        lock_path = self.state_dir / "supervisor.lock"
        handle = open(lock_path, "a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        self._lock_file = handle
        return True

    def _follow(self):
        """Use the server of the process that holds the lock until that process goes away."""
        state_path = self.state_dir / "server.json"
        try:
            state = json.loads(state_path.read_text())
            self.url = state["url"]
        except (OSError, ValueError, KeyError):
            self._ready.clear()
        else:
            if _is_ready_at(self.url):
                if not self._ready.is_set():
                    logger.info("Using the agent server at %s launched by pid %s", self.url, state.get("pid"))
                self._ready.set()
            else:
                self._ready.clear()
        self._stopping.wait(FOLLOWER_POLL_SECONDS)

    def _run_as_owner(self):
        delay = 1
        while not self._stopping.is_set():
            started_at = time.monotonic()
            try:
                self._launch()
            except OSError as error:
                self.last_error = f"The agent server could not be started: {error}"
                logger.error("%s", self.last_error)
            else:
                self._wait_until_ready()
                exit_code = self._process.wait()
                self._ready.clear()
                self.stop_tmux_servers()
                if self._stopping.is_set():
                    return
                self.last_error = f"The agent server exited with code {exit_code}."
                logger.error(
                    "Embedded agent server (pid %s) exited with code %s; see %s",
                    self._process.pid, exit_code, self.log_path,
                )

            if time.monotonic() - started_at > STABLE_SECONDS:
                delay = 1
            logger.info("Restarting the embedded agent server in %s s", delay)
            self._stopping.wait(delay)
            delay = min(delay * 2, MAX_RESTART_DELAY_SECONDS)

    @property
    def log_path(self):
        return self.state_dir / "agent-server.log"

    @property
    def tmux_dir(self):
        path = self.state_dir / "tmux"
        # A Unix socket path has at most 107 bytes, and tmux adds "/tmux-UID/" and a
        # 41-character socket name. A deep data dir therefore gets a short directory of its own.
        if len(str(path)) > TMUX_DIR_MAX_LENGTH:
            digest = hashlib.sha256(str(self.state_dir.resolve()).encode()).hexdigest()[:16]
            path = Path(tempfile.gettempdir()) / f"openhands-api-tmux-{digest}"
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        return path

    def stop_tmux_servers(self):
        """Stop the tmux servers that the agent server's terminals left behind."""
        tmux = shutil.which("tmux")
        if tmux is None:
            return
        sockets = [path for path in self.tmux_dir.glob("tmux-*/*") if path.is_socket()]
        for path in sockets:
            subprocess.run(
                [tmux, "-S", str(path), "kill-server"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=10, check=False,
            )
            path.unlink(missing_ok=True)
        if sockets:
            logger.info("Stopped %s tmux server(s) left by the agent server", len(sockets))

    def environment(self):
        """Build the server's environment from scratch: its agents' shells inherit it."""
        home = self.state_dir / "home"
        home.mkdir(parents=True, exist_ok=True)
        return {
            "PATH": os.environ.get("PATH", os.defpath),
            "HOME": str(home),
            "LANG": "C.UTF-8",
            # Event timestamps are naive local time; UTC makes them unambiguous.
            "TZ": "UTC",
            "OH_SESSION_API_KEYS_0": self.api_key,
            # Encrypts the secrets the server stores (LLM key, GitHub token); stable, so stored
            # conversations survive a restart.
            "OH_SECRET_KEY": read_or_create_secret(self.state_dir / "secret_key"),
            "OH_ENABLE_VSCODE": "false",
            "OH_PRELOAD_TOOLS": "false",
            "OH_TELEMETRY_EXPORTER": "none",
            "OH_CONVERSATIONS_PATH": str(self.state_dir / "conversations"),
            "OH_WORKSPACE_PATH": str(self.state_dir / "workspace"),
            "OH_BASH_EVENTS_DIR": str(self.state_dir / "bash_events"),
            "OH_CONVERSATION_WORKTREE_ROOT": str(self.state_dir / "worktrees"),
            "OPENHANDS_AGENT_SERVER_CONFIG_PATH": str(self.state_dir / "config.json"),
            # tmux daemonizes, so its servers outlive a killed agent server. With their sockets
            # in a directory of ours, they can be found and stopped after it exits.
            "TMUX_TMPDIR": str(self.tmux_dir),
            # Otherwise LiteLLM downloads its model price list at import.
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        }

    def _launch(self):
        if not self.executable:
            raise OSError("the agent-server command was not found beside Python or on PATH")

        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        log = open(self.log_path, "ab")
        parent_pid = os.getpid()
        try:
            self._process = subprocess.Popen(
                [self.executable, "--host", "127.0.0.1", "--port", str(port)],
                env=self.environment(),
                cwd=self.state_dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=lambda: _die_with_parent(parent_pid),
            )
        finally:
            log.close()
        logger.info("Launched the embedded agent server (pid %s) on %s", self._process.pid, self.url)

    def _wait_until_ready(self):
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while time.monotonic() < deadline and not self._stopping.is_set():
            if self._process.poll() is not None:
                return
            if _is_ready_at(self.url):
                self._write_state()
                self.last_error = ""
                self._ready.set()
                logger.info("Embedded agent server (pid %s) is ready on %s", self._process.pid, self.url)
                return
            self._stopping.wait(0.25)

        if not self._stopping.is_set() and self._process.poll() is None:
            logger.error(
                "Embedded agent server (pid %s) was not ready after %s s; terminating it",
                self._process.pid, READY_TIMEOUT_SECONDS,
            )
            self._process.terminate()

    def _write_state(self):
        state_path = self.state_dir / "server.json"
        temporary = state_path.with_suffix(".tmp")
        temporary.write_text(json.dumps({"url": self.url, "pid": self._process.pid, "owner_pid": os.getpid()}))
        temporary.replace(state_path)


def _is_ready_at(url):
    try:
        return httpx.get(f"{url}/ready", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
