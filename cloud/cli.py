"""`carbontrace cloud …`: serve the API, run admin tasks. Mounted by the lead's CLI as a typer sub-app."""

from __future__ import annotations

import json
import time
from typing import Any

import typer

from cloud.settings import Settings

cloud_app = typer.Typer(help="CarbonTrace cloud ledger: API server and admin commands.", no_args_is_help=True)
readers_app = typer.Typer(
    help="Readers batch blobs are sealed to (enterprises, regulators; the cloud always). Changes apply to batches "
    "sealed afterwards only.",
    no_args_is_help=True,
)
cloud_app.add_typer(readers_app, name="readers")


@cloud_app.command()
def serve(
    host: str | None = typer.Option(None, help="bind address (default: CT_CLOUD_HOST)"),
    port: int | None = typer.Option(None, help="port (default: CT_CLOUD_PORT)"),
    workers: int = typer.Option(1, help="uvicorn worker processes (stateless; one anchoring leader among them)"),
) -> None:
    """Run the API (uvicorn). Migrations run at start-up. Logs: one JSON line per event and per request
    (carbontrace_host/logs.py, the gateway's format) on stderr."""
    import uvicorn

    from carbontrace_host.logs import logging_config

    settings = Settings()
    # The cloud's request log (cloud/request_log.py) replaces uvicorn's access log: route, status, duration, id.
    log_config = logging_config(settings.log_level)
    try:
        settings.check_bind(host or settings.host)
    except ValueError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc
    if workers > 1:
        uvicorn.run(
            "cloud.app:create_app",
            factory=True,
            host=host or settings.host,
            port=port or settings.port,
            workers=workers,
            log_config=log_config,
            access_log=False,
        )
        return
    from cloud.app import create_app

    uvicorn.run(create_app(settings), host=host or settings.host, port=port or settings.port,
                log_config=log_config, access_log=False)


@cloud_app.command()
def migrate() -> None:
    """Create or upgrade the database schema."""
    from cloud.db import make_engine
    from cloud.db import migrate as run_migrations

    run_migrations(make_engine(Settings().database_url))
    typer.echo("schema is up to date")


@cloud_app.command()
def bootstrap() -> None:
    """First set-up: schema, the checkpoint signing key, the operator's chain key and the first operator API key
    (each made only if absent; key files 0600). Prints where they are and the chain address to fund."""
    from cloud.chain_signer import operator_signer
    from cloud.db import make_engine, session_factory
    from cloud.db import migrate as run_migrations
    from cloud.metrics_token import load_or_create_metrics_token
    from cloud.security import bootstrap_operator_key
    from cloud.signing_key import load_or_create

    settings = Settings()
    load_or_create_metrics_token(settings.metrics_token_path)
    engine = make_engine(settings.database_url)
    run_migrations(engine)
    load_or_create(settings.signing_key_file, allow_create=True)
    load_or_create(settings.encryption_key_path, True, "cloud encryption key")
    chain_account, _ = operator_signer(settings.chain_key_file, allow_create=True)
    with session_factory(engine).begin() as session:
        made = bootstrap_operator_key(session, settings.operator_key_file, int(time.time()))
    typer.echo(
        json.dumps(
            {
                "operator_key_file": settings.operator_key_file if made else None,
                "operator_key": "made" if made else "an operator key exists already (rotate-operator-key)",
                "chain_account": chain_account.address,
                "chain_key_file": settings.chain_key_file,
                "encryption_key_file": settings.encryption_key_path,
                "metrics_token_file": settings.metrics_token_path,
            }
        )
    )


@cloud_app.command("chain-account")
def chain_account() -> None:
    """The operator's chain address (the account to fund on a real network) and its balance on CT_CLOUD_CHAIN."""
    from cloud import chain as chainlib
    from cloud.chain_signer import operator_signer

    settings = Settings()
    signer, _ = operator_signer(settings.chain_key_file, allow_create=False)
    report: dict[str, object] = {"chain_account": signer.address}
    try:
        node = (
            chainlib.connect_embedded(settings.embedded_chain_journal)
            if settings.chain == "embedded"
            else chainlib.connect_rpc(settings.chain)
        )
        report |= {"chain_id": node.chain_id, "balance_wei": node.balance(signer.address)}
    except chainlib.ChainUnavailable as exc:
        report["chain"] = f"unreachable: {exc}"
    typer.echo(json.dumps(report))


