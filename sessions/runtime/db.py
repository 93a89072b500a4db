"""Run Django ORM calls from the runtime's event loop."""
from channels.db import database_sync_to_async


async def run_orm(function, *args, **kwargs):
    """Run the sync `function` in a worker thread and close its database connection after.

    thread_sensitive=False keeps ORM calls off the single shared sync thread, which request
    handling in the same process may be waiting on.
    """
    return await database_sync_to_async(function, thread_sensitive=False)(*args, **kwargs)
