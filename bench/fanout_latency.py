"""Measure how long an event takes from REST request to the WebSocket clients of its session.

Starts one daphne process on 127.0.0.1 with the agent runtime disabled (no LLM needed), opens
SOCKETS WebSockets on one session, sends MESSAGES messages through `POST /sessions/{id}/messages`
one after another, and reports the delay until every socket has received each message's event.

    .venv/bin/python bench/fanout_latency.py [--sockets 20] [--messages 200]

Uses the database and channel layer that DATABASE_URL and REDIS_URL select (SQLite and the
in-memory layer by default), in a throwaway data dir.
"""
import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import websockets

PROJECT_DIR = Path(__file__).resolve().parent.parent
START_TIMEOUT_SECONDS = 60
RECEIVE_TIMEOUT_SECONDS = 10


def parse_arguments():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sockets", type=int, default=20, help="WebSockets on the session")
    parser.add_argument("--messages", type=int, default=200, help="messages to send, one at a time")
    parser.add_argument("--port", type=int, default=8790, help="port of the daphne process")
    return parser.parse_args()


def run_manage(env, *arguments):
    return subprocess.run(
        [sys.executable, "manage.py", *arguments],
        cwd=PROJECT_DIR, env=env, check=True, capture_output=True, text=True,
    ).stdout.strip()


def post(base_url, path, key, body):
    request = urllib.request.Request(
        f"{base_url}{path}",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def wait_until_healthy(base_url, process):
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"daphne exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"{base_url}/healthz", timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("daphne did not start in time")


async def measure(base_url, ws_url, key, sockets, messages):
    conversation_id = post(base_url, "/sessions", key, {})["conversation_id"]
    headers = {"Authorization": f"Bearer {key}"}
    clients = [
        await websockets.connect(f"{ws_url}/ws/{conversation_id}", additional_headers=headers)
        for _ in range(sockets)
    ]
    for client in clients:
        await asyncio.wait_for(client.recv(), RECEIVE_TIMEOUT_SECONDS)

    delays = []
    for number in range(messages):
        text = f"message {number}"
        started = time.perf_counter()
        await asyncio.to_thread(post, base_url, f"/sessions/{conversation_id}/messages", key, {"content": text})
        for client in clients:
            await receive_event(client, text)
        delays.append(time.perf_counter() - started)

    for client in clients:
        await client.close()
    return delays


async def receive_event(client, text):
    for _ in range(100):
        frame = json.loads(await asyncio.wait_for(client.recv(), RECEIVE_TIMEOUT_SECONDS))
        if any(event["content"] == text for event in frame.get("events", [])):
            return
    raise SystemExit(f"{text!r} never arrived")


def main():
    arguments = parse_arguments()
    data_dir = tempfile.mkdtemp(prefix="openhands-api-bench-")
    env = dict(os.environ, OPENHANDS_API_DATA_DIR=data_dir, OPENHANDS_API_AGENT_RUNTIME="disabled")

    run_manage(env, "migrate", "--no-input", "-v0")
    key = run_manage(env, "create_api_key", "bench")

    base_url = f"http://127.0.0.1:{arguments.port}"
    process = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(arguments.port),
         "openhands_api.asgi:application"],
        cwd=PROJECT_DIR, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_until_healthy(base_url, process)
        delays = asyncio.run(measure(
            base_url, f"ws://127.0.0.1:{arguments.port}", key, arguments.sockets, arguments.messages
        ))
    finally:
        process.terminate()
        process.wait(timeout=15)

    milliseconds = sorted(delay * 1000 for delay in delays)
    print(f"sockets={arguments.sockets} messages={arguments.messages}")
    print(f"request to all sockets, ms: median {statistics.median(milliseconds):.1f}, "
          f"p95 {milliseconds[int(len(milliseconds) * 0.95) - 1]:.1f}, max {milliseconds[-1]:.1f}")


if __name__ == "__main__":
    main()