@cloud_app.command()
def status() -> None:
    """The cloud's queues and halts as JSON: the anchoring queue (unanchored leaves, lag, pending checkpoints,
    blobs IPFS has not got) and, when anchoring is stuck, why and the command that resolves it; the operator's
    chain account and its balance. Reads the database and the chain only: safe beside a running cloud."""
    from cloud import chain as chainlib
    from cloud.anchoring_state import RESOLUTION, anchoring_state
    from cloud.chain_signer import operator_signer
    from cloud.db import make_engine, read_session_factory

    settings = Settings()
    with read_session_factory(make_engine(settings.database_url))() as session:
        state = anchoring_state(session)
    report: dict[str, object] = {
        "log_leaves": state.log_size,
        "unanchored_leaves": state.unanchored_leaves,
        "anchoring_lag_s": round(state.lag_s(time.time()), 1),
        "pending_checkpoints": state.pending_checkpoints,
        "unpinned_blobs": state.unpinned_blobs,
        "halts": [],
    }
    if state.halted is not None:
        report["halts"] = [{"state": state.halted, "last_error": state.last_error, "resolve": RESOLUTION[state.halted]}]
    signer, _ = operator_signer(settings.chain_key_file, allow_create=False)
    report["chain_account"] = signer.address
    node = None
    if settings.chain == "embedded":
        report["balance_wei"] = None  # the embedded chain lives inside the serving process (always funded)
    else:
        try:
            node = chainlib.connect_rpc(settings.chain)
            report["balance_wei"] = node.balance(signer.address)
        except chainlib.ChainUnavailable:
            report["balance_wei"] = None
    try:
        report |= _registry_status(settings, node, session_factory_of(settings))
    except chainlib.ChainUnavailable:
        report["registry_chain"] = None
    _chain_ahead_halt(report, settings)
    if report.get("anchoring_paused"):
        halts = report["halts"]
        assert isinstance(halts, list)
        halts.append({
            "state": "registry_migration",
            "last_error": "anchoring paused by a registry migration that has not finished",
            "resolve": "carbontrace cloud migrate-registry (resumes at the recorded step)",
        })
    typer.echo(json.dumps(report, indent=2))


@cloud_app.command("migrate-registry")
def migrate_registry_command() -> None:
    """Move to a successor registry without losing history: pause anchoring, deploy the successor (it records
    the current registry's final checkpoint), carry every registration with its key history, seal the current
    registry for it, switch the cloud's record to it and resume anchoring (README, Operations, "Migrating the
    registry"). Each step is recorded in the database: after a crash, run it again and it resumes. A running
    cloud on a JSON-RPC node keeps serving and ingesting meanwhile; with CT_CLOUD_CHAIN=embedded the chain lives
    in the serving process: stop the cloud first."""
    from cloud import registry_migration
    from cloud.chain_signer import operator_signer
    from cloud.db import make_engine, session_factory
    from cloud.db import migrate as run_migrations
    from cloud.ledger_chain import LedgerChain

    settings = Settings()
    engine = make_engine(settings.database_url)
    run_migrations(engine)
    sessions = session_factory(engine)
    operator, _ = operator_signer(settings.chain_key_file, allow_create=False)
    ledger_chain = LedgerChain(
        settings.chain,
        sessions,
        settings.registry_address,
        signer=operator,
        fund_operator=settings.fund_operator,
        embedded_journal=settings.embedded_chain_journal,
    )
    current = ledger_chain.registry()
    chain = ledger_chain.connect()
    progress = registry_migration.migrate_registry(
        chain, sessions, settings.chain, current.address, operator, report=lambda line: typer.echo(line, err=True)
    )
    assert progress.new is not None
    report: dict[str, object] = {
        "migrated_from": progress.old,
        "registry": progress.new,
        "step": progress.step,
        "carried": progress.carried,
        "registry_chain": registry_migration.registry_chain_of(chain, progress.new, operator),
    }
    if settings.registry_address and settings.registry_address.lower() != progress.new.lower():
        report["note"] = (
            f"CT_CLOUD_REGISTRY_ADDRESS still names {settings.registry_address}: the cloud follows its successor "
            f"link, but set it to {progress.new}"
        )
    typer.echo(json.dumps(report, indent=2))


