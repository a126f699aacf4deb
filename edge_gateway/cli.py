"""`carbontrace gateway …`: run the gateway, create its key, show its spool."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated

import typer

from carbontrace_host.logs import setup_logging
from edge_gateway.config import load_settings
from edge_gateway.keys import create_key_file

if TYPE_CHECKING:
    from edge_gateway.spool import Spool

gateway_app = typer.Typer(help="The CarbonTrace edge gateway.", no_args_is_help=True)

ConfigOption = Annotated[Path | None, typer.Option("--config", "-c", help="TOML settings file (env CT_GATEWAY_*)")]


@gateway_app.command()
def run(config: ConfigOption = None) -> None:
    """Ingest, verify, spool, batch and upload until SIGTERM/SIGINT (then finish the current write, exit 0)."""
    from carbontrace_host.secret_files import SecretTooOpen
    from edge_gateway.service import Gateway

    settings = load_settings(config)
    setup_logging(settings.log_level)
    try:
        gateway = Gateway(settings)
    except SecretTooOpen as err:  # a key file others may read: say so and stop, no traceback
        typer.echo(str(err), err=True)
        raise typer.Exit(1) from err

    def stop(signum: int, frame: FrameType | None) -> None:
        gateway.stop_event.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    raise typer.Exit(gateway.run())


@gateway_app.command()
def keygen(
    key_file: Annotated[Path, typer.Argument(help="where to write the private key (mode 0600)")],
    force: Annotated[bool, typer.Option(help="replace an existing key")] = False,
) -> None:
    """Create the gateway's P-256 key; prints the public key (SEC1 hex) to register with the cloud."""
    try:
        public = create_key_file(key_file, overwrite=force)
    except FileExistsError as err:
        typer.echo(str(err), err=True)
        raise typer.Exit(1) from err
    typer.echo(public.hex())


@gateway_app.command()
def status(config: ConfigOption = None) -> None:
    """Print the spool's state as JSON: backlog, unacknowledged batches, missing readings, alarms, and under
    "halts" each state that stops this gateway with the command that resolves it (edge_gateway/halts.py)."""
    from edge_gateway.halts import halts
    from edge_gateway.spool import Spool

    settings = load_settings(config)
    spool = Spool(settings.spool_path, settings.spool_max_bytes, settings.spool_max_page_count)
    try:
        report = spool.stats()
        report["halts"] = halts(report, spool.over_limit(), spool.byte_limit(), spool.out_of_space())
        report["rejections"] = {f"{d}/{r}": n for (d, r), n in sorted(spool.rejection_counts().items())}
        report["devices"] = {d: {"accepted": a, "duplicates": n} for d, (a, n) in spool.device_counts().items()}
        report["gaps"] = {d: spool.gaps(d) for d in spool.device_counts()}
    finally:
        spool.close()
    typer.echo(json.dumps(report, indent=2, sort_keys=True))


spool_app = typer.Typer(
    help="The spool's byte limit: what it holds against it, and raising (or lowering) it on a running gateway.",
    no_args_is_help=True,
)
gateway_app.add_typer(spool_app, name="spool")


def _spool_limits(spool: Spool, configured: int) -> dict[str, object]:
    from edge_gateway.spool import BYTE_LIMIT_META

    limit = spool.byte_limit()
    return {"held_bytes": spool.held_bytes(), "byte_limit": limit, "configured_spool_max_bytes": configured,
            "limit_from": "config" if spool.get_meta(BYTE_LIMIT_META) is None else "spool set-limit",
            "over_limit": spool.over_limit(), "file_bytes": spool.file_bytes()}


@spool_app.command("status")
def spool_status(config: ConfigOption = None) -> None:
    """Print the unacknowledged bytes the spool holds, the limit in force (spool_max_bytes, or the one
    `spool set-limit` chose) and whether ingest is paused at it, as JSON."""
    from edge_gateway.spool import Spool

    settings = load_settings(config)
    spool = Spool(settings.spool_path, settings.spool_max_bytes, settings.spool_max_page_count)
    try:
        typer.echo(json.dumps(_spool_limits(spool, settings.spool_max_bytes), indent=2, sort_keys=True))
    finally:
        spool.close()


@spool_app.command("set-limit")
def spool_set_limit(
    max_bytes: Annotated[int | None, typer.Option("--max-bytes", min=1, help="the new limit of unacknowledged bytes")
                         ] = None,
    from_config: Annotated[bool, typer.Option("--from-config", help="go back to the config's spool_max_bytes")
                           ] = False,
    config: ConfigOption = None,
) -> None:
    """Resolve a full spool (halt spool_over_limit) without a restart: the limit is kept in the spool, which the
    running gateway reads at its next ingest attempt, so ingest resumes and the broker redelivers what was left
    unacknowledged. It holds across restarts until `--from-config`; write spool_max_bytes in the config too to keep
    them alike."""
    from edge_gateway.spool import Spool

    if (max_bytes is None) == (not from_config):
        typer.echo("give exactly one of --max-bytes N or --from-config", err=True)
        raise typer.Exit(2)
    settings = load_settings(config)
    spool = Spool(settings.spool_path, settings.spool_max_bytes, settings.spool_max_page_count)
    try:
        spool.set_byte_limit(None if from_config else max_bytes)
        typer.echo(json.dumps(_spool_limits(spool, settings.spool_max_bytes), indent=2, sort_keys=True))
    finally:
        spool.close()


