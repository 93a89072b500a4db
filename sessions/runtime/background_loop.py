"""One asyncio event loop on a daemon thread, shared by everything that talks to agent servers.

Request threads (runserver, daphne's sync views, tests) hand coroutines to it, so relays and
HTTP clients live on a loop the runtime owns, whatever server runs Django.
"""
import asyncio
import logging
import threading

logger = logging.getLogger(__name__)


class BackgroundLoop:
    """An event loop on a daemon thread, started on first use."""

    def __init__(self, name="agent-runtime"):
        self._name = name
        self._loop = None
        self._thread = None
        self._lock = threading.Lock()

    @property
    def loop(self):
        with self._lock:
            if self._loop is None or not self._thread.is_alive():
                self._start()
            return self._loop

    def _start(self):
        ready = threading.Event()
        loop = asyncio.new_event_loop()

        def run():
            asyncio.set_event_loop(loop)
            ready.set()
            loop.run_forever()

        # Daemon, so a process that exits without stopping the runtime is not kept alive.
        thread = threading.Thread(target=run, name=self._name, daemon=True)
        thread.start()
        ready.wait(timeout=5)
        self._loop = loop
        self._thread = thread
        logger.info("Started the %s event loop", self._name)

    def run(self, coroutine, timeout):
        """Run `coroutine` on the loop and return its result; raise TimeoutError after `timeout` s."""
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        try:
            return future.result(timeout=timeout)
        except TimeoutError:
            future.cancel()
            raise

    def submit(self, coroutine):
        """Start `coroutine` on the loop without waiting; return its concurrent Future."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)