def session_factory_of(settings: Settings) -> Any:
    from cloud.db import make_engine, read_session_factory

    return read_session_factory(make_engine(settings.database_url))


def _chain_ahead_halt(report: dict[str, object], settings: Settings) -> None:
    """List chain_ahead_of_database before any anchoring attempt finds it (a cloud just restored from a backup
    older than the chain, nothing pending yet): the newest registry counts more checkpoints than the database
    has ever signed (it records each before sending it)."""
    from sqlalchemy import func, select

    from cloud.anchoring_state import HALT_CHAIN_AHEAD, RESOLUTION
    from cloud.models import Checkpoint

    registries = report.get("registry_chain")
    halts = report["halts"]
    assert isinstance(halts, list)
    if not isinstance(registries, list) or not registries or any(h["state"] == HALT_CHAIN_AHEAD for h in halts):
        return
    on_chain = int(registries[0]["checkpoints"])
    with session_factory_of(settings)() as session:
        signed = int(session.execute(select(func.count()).select_from(Checkpoint)).scalar_one())
    if on_chain > signed:
        halts.append({"state": HALT_CHAIN_AHEAD, "last_error": f"the registry holds {on_chain} checkpoint(s), this "
                      f"database {signed}: it is older than the chain (restored from an older backup)",
                      "resolve": RESOLUTION[HALT_CHAIN_AHEAD]})


def _registry_status(settings: Settings, node: Any, sessions: Any) -> dict[str, object]:
    """The chain of registries (newest first; only with a JSON-RPC node: the embedded chain lives in the serving
    process) and any migration under way, for `cloud status`."""
    from sqlalchemy import select

    from cloud import chain as chainlib
    from cloud import registry_migration
    from cloud.models import Meta

    with sessions() as session:
        paused = registry_migration.anchoring_paused(session)
        rows = {m.key: m.value for m in session.scalars(select(Meta))}
    out: dict[str, object] = {"anchoring_paused": paused}
    migrations = [
        registry_migration.Progress.from_json(v) for k, v in rows.items() if k.startswith("registry-migration@")
    ]
    if migrations:
        out["registry_migration"] = [{"from": m.old, "to": m.new, "step": m.step} for m in migrations]
    if node is None:
        return out
    remembered = rows.get(registry_migration.registry_key(node.chain_id, settings.chain))
    address = settings.registry_address or remembered or ""
    if address:
        try:
            out["registry_chain"] = registry_migration.registry_chain_of(node, address)
        except chainlib.ChainError as exc:
            out["registry_chain"] = f"unreadable: {exc}"
    return out


@cloud_app.command("rotate-operator-key")
def rotate_operator_key(
    show: bool = typer.Option(False, "--print", help="also print the new key (else it is only in the key file)"),
) -> None:
    """Revoke every operator API key and make a new one, written to CT_CLOUD_OPERATOR_KEY_FILE (0600). Running
    clouds refuse the old keys at once (keys are looked up per request)."""
    from cloud.db import make_engine, session_factory
    from cloud.db import migrate as run_migrations
    from cloud.security import rotate_operator_key as rotate

    settings = Settings()
    engine = make_engine(settings.database_url)
    run_migrations(engine)
    with session_factory(engine).begin() as session:
        key = rotate(session, settings.operator_key_file, int(time.time()))
    typer.echo(key if show else f"new operator key in {settings.operator_key_file}; every older one is revoked")


