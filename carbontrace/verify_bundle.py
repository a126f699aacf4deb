"""`carbontrace verify`: check a proof bundle or a signed statement offline, against a pinned trust anchor.

The checks themselves are the protocol core's (carbontrace_protocol/proof_verify.py for bundles,
carbontrace_protocol/statement.py for statements), the same code the cloud runs on its own answers. This
module only reads the chain over JSON-RPC (``Web3ChainReader``: any node, or the cloud's read-only /rpc),
loads the inputs strictly (a bundle in JSON or in CBOR, told apart by its first byte) and prints the report.
Exit status: 0 valid, 3 pending, 4 chain unreachable, 5 incomplete, 6 empty, 2 unusable input or no trust
anchor, and for an invalid document the failing step's own code (proof_verify.STEP_EXIT; docs/proof-bundle.md).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any

import typer

from carbontrace_protocol import bundle_wire, registry_chain, strict_json
from carbontrace_protocol.anchor_commitment import AnchoredFields, CommitmentMismatch, opened_checkpoint
from carbontrace_protocol.emission_factors import CatalogueError
from carbontrace_protocol.ids import KEY_REVOKED
from carbontrace_protocol.proof_bundle import Trust, normalize_address
from carbontrace_protocol.proof_verify import (
    EXIT_CHAIN_UNREACHABLE,
    EXIT_USAGE,
    ChainCheckpoint,
    ChainKey,
    ChainUnreachable,
    CheckFailed,
    Report,
    Step,
    verify_bundle_cbor,
    verify_bundle_json,
)
from carbontrace_protocol.statement import STATEMENT_FORMAT, verify_statement
from carbontrace_protocol.statement_summary import SUMMARY_FORMAT, verify_summary


class PageDirectory(Mapping[str, Any]):
    """The pages of a period summary as files ``<cid>.json`` in a directory, each read (strictly) only when
    the verifier asks for it, so memory holds one page at a time. A page that is not JSON reads as None,
    which matches no listed sha256."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _path(self, cid: str) -> Path:
        return self.directory / f"{cid}.json"

    def __contains__(self, cid: object) -> bool:
        return isinstance(cid, str) and "/" not in cid and self._path(cid).is_file()

    def __getitem__(self, cid: str) -> Any:
        if cid not in self:
            raise KeyError(cid)
        try:
            return strict_json.loads(self._path(cid).read_bytes())
        except strict_json.StrictJSONError:
            return None

    def __iter__(self) -> Iterator[str]:
        return (p.name.removesuffix(".json") for p in sorted(self.directory.glob("*.json")))

    def __len__(self) -> int:
        return sum(1 for _ in self)


def verify_document(document: Any, chain: Any, trust: Trust, pages: Mapping[str, Any] | None = None) -> Report:
    """A period summary (with its pages), a statement or a bundle, by its format field (each parser then
    refuses anything else)."""
    if isinstance(document, dict) and document.get("format") == SUMMARY_FORMAT:
        return verify_summary(document, pages or {}, chain, trust)
    if isinstance(document, dict) and document.get("format") == STATEMENT_FORMAT:
        return verify_statement(document, chain, trust)
    return verify_bundle_json(document, chain, trust)


REGISTRY_ABI_PATH = Path(__file__).resolve().parents[1] / "cloud" / "contracts" / "CarbonTraceRegistry.json"


# ---- the chain behind JSON-RPC ---------------------------------------------------------------------------


