"""`carbontrace gateway backup` / `restore`: the spool, the gateway's key and its config file, and back.

The spool (SQLite, WAL) is copied with SQLite's online backup API: one consistent snapshot while the gateway
runs. A restored spool may hold batches the cloud acknowledged after the backup was taken: the gateway uploads
them again and the cloud answers each with its duplicate receipt (the same batch, the same bytes), so they are
acknowledged again and nothing is lost or doubled. Readings that arrived after the backup are in the devices'
own buffers or gone with the old machine; the spool's gap tracking shows which.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

from carbontrace_host.backup_dir import (
    BackupError,
    BackupWriter,
    occupied,
    open_backup,
    restore_file,
    restore_sqlite,
)
from carbontrace_host.secret_files import write_secret
from edge_gateway.config import load_settings

KIND = "gateway"


def backup_gateway(config: Path, out: Path) -> dict[str, Any]:
    """Back up the gateway ``config`` describes (CT_GATEWAY_* overrides included) into ``out``."""
    settings = load_settings(config)
    writer = BackupWriter(out, KIND)
    writer.add_sqlite("spool", settings.spool_path, "spool/spool.db")
    writer.add_file("gateway_key", settings.key_file, "keys/gateway.key")
    writer.add_file("config", config, "config/gateway.toml")
    return writer.finish(
        gateway_id=settings.gateway_id,
        site_id=settings.site_id,
        settings={"config": str(config), "spool_path": str(settings.spool_path), "key_file": str(settings.key_file),
                  "cloud_url": settings.cloud_url},
    )


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a TOML basic string (same escapes)
    raise BackupError(f"cannot rewrite a config value of type {type(value).__name__}: restore without new paths")


def _config_with_paths(original: bytes, spool_path: Path | None, key_file: Path | None) -> bytes:
    """The config with new spool/key paths: rewritten as a flat [gateway] table (comments do not survive)."""
    if spool_path is None and key_file is None:
        return original
    values = tomllib.loads(original.decode())
    table = values["gateway"] if isinstance(values.get("gateway"), dict) else values
    if spool_path is not None:
        table["spool_path"] = str(spool_path)
    if key_file is not None:
        table["key_file"] = str(key_file)
    lines = ["# restored by `carbontrace gateway restore`", "[gateway]"]
    lines += [f"{key} = {_toml_value(value)}" for key, value in table.items()]
    return ("\n".join(lines) + "\n").encode()


def restore_gateway(
    source: Path,
    config: Path,
    spool_path: Path | None = None,
    key_file: Path | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Restore a gateway backup: its config written to ``config`` (with the new spool and key paths when given),
    the spool and key where that config names them. Every file is checked first; existing state is replaced
    only with ``force``."""
    backup = open_backup(source, KIND)
    found = {role: backup.one(role) for role in ("spool", "gateway_key", "config")}
    missing = [role for role, entry in found.items() if entry is None]
    if missing:
        raise BackupError(f"{source}: the manifest lists no {', '.join(missing)}")
    spool, key, original = (backup.source(entry) for entry in found.values() if entry is not None)
    rewritten = _config_with_paths(original.read_bytes(), spool_path, key_file)
    # Where the restored config (and CT_GATEWAY_* here) puts things; validated before anything is written.
    staged = config.with_name(f".{config.name}.restoring")
    write_secret(staged, rewritten)
    try:
        settings = load_settings(staged)
    finally:
        staged.unlink()
    targets = [config, settings.spool_path, settings.key_file]
    taken = [str(t) for t in targets if occupied(t)]
    if taken and not force:
        raise BackupError("refusing to overwrite existing state (use --force): " + ", ".join(taken))
    restore_sqlite(spool, settings.spool_path)
    restore_file(key, settings.key_file)
    write_secret(config, rewritten)
    return {"restored_from": str(source), "created_at": backup.manifest.get("created_at"),
            "gateway_id": settings.gateway_id, "config": str(config), "spool_path": str(settings.spool_path),
            "key_file": str(settings.key_file)}
