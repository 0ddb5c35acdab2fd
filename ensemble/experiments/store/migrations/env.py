"""Alembic environment. Migrations run from ``store.migrate`` on a connection it passes in
(``config.attributes["connection"]``), the async cookbook's pattern; there is no alembic.ini."""

from __future__ import annotations

from alembic import context

from ensemble.experiments.store.schema import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata,
                  render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