class Web3ChainReader:
    """ChainReader over web3 (an HTTP JSON-RPC node, or any Web3 instance) and the committed registry ABI."""

    # Blocks one eth_getLogs asks for: what capped endpoints (the cloud's /rpc, public nodes) answer at once.
    LOG_SPAN_BLOCKS = 10_000

    def __init__(self, w3: Any, registry_address: str, from_block: int = 0) -> None:
        """`from_block`: where to start looking for checkpoint events (the registry's deployment block)."""
        from eth_utils.address import to_checksum_address

        abi = json.loads(REGISTRY_ABI_PATH.read_text())["abi"]
        self.w3 = w3
        self.address = to_checksum_address(registry_address)
        self.contract = w3.eth.contract(address=self.address, abi=abi)
        self.from_block = from_block

    @classmethod
    def over_http(
        cls, url: str, registry_address: str, timeout_s: float = 10.0, from_block: int = 0
    ) -> Web3ChainReader:
        from web3 import HTTPProvider, Web3

        provider = HTTPProvider(url, request_kwargs={"timeout": timeout_s}, exception_retry_configuration=None)
        return cls(Web3(provider), registry_address, from_block)

    def chain_id(self) -> int:
        return int(self.w3.eth.chain_id)

    def has_code(self) -> bool:
        return len(self.w3.eth.get_code(self.address)) > 0

    def checkpoint_count(self) -> int:
        return int(self.contract.functions.checkpointCount().call())

    def checkpoint(self, seq: int) -> ChainCheckpoint:
        """The checkpoint's event, accepted only if it opens the commitment the registry stores for `seq`.

        Searched oldest span first from `from_block`: checkpoints are anchored in order, and an old one is found
        after as many spans as it is old."""
        stored = bytes(self.contract.functions.checkpointCommitment(seq).call())
        head = int(self.w3.eth.block_number)
        event = self.contract.events.CheckpointAnchored
        for start in range(self.from_block, head + 1, self.LOG_SPAN_BLOCKS):
            end = min(head, start + self.LOG_SPAN_BLOCKS - 1)
            logs = event.get_logs(argument_filters={"sequence": seq}, from_block=start, to_block=end)
            if not logs:
                continue
            found = [AnchoredFields.from_log(e) for e in logs]
            try:
                opened = opened_checkpoint(seq, stored, found)
            except CommitmentMismatch:
                continue  # e.g. a log of a block since reorged away; the true one may come later
            return ChainCheckpoint(opened.tree_size, opened.root, opened.cid)
        raise CheckFailed("chain_anchor", f"no event of checkpoint {seq} opens the commitment the registry stores")

    def key(self, fingerprint: bytes) -> ChainKey:
        state, kind, signer_id, enterprise_id, active_from, revoked_at = self.contract.functions.keyState(
            fingerprint
        ).call()
        revoked = int(revoked_at) if int(state) == KEY_REVOKED else None
        return ChainKey(int(state), int(kind), bytes(signer_id), bytes(enterprise_id), int(active_from), revoked)

    def signers_of(self, enterprise_id: bytes, kind: int) -> list[bytes]:
        count = int(self.contract.functions.signerCount(enterprise_id, kind).call())
        return [bytes(self.contract.functions.signerAt(enterprise_id, kind, i).call()) for i in range(count)]

    def link(self) -> registry_chain.RegistryLink:
        """registryLink(): the registry's predecessor and successor (docs/proof-bundle.md, "The chain of
        registries"). A registry deployed before succession existed has no such view: a first registry."""
        from web3.exceptions import BadFunctionCallOutput, ContractLogicError

        try:
            predecessor, count, size, commitment, successor = self.contract.functions.registryLink().call()
        except (ContractLogicError, BadFunctionCallOutput):
            return registry_chain.GENESIS
        return registry_chain.RegistryLink(
            registry_chain.address_or_none(predecessor), int(count), int(size), bytes(commitment),
            registry_chain.address_or_none(successor),
        )

    def at(self, registry_address: str) -> Web3ChainReader:
        """A reader of another registry of the chain, its events searched from the block it was deployed in."""
        other = Web3ChainReader(self.w3, registry_address)
        other.from_block = int(other.contract.functions.deployedAtBlock().call())
        return other


def _human(report: Report) -> str:
    lines = [f"{report.status.upper()}" + (f" at step {report.failed_step}" if report.failed_step else "")]
    lines.append(f"  {report.detail}")
    for step in report.steps:
        lines.append(f"  [{'ok' if step.ok else 'FAIL'}] {step.step}: {step.detail}")
    for item in report.items:
        lines.append(f"  item {item.index} ({item.kind} {item.batch_id} leaf {item.leaf_index}): {item.status}")
        for step in item.steps:
            mark = "ok" if step.ok else ("--" if step.ok is None else "FAIL")
            lines.append(f"    [{mark}] {step.step}: {step.detail}")
    lines.append(f"  checks took {report.verify_ms:.1f} ms (chain reads included)")
    return "\n".join(lines)


def load_trust(trust_file: Path | None, registry: str | None, chain_id: int | None) -> Trust:
    """The trust anchor, from a pinned trust file or from --registry and --chain-id (never from the bundle)."""
    if trust_file is not None:
        if registry is not None or chain_id is not None:
            raise ValueError("give either --trust or --registry with --chain-id, not both")
        return Trust.from_text(trust_file.read_bytes())
    if registry is None or chain_id is None:
        raise ValueError("the trust anchor is required: --trust trust.json, or --registry 0x… and --chain-id N")
    return Trust(chain_id, normalize_address(registry))


