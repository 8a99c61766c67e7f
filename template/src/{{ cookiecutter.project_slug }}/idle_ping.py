"""Ping a pooled connection before a request gets it, but only if it has sat idle a while.

After a database restart or failover every pooled connection is dead, and without a ping the
first request to draw each one fails. SQLAlchemy's pool_pre_ping pings at every checkout,
which costs a round trip per request (over asyncpg three: BEGIN, the ping, ROLLBACK, which
under load is half the cost of a GET). A connection
returned a moment ago is almost surely alive, so only connections idle for PING_AFTER_IDLE
seconds are pinged.

If one died in between all the same, its query fails, SQLAlchemy invalidates the pool (every
connection opened before the failure is replaced at its next checkout), and the request is
answered 503 with Retry-After (overload.py). The next request gets a new connection.

This module works with either SQLAlchemy API: the pool events are the sync Engine's (an async
engine passes `AsyncEngine.sync_engine`), and the ping is the dialect's own `do_ping`, the one
pool_pre_ping uses: psycopg's turns autocommit on for it, so it leaves no transaction open;
asyncpg's calls the adapter's ping.
"""

from __future__ import annotations

import logging
import time

from sqlalchemy import Engine, event
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection

logger = logging.getLogger(__name__)

# A pooled connection that has sat unused this long is pinged before a request gets it.
PING_AFTER_IDLE = 2.0  # seconds


def ping_idle_connections(engine: Engine, idle: float = PING_AFTER_IDLE) -> None:
    """Ping a connection `engine`'s pool hands out if it was returned `idle` seconds ago or more.

    A connection that does not answer is dropped, and the pool hands out a new one instead.
    """
    dialect = engine.dialect

    @event.listens_for(engine, "checkin")
    def _returned(dbapi_connection: DBAPIConnection | None, record: ConnectionPoolEntry) -> None:
        record.info["returned_at"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping_if_idle(
        dbapi_connection: DBAPIConnection,
        record: ConnectionPoolEntry,
        proxy: PoolProxiedConnection,
    ) -> None:
        # None: a connection opened just now (record.info is emptied whenever one is replaced).
        returned = record.info.get("returned_at")
        if returned is None or time.monotonic() - returned < idle:
            return
        try:
            dialect.do_ping(dbapi_connection)
        except Exception as error:  # the pool drops this connection and opens another
            # Worth a line: a restart or failover of the database, or something killing sessions.
            logger.warning(
                "an idle pooled connection did not answer its ping; replacing it: %s", error
            )
            raise DisconnectionError(f"an idle pooled connection is gone: {error}") from error