@cloud_app.command()
def keygen(path: str = typer.Option(None, help="key file (default: CT_CLOUD_SIGNING_KEY_FILE)")) -> None:
    """Create the cloud's checkpoint signing key (refuses to overwrite) and print its public key."""
    from pathlib import Path

    from cloud.signing_key import load_or_create, public_key

    target = path or Settings().signing_key_file
    if Path(target).exists():
        typer.echo(f"{target} exists; not overwriting", err=True)
        raise typer.Exit(1)
    typer.echo(public_key(load_or_create(target, allow_create=True)).hex())


@cloud_app.command()
def anchor(force: bool = typer.Option(False, help="checkpoint now even if not due")) -> None:
    """Run the anchoring job once (if this process becomes the leader) and print what it did."""
    from cloud.ledger import build_ledger

    ledger = build_ledger(Settings())
    report = ledger.anchorer.tick(force_checkpoint=force)
    typer.echo(json.dumps(report.__dict__))


@cloud_app.command("recover-from-chain")
def recover_from_chain() -> None:
    """Resolve chain_ahead_of_database (a database restored from a backup older than its external chain): read
    the checkpoints the registry anchored after the database's last one, fetch their blobs and their batches'
    blobs by cid (content store, else IPFS), verify each against the chain (anchored size and root, cloud and
    gateway keys on chain) and re-ingest them through the normal ingestion path, in one transaction. Missing
    content is named cid by cid and nothing changes (exit 1). Idempotent. Run it with the cloud stopped, right
    after `carbontrace cloud restore`; then start the cloud: anchoring resumes from the chain's head."""
    from cloud import chain as chainlib
    from cloud.chain_recovery import ContentMissing, RecoveryRefused
    from cloud.chain_recovery import recover_from_chain as recover
    from cloud.ledger import build_ledger

    ledger = build_ledger(Settings())
    try:
        report = recover(ledger)
    except ContentMissing as err:
        typer.echo(json.dumps({"recovered": False, "error": str(err), "missing_cids": err.missing}))
        typer.echo(f"recovery refused, nothing changed: {err}", err=True)
        raise typer.Exit(1) from err
    except (RecoveryRefused, chainlib.ChainError) as err:
        typer.echo(json.dumps({"recovered": False, "error": str(err)}))
        typer.echo(f"recovery refused, nothing changed: {err}", err=True)
        raise typer.Exit(1) from err
    typer.echo(json.dumps({"recovered": True, **report.as_json()}))


@cloud_app.command("register-gateway-keys")
def register_gateway_keys() -> None:
    """Register on chain the keys of gateways created before gateway keys went on chain (idempotent)."""
    from cloud.gateway_keys import register_missing_gateway_keys
    from cloud.ledger import build_ledger

    report = register_missing_gateway_keys(build_ledger(Settings()))
    typer.echo(json.dumps(report.__dict__))
    if report.conflicts:
        raise typer.Exit(1)


@cloud_app.command("rotate-cloud-key")
def rotate_cloud_key(path: str = typer.Option(None, help="key file (default: CT_CLOUD_SIGNING_KEY_FILE)")) -> None:
    """Replace the cloud's signing key: a new key file, the old key revoked and the new one registered on chain.

    The old file is kept as <name>.revoked-<UTC timestamp>. Restart the cloud afterwards: a running one still
    signs with the old key. Safe to run again after a failure: the new key waits in <name>.new until the chain
    lists it."""
    import os
    from pathlib import Path

    from carbontrace_protocol.ids import key_fingerprint
    from cloud.chain_signer import operator_signer
    from cloud.db import make_engine, session_factory
    from cloud.db import migrate as run_migrations
    from cloud.ledger_chain import LedgerChain
    from cloud.ledger_chain import rotate_cloud_key as rotate_on_chain
    from cloud.signing_key import load_or_create, public_key

    settings = Settings()
    current = Path(path or settings.signing_key_file)
    if not current.exists():
        typer.echo(f"{current} does not exist: nothing to rotate (`carbontrace cloud keygen` creates one)", err=True)
        raise typer.Exit(1)
    old_public = public_key(load_or_create(str(current), allow_create=False))
    pending = current.with_name(current.name + ".new")
    new_public = public_key(load_or_create(str(pending), allow_create=True))  # 0600; reused by a re-run
    engine = make_engine(settings.database_url)
    run_migrations(engine)
    # No cloud key check on this LedgerChain: an interrupted run may have revoked the old key already.
    operator, _ = operator_signer(settings.chain_key_file, allow_create=False)
    registry = LedgerChain(
        settings.chain,
        session_factory(engine),
        settings.registry_address,
        signer=operator,
        fund_operator=settings.fund_operator,
    ).registry()
    sent = rotate_on_chain(registry, old_public, new_public)
    retired = current.with_name(f"{current.name}.revoked-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}")
    os.replace(current, retired)
    os.chmod(retired, 0o600)
    os.replace(pending, current)
    typer.echo(
        json.dumps(
            {
                "revoked_key_fingerprint": key_fingerprint(old_public).hex(),
                "active_key_fingerprint": key_fingerprint(new_public).hex(),
                "revoked_key_file": str(retired),
                "transactions": ["0x" + tx.tx_hash.hex() for tx in sent],
            }
        )
    )


