"""Alembic's environment: migrate the connection `upgrade` hands over (`config.attributes`),
or, from the `alembic` command line, the catalogue at TRICOLOR_DB."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from tricolor.catalogue.schema import metadata
from tricolor.catalogue.store import normalise_url
from tricolor.settings import catalogue_url


def run_migrations(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=True,  # SQLite alters tables by copying them
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is not None:
    run_migrations(connection)
else:
    with create_engine(normalise_url(catalogue_url())).begin() as own_connection:
        run_migrations(own_connection)
