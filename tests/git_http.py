"""A git smart-HTTP server for tests: `git http-backend` behind basic auth, on 127.0.0.1.

Every request must carry basic credentials whose password is the server's token, as GitHub
requires of private repositories, and any user name is accepted. Without them the server
returns 401 with a `WWW-Authenticate: Basic` challenge, so that git runs its askpass program.
"""
import base64
import binascii
import logging
import os
import shutil
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

logger = logging.getLogger(__name__)

BACKEND_TIMEOUT_SECONDS = 60


def git_command(*args, cwd=None):
    """Run git with a fixed identity and no user or system configuration."""
    environment = {
        "PATH": os.environ.get("PATH", os.defpath),
        "HOME": str(cwd or Path.cwd()),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "Test",
        "GIT_AUTHOR_EMAIL": "test@example.com",
        "GIT_COMMITTER_NAME": "Test",
        "GIT_COMMITTER_EMAIL": "test@example.com",
    }
    subprocess.run(["git", *args], cwd=cwd, env=environment, check=True, capture_output=True)


class GitHttpServer:
    """Serves the bare repositories under `root` (as `owner/name.git`) to clients with `token`."""

    def __init__(self, root, token):
        self.root = Path(root)
        self.token = token
        # (method, path, status) of every request, for assertions about authentication.
        self.requests = []
        self._lock = threading.Lock()
        self._server = None
        self._thread = None

    @property
    def base_url(self):
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self):
        self.root.mkdir(parents=True, exist_ok=True)
        handler = type("Handler", (_Handler,), {"git": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="git-http", daemon=True
        )
        self._thread.start()
        logger.info("Git HTTP server serving %s on %s", self.root, self.base_url)
        return self

    def stop(self):
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def record(self, method, path, status):
        with self._lock:
            self.requests.append((method, path, status))

    def requests_for(self, repository):
        with self._lock:
            return [request for request in self.requests if f"/{repository}.git/" in request[1]]

    def create_repository(self, repository, files):
        """Create the bare repository `owner/name` with one commit of `files` (path to text)."""
        bare = self.root / f"{repository}.git"
        seed = self.root / ".seed" / repository
        git_command("init", "--quiet", "--bare", "--initial-branch=main", str(bare))
        seed.mkdir(parents=True)
        git_command("init", "--quiet", "--initial-branch=main", cwd=seed)
        for path, text in files.items():
            (seed / path).write_text(text)
        git_command("add", "--all", cwd=seed)
        git_command("commit", "--quiet", "-m", "Add the test files", cwd=seed)
        git_command("push", "--quiet", str(bare), "main", cwd=seed)
        shutil.rmtree(seed)
        return bare


class _Handler(BaseHTTPRequestHandler):
    git: GitHttpServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):
        logger.debug("Git HTTP: " + format, *args)

    def do_GET(self):
        self.handle_git()

    def do_POST(self):
        self.handle_git()

    def handle_git(self):
        body = self.read_body()
        if not self.authorized():
            self.git.record(self.command, self.path, 401)
            self.send_plain(401, b"Authentication required\n", {"WWW-Authenticate": 'Basic realm="git"'})
            return

        status, headers, content = self.run_backend(body)
        self.git.record(self.command, self.path, status)
        self.send_plain(status, content, headers)

    def authorized(self):
        scheme, _, encoded = (self.headers.get("Authorization") or "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(encoded, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return False
        _, _, password = decoded.partition(":")
        return password == self.git.token

    def read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    # The empty line after the last chunk. git sends no trailers.
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def run_backend(self, body):
        """Run `git http-backend` as a CGI program and return (status, headers, body)."""
        url = urlsplit(self.path)
        environment = {
            "PATH": os.environ.get("PATH", os.defpath),
            "GIT_PROJECT_ROOT": str(self.git.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "REQUEST_METHOD": self.command,
            "PATH_INFO": url.path,
            "QUERY_STRING": url.query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_USER": "git",
            "REMOTE_ADDR": "127.0.0.1",
        }
        if self.headers.get("Content-Encoding"):
            environment["HTTP_CONTENT_ENCODING"] = self.headers["Content-Encoding"]
        if self.headers.get("Git-Protocol"):
            environment["GIT_PROTOCOL"] = self.headers["Git-Protocol"]

        result = subprocess.run(
            ["git", "http-backend"], input=body, env=environment, capture_output=True,
            timeout=BACKEND_TIMEOUT_SECONDS,
        )
        if result.stderr:
            logger.debug("git http-backend: %s", result.stderr.decode(errors="replace"))
        return parse_cgi_output(result.stdout)

    def send_plain(self, status, content, headers):
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)


def parse_cgi_output(output):
    """Split a CGI program's output into (status, headers without Status, body)."""
    separator = b"\r\n\r\n" if b"\r\n\r\n" in output else b"\n\n"
    head, _, content = output.partition(separator)
    status = 200
    headers = {}
    for line in head.decode("latin-1").splitlines():
        name, _, value = line.partition(":")
        if name.lower() == "status":
            status = int(value.split()[0])
        elif name:
            headers[name.strip()] = value.strip()
    return status, headers, content
