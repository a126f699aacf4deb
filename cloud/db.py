"""Engine, sessions and start-up migrations (Alembic, cloud/migrations)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from carbontrace_host.secret_files import private_database

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def make_engine(database_url: str) -> Engine:
    if database_url.startswith("sqlite"):
        path = database_url.split(":///", 1)[-1]
        engine = create_engine(database_url, connect_args={"timeout": 30, "check_same_thread": False})
        if path and path != ":memory:":
            private_database(path)  # API-key hashes and every tenant's index: 0600 in 0700, -wal/-shm too
        _sqlite_serialized_writes(engine)
        return engine
    return create_engine(database_url, pool_pre_ping=True, pool_size=10, max_overflow=10)


def _sqlite_serialized_writes(engine: Engine) -> None:
    # pysqlite starts transactions lazily, so two read-then-write transactions can interleave and one
    # fails late with "database is locked". Sessions from `session_factory` (the writers) BEGIN IMMEDIATE,
    # taking the write lock up front so writers queue (busy timeout); readers BEGIN deferred and, with
    # WAL, never block a writer.
    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        immediate = connection.get_execution_options().get(WRITE_OPTION, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest migration (run at start-up)."""
    config = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


WRITE_OPTION = "carbontrace_write"


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions for read-then-write work (on SQLite they take the write lock when they begin)."""
    return sessionmaker(engine.execution_options(**{WRITE_OPTION: True}), expire_on_commit=False)


def read_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions that only read (never block writers on SQLite)."""
    return sessionmaker(engine, expire_on_commit=False)
