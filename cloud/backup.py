"""`carbontrace cloud backup` / `restore`: everything a cloud keeps, into one backup directory and back.

What a cloud keeps (cloud/settings.py): the database, the local content store (every accepted blob), the
checkpoint signing key and its revoked predecessors, the encryption key and its retired predecessors (old blobs
open only with them), the operator's chain key (unless CT_CLOUD_CHAIN_KEY holds it: then only its address is
recorded, the key stays where the deployment keeps it), the operator API key and metrics token files, and for
the embedded chain its transaction journal (cloud/embedded_chain.py), without which the registry is gone.

Order matters while the cloud runs: the database first, then the content store and the journal. Blobs are
written before the row that names them and chain transactions are journaled before the database records them,
so everything the copied database refers to is already on disk when it is copied after it. The journal may
hold a transaction the database copy does not know of yet: the same state as a crash right after a send,
which the anchoring job already recovers from.

Restore puts each file where the *current* settings (CT_CLOUD_*) say, so a backup restores onto another
machine's layout; it refuses to replace existing state unless forced.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from glob import glob
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import make_url

from carbontrace_host.backup_dir import (
    Backup,
    BackupError,
    BackupWriter,
    occupied,
    open_backup,
    restore_file,
    restore_sqlite,
)
from carbontrace_host.secret_files import FILE_MODE, private_dir
from cloud.chain_signer import CHAIN_KEY_ENV
from cloud.settings import Settings

KIND = "cloud"

def key_files(settings: Settings) -> dict[str, Path]:
    """role -> where that key file lives; siblings named <file>.<suffix> (revoked, retired, pending keys)
    travel with it under the same role."""
    return {
        "signing_key": Path(settings.signing_key_file),
        "encryption_key": Path(settings.encryption_key_path),
        "chain_key": Path(settings.chain_key_file),
        "operator_key": Path(settings.operator_key_file),
        "metrics_token": Path(settings.metrics_token_path),
    }


def sqlite_path(database_url: str) -> Path:
    database = make_url(database_url).database
    if not database or database == ":memory:":
        raise BackupError(f"{database_url}: an in-memory database has nothing to back up")
    return Path(database)


def _libpq_url(database_url: str) -> str:
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


def pg_tool(name: str) -> str:
    """pg_dump / pg_restore: the newest Debian PostgreSQL install (its tools restore what older servers dump),
    else on PATH."""
    installed = sorted(glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(Path(p).parts[-3]))
    found = installed[-1] if installed else shutil.which(name)
    if found is None:
        raise BackupError(f"{name} not found (install postgresql-client): a PostgreSQL cloud is backed up with it")
    return found


def _run(command: list[str], what: str) -> None:
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BackupError(f"{what} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")


def _registries(settings: Settings) -> list[dict[str, Any]]:
    """The registry contracts the database remembers, one per chain (cloud/ledger_chain.py's meta rows)."""
    from cloud.db import make_engine, read_session_factory
    from cloud.models import Meta

    engine = make_engine(settings.database_url)
    try:
        with read_session_factory(engine)() as session:
            rows = session.execute(select(Meta).where(Meta.key.like("registry@%"))).scalars().all()
            found = []
            for row in rows:
                chain_id, _, url = row.key.removeprefix("registry@").partition(":")
                found.append({"chain_id": int(chain_id), "chain": url, "registry_address": row.value})
            return found
    finally:
        engine.dispose()


def _chain_account(settings: Settings) -> str | None:
    from cloud.chain_signer import operator_signer

    try:
        signer, _ = operator_signer(settings.chain_key_file, allow_create=False)
    except (FileNotFoundError, ValueError):
        return None
    return signer.address


def _siblings(path: Path) -> list[Path]:
    return sorted(p for p in path.parent.glob(path.name + ".*") if p.is_file() and not p.name.endswith(".tmp"))


def backup_cloud(settings: Settings, out: Path) -> dict[str, Any]:
    """Write a backup of the cloud ``settings`` describe into ``out`` (absent or empty); returns the manifest."""
    writer = BackupWriter(out, KIND)
    if settings.is_sqlite:
        writer.add_sqlite("database", sqlite_path(settings.database_url), "database/cloud.db")
        database = {"engine": "sqlite"}
    else:
        target = out / "database" / "cloud.pgdump"
        private_dir(target.parent)
        _run([pg_tool("pg_dump"), "--format=custom", "--no-owner", "--no-acl", f"--file={target}",
              "--dbname", _libpq_url(settings.database_url)], "pg_dump")
        os.chmod(target, FILE_MODE)
        writer.record("database", "database/cloud.pgdump")  # written by pg_dump, listed here
        database = {"engine": "postgresql", "format": "pg_dump custom"}
    blobs = writer.add_tree("content", Path(settings.content_dir), "content")
    journal = settings.embedded_chain_journal
    if journal is not None and journal.is_file():
        writer.add_file("chain_journal", journal, "chain/embedded-chain.jsonl")
    key_from_env = bool(os.environ.get(CHAIN_KEY_ENV, "").strip())
    for role, path in key_files(settings).items():
        if role == "chain_key" and key_from_env:
            continue  # held outside the file system (CT_CLOUD_CHAIN_KEY): recorded by address only
        if path.is_file():
            writer.add_file(role, path, f"keys/{role}")
        for sibling in _siblings(path):
            writer.add_file(role, sibling, f"keys/{role}{sibling.name.removeprefix(path.name)}")
    return writer.finish(
        database=database,
        content_blobs=blobs,
        chain={
            "chain": settings.chain,
            "embedded_journal": journal is not None,
            "registries": _registries(settings),
            "chain_account": _chain_account(settings),
            "chain_key": "environment CT_CLOUD_CHAIN_KEY (not in this backup)" if key_from_env else "file",
        },
        settings={
            "environment": settings.environment,
            "database_url": make_url(settings.database_url).render_as_string(hide_password=True),
            "chain": settings.chain,
            "registry_address": settings.registry_address,
            "content_store": settings.content_store,
            "content_dir": settings.content_dir,
            "signing_key_file": settings.signing_key_file,
            "encryption_key_file": settings.encryption_key_path,
            "chain_key_file": settings.chain_key_file,
            "operator_key_file": settings.operator_key_file,
            "metrics_token_file": settings.metrics_token_path,
            "embedded_chain_state": str(journal) if journal is not None else "memory",
        },
    )


@dataclass
class _Plan:
    """Where each backed-up file goes, worked out (and checked) before anything is written."""

    files: list[tuple[Path, Path]] = field(default_factory=list)  # (source in backup, target)
    sqlite: tuple[Path, Path] | None = None
    pg_dump: Path | None = None
    occupied: list[str] = field(default_factory=list)


def _plan(backup: Backup, settings: Settings) -> _Plan:
    plan = _Plan()
    database = backup.one("database")
    if database is None:
        raise BackupError(f"{backup.root}: the manifest lists no database")
    engine = backup.manifest.get("database", {}).get("engine")
    if engine == "sqlite":
        if not settings.is_sqlite:
            raise BackupError("the backup holds a SQLite database; CT_CLOUD_DATABASE_URL is not SQLite")
        target = sqlite_path(settings.database_url)
        plan.sqlite = (backup.source(database), target)
        if occupied(target):
            plan.occupied.append(str(target))
    else:
        if settings.is_sqlite:
            raise BackupError("the backup holds a PostgreSQL dump; CT_CLOUD_DATABASE_URL is SQLite")
        plan.pg_dump = backup.source(database)
        if _pg_has_tables(settings.database_url):
            plan.occupied.append(make_url(settings.database_url).render_as_string(hide_password=True))
    content = Path(settings.content_dir)
    if occupied(content):
        plan.occupied.append(str(content))
    for entry in backup.of_role("content"):
        plan.files.append((backup.source(entry), content / entry.path.removeprefix("content/")))
    journal_entry = backup.one("chain_journal")
    if journal_entry is not None:
        journal = settings.embedded_chain_journal
        if journal is None:
            raise BackupError("the backup holds the embedded chain's journal: restore with CT_CLOUD_CHAIN=embedded "
                              "and CT_CLOUD_EMBEDDED_CHAIN_STATE not 'memory', or the registry is lost")
        plan.files.append((backup.source(journal_entry), journal))
        if occupied(journal):
            plan.occupied.append(str(journal))
    for role, base in key_files(settings).items():
        for entry in backup.of_role(role):
            suffix = Path(entry.path).name.removeprefix(role)
            target = base.with_name(base.name + suffix)
            plan.files.append((backup.source(entry), target))
            if occupied(target):
                plan.occupied.append(str(target))
    return plan


def _pg_has_tables(database_url: str) -> bool:
    from sqlalchemy import create_engine, text

    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            count = connection.execute(
                text("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'")
            ).scalar_one()
        return bool(count)
    finally:
        engine.dispose()


def restore_cloud(settings: Settings, source: Path, force: bool = False) -> dict[str, Any]:
    """Restore the backup at ``source`` onto the paths ``settings`` name. Every file is checked first; existing
    state is replaced only with ``force``. Returns what was restored where."""
    backup = open_backup(source, KIND)
    plan = _plan(backup, settings)
    if plan.occupied and not force:
        raise BackupError("refusing to overwrite existing state (use --force): " + ", ".join(plan.occupied))
    if plan.sqlite is not None:
        restore_sqlite(*plan.sqlite)
    if plan.pg_dump is not None:
        _run([pg_tool("pg_restore"), "--clean", "--if-exists", "--no-owner", "--no-acl", "--exit-on-error",
              "--dbname", _libpq_url(settings.database_url), str(plan.pg_dump)], "pg_restore")
    content = Path(settings.content_dir)
    if force and content.is_dir():
        shutil.rmtree(content)  # blobs the restored database never heard of are not this state
    private_dir(content)
    for src, target in plan.files:
        restore_file(src, target)
    return {
        "restored_from": str(source),
        "created_at": backup.manifest.get("created_at"),
        "database": settings.database_url if plan.sqlite else "postgresql (pg_restore)",
        "content_blobs": len(backup.of_role("content")),
        "files": len(plan.files) + 1,
        "chain": backup.manifest.get("chain"),
    }
