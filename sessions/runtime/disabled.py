"""A runtime that runs no agent: messages are stored and no agent replies to them.

For tests of the REST and WebSocket layers, which need no LLM.
"""
import logging

logger = logging.getLogger(__name__)


class DisabledRuntime:
    # No agent ever replies, so sending a message does not make the session busy.
    runs_agents = False

    def check_available(self):
        pass

    def start_session(self, conversation, github_token, initial_message):
        logger.debug("No agent runtime: session %s gets no agent", conversation.id)

    def send_message(self, conversation, text):
        pass

    def interrupt(self, conversation):
        pass

    def end_session(self, conversation):
        pass

    def resume(self):
        pass
