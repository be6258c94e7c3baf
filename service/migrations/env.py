"""Alembic's entry point. Database.migrate() hands over an open connection (inside
its own transaction, holding the migration lock); `alembic_config(url)` alone
also works, for offline SQL (`command.upgrade(config, "head", sql=True)`) or a
one-off run."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from service.database import Base, migration_engine

config = context.config


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=Base.metadata,
                      render_as_batch=connection.dialect.name == "sqlite", compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=Base.metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
elif (given := config.attributes.get("connection")) is not None:
    _run(given)
else:
    engine = migration_engine(config.get_main_option("sqlalchemy.url") or "")
    try:
        with engine.begin() as connection:
            _run(connection)
    finally:
        engine.dispose()