@cloud_app.command("rotate-encryption-key")
def rotate_encryption_key() -> None:
    """Make a new cloud encryption key for batches sealed from now on (CT_CLOUD_ENCRYPTION_KEY_FILE). The old
    private key is kept as <name>.retired-<fingerprint> (0600), so blobs sealed to it still open for trace and
    retrieve. Restart the cloud afterwards: a running one still seals to the old key."""
    from cloud.encryption_keys import rotate_encryption_key as rotate

    try:
        rotation = rotate(Settings().encryption_key_path)
    except FileNotFoundError as err:
        typer.echo(str(err), err=True)
        raise typer.Exit(1) from err
    typer.echo(
        json.dumps(
            {
                "retired_key_fingerprint": rotation.retired_fingerprint,
                "active_key_fingerprint": rotation.active_fingerprint,
                "retired_key_file": str(rotation.retired_file),
            }
        )
    )


# ---- blob readers ----------------------------------------------------------------------------------------


def _reader_public_key(value: str) -> bytes:
    """130 hex characters, or a file holding them (what `carbontrace cloud readers keygen` prints)."""
    from pathlib import Path

    text = value.strip()
    if len(text) != 130 and Path(text).is_file():
        text = Path(text).read_text().strip()
    try:
        key = bytes.fromhex(text)
    except ValueError as err:
        raise typer.BadParameter("give the public key as 130 hex characters (uncompressed SEC1) or a file") from err
    return key


def _reader_json(row: object) -> dict[str, object]:
    from cloud import models

    assert isinstance(row, models.BlobReader)
    return {
        "kind": row.kind,
        "id": row.party_id,
        "fingerprint": row.fingerprint.hex(),
        "public_key": row.public_key.hex(),
        "added_at": row.added_at,
        "revoked_at": row.revoked_at,
    }


def _reader_change(action: str, kind: str, party_id: str, public_key: str | None) -> None:
    from carbontrace_protocol.errors import ProtocolError
    from cloud import blob_readers
    from cloud.db import make_engine, session_factory
    from cloud.db import migrate as run_migrations

    engine = make_engine(Settings().database_url)
    run_migrations(engine)
    now = int(time.time())
    try:
        with session_factory(engine).begin() as session:
            if action == "revoke":
                row = blob_readers.revoke_reader(session, kind, party_id, now)
            else:
                assert public_key is not None
                change = blob_readers.add_reader if action == "add" else blob_readers.rotate_reader
                row = change(session, kind, party_id, _reader_public_key(public_key), now)
            report = _reader_json(row)
    except (blob_readers.ReaderError, ProtocolError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1) from err
    typer.echo(json.dumps(report))


KIND_HELP = "enterprise (its own batches) or regulator (every batch)"


@readers_app.command("list")
def readers_list(all_keys: bool = typer.Option(False, "--all", help="also revoked and rotated-out keys")) -> None:
    """The reader keys new batches are sealed to (the cloud's own key is always a recipient, not listed)."""
    from cloud import blob_readers
    from cloud.db import make_engine, session_factory
    from cloud.db import migrate as run_migrations

    engine = make_engine(Settings().database_url)
    run_migrations(engine)
    with session_factory(engine)() as session:
        typer.echo(json.dumps([_reader_json(r) for r in blob_readers.list_readers(session, all_keys)]))