uploads_app = typer.Typer(
    help="A halted upload (the cloud rejected a batch): inspect it, retry it, or skip it to the dead letters.",
    no_args_is_help=True,
)
gateway_app.add_typer(uploads_app, name="uploads")


def _open_spool(config: Path | None) -> Spool:
    from edge_gateway.spool import Spool

    return Spool(load_settings(config).spool_path)


@uploads_app.command("status")
def uploads_status(config: ConfigOption = None) -> None:
    """Print the halt (reason, batch, cloud's detail) if any, the unacknowledged batches and the dead letters."""
    spool = _open_spool(config)
    try:
        halt = spool.get_meta("upload_halted")
        report = {
            "halted": json.loads(halt) if halt else None,
            "unacked": [{"batch_seq": p.batch_seq, "batch_id": p.batch_id} for p in spool.unacked()],
            "dead_letters": spool.dead_letters(),
        }
    finally:
        spool.close()
    typer.echo(json.dumps(report, indent=2, sort_keys=True))


@uploads_app.command("retry")
def uploads_retry(config: ConfigOption = None) -> None:
    """Clear the halt: the running gateway uploads the same batch again (after the cause was fixed in the cloud)."""
    spool = _open_spool(config)
    try:
        old = spool.clear_halt()
    finally:
        spool.close()
    typer.echo("uploads resume" if old else "uploads were not halted")


@uploads_app.command("skip")
def uploads_skip(
    batch: Annotated[int, typer.Option("--batch", help="batch_seq of the halted batch (see `uploads status`)")],
    reason: Annotated[str, typer.Option(help="why it is skipped, kept with the dead letter")] = "skipped by operator",
    config: ConfigOption = None,
) -> None:
    """Move the halted batch to the dead letters (kept in the spool, never deleted, never uploaded) and resume:
    the batches after it are re-signed onto its place, their energy counted from the cloud's baseline."""
    from functools import partial

    from edge_gateway.batcher import rebase_after_skip
    from edge_gateway.keys import load_private_key
    from edge_gateway.spool import Spool

    settings = load_settings(config)
    # The gateway's key re-signs the batches after the skipped one, rebuilt on the cloud's energy baseline.
    rebase = partial(rebase_after_skip, load_private_key(Path(settings.key_file)))
    spool = Spool(settings.spool_path)
    try:
        dead_id = spool.skip_batch(batch, reason, rebase)
    except ValueError as err:
        typer.echo(str(err), err=True)
        raise typer.Exit(1) from err
    finally:
        spool.close()
    typer.echo(f"batch {batch} is dead letter {dead_id}; uploads resume")


@gateway_app.command()
def backup(
    out: Annotated[Path, typer.Option("--out", help="a new (or empty) directory for the backup, made 0700")],
    config: Annotated[Path, typer.Option("--config", "-c", help="the gateway's TOML settings file")],
) -> None:
    """Back up the spool (SQLite online backup: consistent while the gateway runs), the gateway key and the
    config file; manifest.json lists each file's sha256."""
    from carbontrace_host.backup_dir import BackupError
    from edge_gateway.backup import backup_gateway

    try:
        manifest = backup_gateway(config, out)
    except (BackupError, FileNotFoundError) as err:
        typer.echo(f"backup failed: {err}", err=True)
        raise typer.Exit(1) from err
    typer.echo(json.dumps({"backup": str(out), "files": len(manifest["files"]), "gateway_id": manifest["gateway_id"]}))


@gateway_app.command()
def restore(
    source: Annotated[Path, typer.Option("--from", help="a directory written by `carbontrace gateway backup`")],
    config: Annotated[Path, typer.Option("--config", "-c", help="where to write the restored config file")],
    spool_path: Annotated[Path | None, typer.Option(help="put the spool here (rewrites spool_path)")] = None,
    key_file: Annotated[Path | None, typer.Option(help="put the key here (rewrites key_file)")] = None,
    force: Annotated[bool, typer.Option(help="replace existing files")] = False,
) -> None:
    """Restore a gateway backup. Every file's sha256 is checked before anything is written; existing files are
    refused unless --force. Started again, the gateway re-uploads what its spool holds unacknowledged: the
    cloud acknowledges batches it has already with their duplicate receipts."""
    from carbontrace_host.backup_dir import BackupError
    from edge_gateway.backup import restore_gateway

    try:
        report = restore_gateway(source, config, spool_path, key_file, force)
    except BackupError as err:
        typer.echo(f"restore refused: {err}", err=True)
        raise typer.Exit(1) from err
    typer.echo(json.dumps(report))
