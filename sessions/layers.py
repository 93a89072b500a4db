"""An in-memory channel layer that events may be sent to from any thread's event loop."""
import asyncio

from channels.layers import InMemoryChannelLayer


class ThreadSafeInMemoryChannelLayer(InMemoryChannelLayer):
    """Channels' in-memory layer, with group_send usable from another thread's event loop.

    The agent runtime records events on its own event loop thread, while the WebSocket
    consumers wait on the ASGI server's loop. The parent class keeps asyncio queues that only the
    loop of their receivers may touch, so a group_send from another loop is handed over to the
    loop the consumers receive on.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.home_loop = None

    async def receive(self, channel):
        self.home_loop = asyncio.get_running_loop()
        return await super().receive(channel)

    async def group_send(self, group, message):
        loop = self.home_loop
        if loop is None or loop is asyncio.get_running_loop() or loop.is_closed():
            return await super().group_send(group, message)

        future = asyncio.run_coroutine_threadsafe(super().group_send(group, message), loop)
        return await asyncio.wrap_future(future)
