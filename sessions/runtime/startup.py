"""Start the agent runtime in an ASGI server process."""
import logging
import threading

from sessions.runtime import get_runtime

logger = logging.getLogger(__name__)


def start_runtime():
    """Resume the relays of live sessions, off the import path so start-up is not delayed."""
    thread = threading.Thread(target=resume_runtime, name="runtime-resume", daemon=True)
    thread.start()


def resume_runtime():
    try:
        get_runtime().resume()
    except Exception:
        logger.exception("Could not resume the agent runtime; sessions resume on their next message")
