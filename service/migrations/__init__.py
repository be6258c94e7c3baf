"""Alembic revisions of the service's schema, run by Database.migrate() at start-up.

The configuration is built in code (service.database.alembic_config); there is no alembic.ini."""
