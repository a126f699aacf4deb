"""`carbontrace cloud …`: serve the API, run admin tasks. Mounted by the lead's CLI as a typer sub-app."""

from __future__ import annotations

import json
import time

import typer

from cloud.settings import Settings

cloud_app = typer.Typer(help="CarbonTrace cloud ledger: API server and admin commands.", no_args_is_help=True)


@cloud_app.command()
def serve(
    host: str | None = typer.Option(None, help="bind address (default: CT_CLOUD_HOST)"),
    port: int | None = typer.Option(None, help="port (default: CT_CLOUD_PORT)"),
    workers: int = typer.Option(1, help="uvicorn worker processes (stateless; one anchoring leader among them)"),
) -> None:
    """Run the API (uvicorn). Migrations run at start-up."""
    import uvicorn

    settings = Settings()
    if workers > 1:
        uvicorn.run(
            "cloud.app:create_app",
            factory=True,
            host=host or settings.host,
            port=port or settings.port,
            workers=workers,
        )
        return
    from cloud.app import create_app

    uvicorn.run(create_app(settings), host=host or settings.host, port=port or settings.port)


@cloud_app.command()
def migrate() -> None:
    """Create or upgrade the database schema."""
    from cloud.db import make_engine
    from cloud.db import migrate as run_migrations

    run_migrations(make_engine(Settings().database_url))
    typer.echo("schema is up to date")


@cloud_app.command()
def bootstrap(label: str = typer.Option("operator", help="label stored with the key")) -> None:
    """Create a new platform-operator API key and print it (the only time it is shown)."""
    from cloud.db import make_engine, session_factory
    from cloud.db import migrate as run_migrations
    from cloud.security import Role, issue_key

    engine = make_engine(Settings().database_url)
    run_migrations(engine)
    with session_factory(engine).begin() as session:
        key = issue_key(session, Role.OPERATOR, int(time.time()), label=label)
    typer.echo(key)


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