def verify_command(
    bundle_path: Annotated[
        Path,
        typer.Argument(
            help="proof bundle (JSON or CBOR), signed statement or period summary (JSON)", metavar="BUNDLE.json"
        ),
    ],
    rpc: Annotated[str, typer.Option("--rpc", help="JSON-RPC URL of a node of the pinned chain, or cloud /rpc")],
    trust_file: Annotated[
        Path | None, typer.Option("--trust", help="pinned trust file (the cloud publishes it at /api/v1/trust)")
    ] = None,
    registry: Annotated[str | None, typer.Option("--registry", help="pinned registry contract address")] = None,
    chain_id: Annotated[int | None, typer.Option("--chain-id", help="pinned chain id")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable report on stdout")] = False,
    pages_dir: Annotated[
        Path | None,
        typer.Option("--pages", help="for a period summary: the directory of its pages, named <cid>.json"),
    ] = None,
    from_block: Annotated[
        int, typer.Option("--from-block", min=0, help="the registry's deployment block: where anchor events begin")
    ] = 0,
) -> None:
    """Verify a proof bundle offline: everything from its bytes, plus the pinned registry's keys and anchors.

    A bundle may be JSON or its CBOR encoding (GET /api/v1/trace/bundle?encoding=cbor), told apart by the first
    byte; both are parsed as strictly and verified alike.

    The registry address and chain id are pinned out of band (--trust, or --registry and --chain-id); a
    bundle naming another registry or chain fails. Exit status: 0 valid; 3 pending (not anchored yet); 4
    chain unreachable; 5 incomplete (the cloud could not prove some leaves); 6 empty (nothing answers the
    query, or a page of a summary not given); 2 unusable input or no trust anchor; 10+ the failing step
    (STEP_EXIT, docs/proof-bundle.md). A period summary is verified with its pages (--pages DIR)."""
    try:
        trust = load_trust(trust_file, registry, chain_id)
    except (OSError, ValueError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(EXIT_USAGE) from err
    try:
        raw = bundle_path.read_bytes()
        document = None if bundle_wire.looks_like_cbor(raw) else strict_json.loads(raw)
    except OSError as err:
        typer.echo(f"error: cannot read {bundle_path}: {err}", err=True)
        raise typer.Exit(EXIT_USAGE) from err
    except strict_json.StrictJSONError as err:
        # not one meaning: duplicate keys, NaN, too deep; that is the bundle's own format failing
        report = Report("invalid", "bundle_format", str(err), [], [Step("bundle_format", False, str(err))])
        typer.echo(json.dumps(report.as_json(), indent=2) if as_json else _human(report))
        raise typer.Exit(report.exit_code) from err
    try:
        if pages_dir is not None and not pages_dir.is_dir():
            typer.echo(f"error: --pages {pages_dir} is not a directory", err=True)
            raise typer.Exit(EXIT_USAGE)
        pages = PageDirectory(pages_dir) if pages_dir is not None else None
        chain = Web3ChainReader.over_http(rpc, trust.registry, from_block=from_block)
        if document is None:  # a CBOR bundle (statements and summaries are JSON only)
            report = verify_bundle_cbor(raw, chain, trust)
        else:
            report = verify_document(document, chain, trust, pages)
    except ChainUnreachable as err:
        if as_json:
            typer.echo(json.dumps({"status": "unknown", "error": "chain_unreachable", "detail": str(err)}))
        else:
            typer.echo(f"error: chain at {rpc} unreachable: {err}", err=True)
        raise typer.Exit(EXIT_CHAIN_UNREACHABLE) from err
    except CatalogueError as err:
        # this verifier's own factor catalogue ($CARBONTRACE_FACTOR_CATALOGUE) is unusable: no verdict on the
        # document can be reached with it, so it is the verifier's input that is wrong
        typer.echo(f"error: the factor catalogue is unusable: {err}", err=True)
        raise typer.Exit(EXIT_USAGE) from err
    typer.echo(json.dumps(report.as_json(), indent=2) if as_json else _human(report))
    raise typer.Exit(report.exit_code)


verify_app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
verify_app.command(name="verify")(verify_command)


if __name__ == "__main__":  # pragma: no cover - `python -m carbontrace.verify_bundle`
    sys.exit(verify_app())
