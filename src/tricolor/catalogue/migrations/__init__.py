"""The catalogue's Alembic migrations, shipped inside the package: `upgrade` brings any
catalogue database to the newest schema (a pip-installed tricolor migrates its own)."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Engine

# a constant key for PostgreSQL's advisory lock: N labellers starting at once migrate one by one
MIGRATION_LOCK = 0x7472_6963_6F6C


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", "tricolor.catalogue:migrations")
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    config = alembic_config()
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    """The database's schema revision; None where no migration ever ran (no catalogue)."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()