@readers_app.command("add")
def readers_add(
    kind: str = typer.Argument(..., help=KIND_HELP),
    party_id: str = typer.Argument(..., help="enterprise id, or a regulator id (reg-N, as POST /regulators named it)"),
    public_key: str = typer.Option(..., "--public-key", help="P-256 public key: 130 hex characters, or a file"),
) -> None:
    """Register a reader's encryption key: batches sealed from now on are also wrapped to it."""
    _reader_change("add", kind, party_id, public_key)


@readers_app.command("rotate")
def readers_rotate(
    kind: str = typer.Argument(..., help=KIND_HELP),
    party_id: str = typer.Argument(..., help="enterprise id, or a regulator id (reg-N, as POST /regulators named it)"),
    public_key: str = typer.Option(..., "--public-key", help="the new P-256 public key: 130 hex, or a file"),
) -> None:
    """Replace a reader's key. Batches sealed from now on go to the new key; earlier ones stay sealed to the old
    one (keep the old private key to read them)."""
    _reader_change("rotate", kind, party_id, public_key)


@readers_app.command("revoke")
def readers_revoke(
    kind: str = typer.Argument(..., help=KIND_HELP),
    party_id: str = typer.Argument(..., help="enterprise id, or a regulator id (reg-N, as POST /regulators named it)"),
) -> None:
    """Stop sealing to a reader. Future batches only: blobs sealed before keep its entry (their bytes are fixed
    by their CID), so it can still open those."""
    _reader_change("revoke", kind, party_id, None)


@readers_app.command("keygen")
def readers_keygen(path: str = typer.Argument(..., help="the reader's private key file to create (0600)")) -> None:
    """Make a reader's P-256 encryption key pair on the reader's machine; prints the public key to register."""
    from pathlib import Path

    from carbontrace_protocol import sealed_blob
    from cloud.signing_key import load_or_create

    if Path(path).exists():
        typer.echo(f"{path} exists; not overwriting", err=True)
        raise typer.Exit(1)
    key = sealed_blob.private_key_from_int(load_or_create(path, True, "reader key"))
    typer.echo(sealed_blob.public_key_bytes(key).hex())


# ---- backup and restore ----------------------------------------------------------------------------------


@cloud_app.command()
def backup(out: str = typer.Option(..., "--out", help="a new (or empty) directory for the backup, made 0700")) -> None:
    """Back up everything this cloud keeps (CT_CLOUD_*): the database (SQLite online backup or pg_dump), the
    content store, the key files, the embedded chain's journal; manifest.json lists each file's sha256. Safe
    while the cloud runs."""
    from pathlib import Path

    from carbontrace_host.backup_dir import BackupError
    from cloud.backup import backup_cloud

    try:
        manifest = backup_cloud(Settings(), Path(out))
    except BackupError as err:
        typer.echo(f"backup failed: {err}", err=True)
        raise typer.Exit(1) from err
    typer.echo(json.dumps({"backup": out, "files": len(manifest["files"]), "chain": manifest["chain"]}))


@cloud_app.command()
def restore(
    source: str = typer.Option(..., "--from", help="a directory written by `carbontrace cloud backup`"),
    force: bool = typer.Option(False, help="replace existing state at the configured paths"),
) -> None:
    """Restore a backup, with the cloud stopped, onto the paths CT_CLOUD_* name (another machine's layout is
    fine). Every file's sha256 is checked before anything is written; existing state is refused unless --force.
    Start the cloud after."""
    from pathlib import Path

    from carbontrace_host.backup_dir import BackupError
    from cloud.backup import restore_cloud

    try:
        report = restore_cloud(Settings(), Path(source), force=force)
    except BackupError as err:
        typer.echo(f"restore refused: {err}", err=True)
        raise typer.Exit(1) from err
    typer.echo(json.dumps(report))
