"""Write docs/conformance/: one JSON file per case, valid and tampered documents with their expected verdict.

Run as ``python -m tests.trace.make_conformance [DIR]`` (not part of ``make test``; tests/trace/
test_conformance.py runs the files it writes). It starts the cloud on temp storage and the embedded EVM,
makes real bundles and statements through the API (the cloud test kit), applies the mutations of
tests/trace/test_trace_tamper.py and tests/trace/test_trace_statements.py, verifies each document against the
real chain through ``RecordingChain`` and stores what was read as the case's chain. A case whose verdict is
not the intended one stops the run. Files are written with sorted keys, one name per case; ids, keys and
signatures are fresh on each run, so a regenerated set differs in its bytes, not in its verdicts.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from carbontrace_protocol import cbor, p256, strict_json
from carbontrace_protocol.batch import parse_leaf
from carbontrace_protocol.ids import KEY_REVOKED
from carbontrace_protocol.proof_bundle import ProofBundle, Trust
from carbontrace_protocol.proof_verify import ChainKey, ChainReader, Report, verify_bundle_json
from carbontrace_protocol.reading import Reading, sign_reading
from carbontrace_protocol.recorded_chain import RecordedChain, RecordingChain
from carbontrace_protocol.statement import STATEMENT_FORMAT, verify_statement
from carbontrace_protocol.statement_summary import SUMMARY_FORMAT, verify_summary
from tests.cloud.cloud_testkit import app_client, make_settings
from tests.trace.test_trace_statements import _period, _prune, _resign
from tests.trace.test_trace_tamper import BUNDLE_CASES, flip_hex
from tests.trace.trace_kit import (
    anchor,
    get,
    ledger_of,
    reader_of,
    tenant_with_batches,
    trust_of,
    upload_batches,
    upload_retimed_batch,
)

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "docs" / "conformance"
EXAMPLE = DEFAULT_DIR.parent / "proof-bundle.example.json"
PLACEHOLDER = "@@raw@@"
# BUNDLE_CASES whose point is a JSON type a lenient loader would lose: stored as raw text
AS_TEXT = {"view integer written as a float", "view flag 0 written as false"}


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def verify_document(document: Any, chain: ChainReader, trust: Trust, pages: dict[str, Any] | None = None) -> Report:
    if isinstance(document, dict) and document.get("format") == SUMMARY_FORMAT:
        return verify_summary(document, pages or {}, chain, trust)
    if isinstance(document, dict) and document.get("format") == STATEMENT_FORMAT:
        return verify_statement(document, chain, trust)
    return verify_bundle_json(document, chain, trust)


def text_of(document: Any) -> str:
    return json.dumps(document, sort_keys=True, separators=(",", ":"))


def raw(document: Any, path: tuple[Any, ...], literal: str) -> str:
    """The document's compact JSON with the value at ``path`` written as ``literal`` (any JSON text)."""
    marked = copy.deepcopy(document)
    target = marked
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = PLACEHOLDER
    return text_of(marked).replace(json.dumps(PLACEHOLDER), literal, 1)


class Writer:
    def __init__(self, out: Path) -> None:
        self.out = out
        self.names: set[str] = set()

    def case(
        self,
        name: str,
        description: str,
        document: Any,
        chain: ChainReader | RecordedChain,
        trust: Trust,
        status: str,
        step: str | None = None,
        text: str | None = None,
        pages: dict[str, Any] | None = None,
    ) -> None:
        """Verify (recording the chain reads unless ``chain`` is already a recording), check the verdict is the
        intended one, replay it on the recording, and write the case."""
        assert name not in self.names, name
        self.names.add(name)
        recorder = None if isinstance(chain, RecordedChain) else RecordingChain(chain)
        reader: ChainReader = chain if recorder is None else recorder
        if text is not None:
            try:
                parsed = strict_json.loads(text)
            except strict_json.StrictJSONError:
                parsed, report = None, None
            else:
                report = verify_document(parsed, reader, trust)
        else:
            report = verify_document(document, reader, trust, pages)
        if report is None:
            got = ("invalid", "bundle_format", 10)
        else:
            got = (report.status, report.failed_step, report.exit_code)
        recorded = chain if isinstance(chain, RecordedChain) else recorder.recorded()  # type: ignore[union-attr]
        replay = RecordedChain.from_json(json.loads(json.dumps(recorded.to_json())))
        if report is not None:
            again = verify_document(parsed if text is not None else document, replay, trust, pages)
            assert (again.status, again.failed_step) == got[:2], (name, again.as_json())
        assert got[:2] == (status, step), (name, got, None if report is None else report.as_json())
        case: dict[str, Any] = {
            "name": name,
            "description": description,
            "trust": trust.to_json(),
            "chain": replay.to_json(),
            "expected": {"status": got[0], "failed_step": got[1], "exit_code": got[2]},
        }
        if text is not None:
            case["document_text"] = text
        else:
            case["document"] = document
        if pages is not None:  # a period summary's pages, by CID
            case["pages"] = pages
        (self.out / f"{name}.json").write_text(json.dumps(case, sort_keys=True, indent=1) + "\n")


def _bundle(client: Any, key: str, **params: Any) -> dict[str, Any]:
    r = get(client, "/api/v1/trace/bundle", key, **params)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def bundle_cases(w: Writer, tmp: Path) -> None:
    with app_client(make_settings(tmp)) as client:
        traced = tenant_with_batches(client, "Conformance", batches=2, devices=1)
        anchor(client)
        upload_batches(client, traced, 1, per_device=6)
        anchor(client)
        upload_batches(client, traced, 1)
        anchor(client)
        key = traced.tenant.enterprise_key
        chain, trust = reader_of(client), trust_of(client)
        reading = traced.readings[4]
        valid = _bundle(
            client, key, device_id=reading.device_id, start=reading.timestamp, end=reading.timestamp + 1, types="co2"
        )
        assert len(valid["items"]) == 1 and valid["batches"][0]["checkpoint_seq"] == 1, valid
        w.case(
            "valid-reading",
            "One reading (co2) in batch 2 of a gateway, under checkpoint 1 of 3: both consistency proofs non-empty.",
            valid,
            chain,
            trust,
            "valid",
        )
        for name, step, mutate in BUNDLE_CASES:
            tampered = copy.deepcopy(valid)
            mutate(tampered)
            text = None
            if name in AS_TEXT:
                text = text_of(tampered)
            w.case(
                "tamper-" + slug(name),
                f"valid-reading with this change: {name}. Fails at {step}.",
                None if text else tampered,
                chain,
                trust,
                "invalid",
                step,
                text,
            )
        # the key validity rule, on the recorded chain: revocation takes effect from a checkpoint count on
        recorded = RecordingChain(chain)
        verify_document(valid, recorded, trust)
        base = recorded.recorded()
        device_fp = bytes.fromhex(valid["items"][0]["device_key"])
        seq = valid["batches"][0]["checkpoint_seq"]
        for name, change, status, step, what in (
            (
                "key-revoked-after-anchor",
                {"state": KEY_REVOKED, "revoked_at": seq + 1},
                "valid",
                None,
                f"the device key revoked at checkpoint count {seq + 1}, after the batch was anchored under {seq}",
            ),
            (
                "key-revoked-at-anchor",
                {"state": KEY_REVOKED, "revoked_at": seq},
                "invalid",
                "device_key",
                f"the device key revoked at checkpoint count {seq}: the batch anchored under {seq} is not covered",
            ),
            (
                "key-registered-after-anchor",
                {"active_from": seq + 1},
                "invalid",
                "device_key",
                f"the device key active from checkpoint count {seq + 1}, after the batch was anchored under {seq}",
            ),
        ):
            edited = RecordedChain.from_json(base.to_json())
            fields = vars(edited.keys[device_fp]) | change
            edited.keys[device_fp] = ChainKey(**fields)
            w.case(name, f"valid-reading on a chain where {what}.", valid, edited, trust, status, step)
        for name, change, what in (
            ("chain-node-is-another-chain", {"chain_id": base.chain_id() + 1}, "the node reports another chain id"),
            ("chain-registry-has-no-code", {"has_code": False}, "the pinned registry address holds no contract"),
        ):
            edited = RecordedChain.from_json(base.to_json() | change)
            w.case(name, f"valid-reading, but {what}.", valid, edited, trust, "invalid", "chain_identity")
        # strict JSON and harmless re-encodings, as raw text
        text_cases: list[tuple[str, str, str, str | None]] = [
            (
                "json-duplicate-key",
                "the query's device_id written twice, the real one last",
                text_of(valid).replace('"device_id":', '"device_id":"dev-other","device_id":', 1),
                "bundle_format",
            ),
            ("json-float-for-int-version", "version written 2.0", raw(valid, ("version",), "2.0"), "bundle_format"),
            ("json-exponent-for-int", "version written 2e0", raw(valid, ("version",), "2e0"), "bundle_format"),
            (
                "json-float-for-int-log-index",
                "a batch's log_index written with .0",
                raw(valid, ("batches", 0, "log_index"), f"{valid['batches'][0]['log_index']}.0"),
                "bundle_format",
            ),
            (
                "json-true-for-1",
                "checkpoint_seq 1 written true",
                raw(valid, ("batches", 0, "checkpoint_seq"), "true"),
                "bundle_format",
            ),
            (
                "json-nan",
                "a view value written NaN",
                raw(valid, ("items", 0, "view", "co2_ppm"), "NaN"),
                "bundle_format",
            ),
            (
                "json-uppercase-hex",
                "the leaf in uppercase hex",
                raw(valid, ("items", 0, "leaf"), json.dumps(valid["items"][0]["leaf"].upper())),
                "bundle_format",
            ),
            ("json-not-json", "the document cut short", text_of(valid)[:-1], "bundle_format"),
            (
                "json-lone-surrogate",
                "the query's device_id starting with a lone surrogate escape (\\ud800: no character, no UTF-8)",
                text_of(valid).replace('"device_id":"', '"device_id":"\\ud800', 1),
                "bundle_format",
            ),
            (
                "reencoded-key-order",
                "every object's keys in reverse order",
                json.dumps(_reversed(valid), separators=(",", ":")),
                None,
            ),
            (
                "reencoded-whitespace",
                "pretty-printed with 4-space indent and CRLF line ends",
                json.dumps(valid, indent=4).replace("\n", "\r\n") + "\r\n",
                None,
            ),
            (
                "reencoded-string-escapes",
                "the item's kind written with a \\u escape",
                text_of(valid).replace('"kind":"reading"', '"kind":"\\u0072eading"', 1),
                None,
            ),
        ]
        for name, what, text, step in text_cases:
            status = "valid" if step is None else "invalid"
            verdict = "harmless: the same document" if step is None else f"fails at {step}"
            w.case(name, f"valid-reading as raw text, {what}: {verdict}.", None, chain, trust, status, step, text)
        # aggregates
        aggregates = _bundle(client, key, device_id=reading.device_id, types="emissions", limit=1)
        assert aggregates["items"][0]["kind"] == "aggregate", aggregates
        w.case("valid-aggregate", "One aggregate (emissions view) of a device.", aggregates, chain, trust, "valid")
        for name, field, value, step in (
            ("aggregate-device-id", "device_id", "dev-other", "decoded_view"),
            ("aggregate-empty-view", "view", {}, "decoded_view"),
        ):
            tampered = copy.deepcopy(aggregates)
            tampered["items"][0][field] = value
            w.case(
                "tamper-" + name,
                f"valid-aggregate with the item's {field} changed.",
                tampered,
                chain,
                trust,
                "invalid",
                step,
            )
        disclosure_cases(w, client, key, reading.device_id, aggregates, chain, trust)
        other = copy.deepcopy(aggregates)
        other["query"]["device_id"] = "dev-other"
        w.case(
            "tamper-aggregate-answers-another-device",
            "valid-aggregate presented as the answer for another device.",
            other,
            chain,
            trust,
            "invalid",
            "query_match",
        )
        # incomplete and empty
        incomplete = copy.deepcopy(valid)
        item = incomplete["items"][0]
        incomplete["retrieval_failures"] = [
            {k: item[k] for k in ("kind", "batch_id", "device_id")} | {"leaf_index": 0, "failed_step": "content_store"}
        ]
        incomplete["query"]["limit"] = max(incomplete["query"]["limit"], 2)
        w.case(
            "incomplete",
            "valid-reading plus one leaf the cloud lists as not provable: incomplete.",
            incomplete,
            chain,
            trust,
            "incomplete",
        )
        empty = _bundle(client, key, device_id=reading.device_id, start=0, end=1, types="co2")
        assert not empty["items"], empty
        w.case("empty", "A query nothing answers: no items, no batches, no keys.", empty, chain, trust, "empty")
        w.case(
            "json-false-for-0",
            "empty with query.start 0 written false",
            None,
            chain,
            trust,
            "invalid",
            "bundle_format",
            raw(empty, ("query", "start"), "false"),
        )
        # pending: a batch not anchored yet
        upload_batches(client, traced, 1)
        last = traced.readings[-1]
        pending = _bundle(
            client, key, device_id=last.device_id, start=last.timestamp, end=last.timestamp + 1, types="co2"
        )
        assert pending["batches"][0]["checkpoint_seq"] is None, pending
        w.case("pending", "One reading of a batch the cloud has not anchored yet.", pending, chain, trust, "pending")


def retime_cases(w: Writer, tmp: Path) -> None:
    """A bundle of a batch holding a re-timed reading (item 0, unsynced, carrying its signed reference) and its
    reference (item 1, synced), and one change per way the evidence can lie."""
    with app_client(make_settings(tmp)) as client:
        traced = tenant_with_batches(client, "Retime", batches=1, devices=1)
        retimed = upload_retimed_batch(client, traced)
        anchor(client)
        key, at = traced.tenant.enterprise_key, retimed.retimed_at
        chain, trust = reader_of(client), trust_of(client)
        valid = _bundle(client, key, device_id=retimed.unsynced.device_id, start=at, end=at + 60, types="co2")
        assert ["retime_reference" in i for i in valid["items"]] == [True, False], valid
        w.case(
            "valid-retimed-reading",
            "A reading taken before its device's time sync (no time of its own: boot + up) and the boot's first "
            "synced reading, its reference: the item carries the signed reference, the verifier re-derives the "
            f"time ({at}) for the view and the period.",
            valid,
            chain,
            trust,
            "valid",
        )
        device = traced.tenant.gateway.devices[0]
        ref = retimed.reference
        other_boot = Reading(ref.device_id, ref.seq, ref.timestamp, ref.firmware, flags=ref.flags,
                             co2_ppm=ref.co2_ppm, boot=(ref.boot or 0) + 1, up=ref.up, energy_wh=ref.energy_wh)
        own_reading = parse_leaf(bytes.fromhex(valid["items"][0]["leaf"]))[1].hex()  # the leaf's COSE_Sign1

        def set_reference(index: int, value: Any) -> Callable[[dict[str, Any]], None]:
            return lambda b: b["items"][index].__setitem__("retime_reference", value)

        cases: list[tuple[str, str, Callable[[dict[str, Any]], None], str]] = [
            (
                "reference-of-another-boot",
                "the reference replaced by a reading the device did sign, of another boot (its clock says nothing "
                "about this boot's)",
                set_reference(0, sign_reading(other_boot, device.private).hex()),
                "reading_time",
            ),
            (
                "reference-edited",
                "one byte of the reference's signature changed",
                set_reference(0, flip_hex(valid["items"][0]["retime_reference"])),
                "reading_time",
            ),
            (
                "reference-missing",
                "the unsynced reading's retime_reference removed",
                lambda b: b["items"][0].pop("retime_reference"),
                "reading_time",
            ),
            (
                "reference-on-a-synced-reading",
                "the reference also given to the synced reading, which has a time of its own",
                set_reference(1, valid["items"][0]["retime_reference"]),
                "reading_time",
            ),
            (
                "reference-is-the-reading-itself",
                "the unsynced reading given as its own reference (signed by the device, but with no wall time)",
                set_reference(0, own_reading),
                "reading_time",
            ),
            (
                "reference-null",
                "retime_reference written null (a field absent, never null, when not carried)",
                set_reference(1, None),
                "bundle_format",
            ),
            (
                "view-claims-another-time",
                "the unsynced reading's view shows a time one second later than its reference gives",
                lambda b: b["items"][0]["view"].__setitem__("timestamp", at + 1),
                "decoded_view",
            ),
            (
                "query-after-the-retimed-time",
                "the query's period starts one second after the re-derived time of the unsynced reading",
                lambda b: b["query"].__setitem__("start", at + 1),
                "query_match",
            ),
        ]
        for name, what, edit, step in cases:
            tampered = copy.deepcopy(valid)
            edit(tampered)
            w.case(
                "tamper-retime-" + name,
                f"valid-retimed-reading with {what}. Fails at {step}.",
                tampered,
                chain,
                trust,
                "invalid",
                step,
            )


def disclosure_cases(
    w: Writer, client: Any, key: str, device_id: str, public: dict[str, Any], chain: ChainReader, trust: Trust
) -> None:
    """Selective disclosure: the emissions bundle opens exactly the public fields of a committed aggregate."""
    whole = _bundle(client, key, device_id=device_id, types=["aggregates", "co2", "temperature", "humidity"], limit=3)
    (same,) = [item for item in whole["items"] if item["leaf"] == public["items"][0]["leaf"]]
    w.case(
        "valid-aggregate-all-fields",
        "The device's first leaves asked with co2, temperature and humidity beside aggregates: readings, and the"
        " aggregate of valid-aggregate with every field opened.",
        whole,
        chain,
        trust,
        "valid",
    )
    all_openings = same["openings"]
    assert "co2" in all_openings and "co2" not in public["items"][0]["openings"], whole

    def opening_edit(name: str, what: str, edit: Callable[[dict[str, Any]], None], step: str) -> None:
        tampered = copy.deepcopy(public)
        edit(tampered["items"][0])
        w.case("tamper-opening-" + name, f"valid-aggregate with {what}.", tampered, chain, trust, "invalid", step)

    def reopened(item: dict[str, Any], field: str, change: Callable[[list[Any]], list[Any]]) -> None:
        salt, value = cbor.decode(bytes.fromhex(item["openings"][field]))
        item["openings"][field] = cbor.encode(change([salt, value])).hex()

    def bump_delta(pair: list[Any]) -> list[Any]:
        pair[1]["delta_wh"] += 1
        return pair

    def flip_salt(pair: list[Any]) -> list[Any]:
        return [bytes([pair[0][0] ^ 1]) + pair[0][1:], pair[1]]

    def long_form(item: dict[str, Any]) -> None:  # received as a 2-byte integer: same value, not canonical
        salt, value = cbor.decode(bytes.fromhex(item["openings"]["received"]))
        assert isinstance(value, int) and 0 <= value < 24, value
        item["openings"]["received"] = (bytes([0x82, 0x50]) + salt + bytes([0x19, 0, value])).hex()

    opening_edit("missing", "the emissions opening removed", lambda i: i["openings"].pop("emissions_g"),
                 "field_openings")
    opening_edit("extra-co2", "the CO2 opening of the same leaf added (more than the types disclose)",
                 lambda i: i["openings"].update(co2=all_openings["co2"]), "field_openings")
    opening_edit("value", "energy delta_wh opened as one more Wh (view kept)",
                 lambda i: reopened(i, "energy", bump_delta), "field_openings")
    opening_edit("salt", "a salt byte of the received opening changed", lambda i: reopened(i, "received", flip_salt),
                 "field_openings")
    opening_edit("non-canonical", "the received opening re-encoded with a longer integer", long_form,
                 "field_openings")
    opening_edit("view-shows-closed-field", "the view showing CO2 that no opening discloses",
                 lambda i: i["view"].update(co2=same["view"]["co2"]), "decoded_view")


def _reversed(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _reversed(value[k]) for k in sorted(value, reverse=True)}
    if isinstance(value, list):
        return [_reversed(v) for v in value]
    return value


def statement_cases(w: Writer, tmp: Path) -> None:
    with app_client(make_settings(tmp)) as client:
        ours = tenant_with_batches(client, "Statement Ours", batches=3, devices=1)
        theirs = tenant_with_batches(client, "Statement Theirs", batches=1, devices=1)
        anchor(client)
        chain, trust = reader_of(client), trust_of(client)
        cloud_key = ledger_of(client).signing_key
        start, end = _period(ours)

        def statement(traced: Any = ours, period: tuple[int, int] = (start, end)) -> dict[str, Any]:
            r = get(
                client,
                f"/api/v1/enterprises/{traced.tenant.enterprise_id}/statement",
                traced.tenant.enterprise_key,
                start=period[0],
                end=period[1],
            )
            assert r.status_code == 200, r.text
            return r.json()  # type: ignore[no-any-return]

        w.case(
            "statement-valid",
            "A period statement of one gateway (3 batches) and one device.",
            statement(),
            chain,
            trust,
            "valid",
        )

        def case(name: str, what: str, edit: Callable[[dict[str, Any]], dict[str, Any]], step: str) -> None:
            w.case(
                "statement-" + name,
                f"statement-valid, {what}. Fails at {step}.",
                edit(statement()),
                chain,
                trust,
                "invalid",
                step,
            )

        def edited_figure(d: dict[str, Any]) -> dict[str, Any]:
            d["statement"]["figures"]["energy_wh"] += 1
            return d

        def self_made_key(d: dict[str, Any]) -> dict[str, Any]:
            rogue = p256.private_key_from_bytes(bytes(range(1, 33)))
            d["statement"]["figures"]["energy_wh"] += 1
            d["bundle"]["keys"].append(
                {"kind": "cloud", "signer": "carbontrace-cloud", "public_key": bytes(p256.public_key(rogue)).hex()}
            )
            return _resign(d, rogue, recompute=False)

        def drop(index: int) -> Callable[[dict[str, Any]], dict[str, Any]]:
            def edit(d: dict[str, Any]) -> dict[str, Any]:
                dropped, bundle = ours.batches[index].id, d["bundle"]
                bundle["batches"] = [b for b in bundle["batches"] if b["batch_id"] != dropped]
                bundle["items"] = [i for i in bundle["items"] if i["batch_id"] != dropped]
                _prune(bundle)
                return _resign(d, cloud_key)

            return edit

        def leave_out(section: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
            def edit(d: dict[str, Any]) -> dict[str, Any]:
                d["statement"]["completeness"][section] = d["statement"]["completeness"][section][1:]
                return _resign(d, cloud_key, recompute=False)

            return edit

        def other_tenant(d: dict[str, Any]) -> dict[str, Any]:
            other = statement(theirs, _period(theirs))["bundle"]
            aggregate = next(i for i in other["items"] if i["kind"] == "aggregate")
            d["bundle"]["items"].append(aggregate)
            d["bundle"]["batches"].append(next(b for b in other["batches"] if b["batch_id"] == aggregate["batch_id"]))
            d["bundle"]["keys"] += [k for k in other["keys"] if k["kind"] == "gateway"]
            return _resign(d, cloud_key)

        def shift_body(d: dict[str, Any]) -> dict[str, Any]:
            d["statement"]["period"]["start"] = start + 60
            return _resign(d, cloud_key, recompute=False)

        def shift_both(d: dict[str, Any]) -> dict[str, Any]:
            d["statement"]["period"]["start"] = start + 60
            d["bundle"]["query"]["start"] = start + 60
            return _resign(d, cloud_key)

        def extra_field(d: dict[str, Any]) -> dict[str, Any]:
            d["signature"]["public_key"] = "00"
            return d

        def bundle_edit(d: dict[str, Any]) -> dict[str, Any]:
            d["bundle"]["items"][0]["view"]["energy_wh"] = -1
            return _resign(d, cloud_key, recompute=False)

        case("edited-figure", "one figure changed, signature kept", edited_figure, "statement_signature")
        case(
            "self-made-key",
            "re-signed with a self-made cloud key listed in the bundle",
            self_made_key,
            "statement_signature",
        )
        case(
            "dropped-batch", "the middle batch dropped, re-signed with the cloud key", drop(1), "statement_completeness"
        )
        case(
            "dropped-first-batch",
            "the first batch dropped, re-signed with the cloud key",
            drop(0),
            "statement_completeness",
        )
        case(
            "missing-gateway",
            "the gateway left out of completeness, re-signed",
            leave_out("gateways"),
            "statement_completeness",
        )
        case(
            "missing-device",
            "the device left out of completeness, re-signed",
            leave_out("devices"),
            "statement_completeness",
        )
        case("other-tenants-leaf", "another enterprise's aggregate added, re-signed", other_tenant, "query_match")
        case("shifted-period", "the body's period start moved by 60 s, re-signed", shift_body, "query_match")
        case(
            "shifted-period-and-query",
            "body and bundle query start moved by 60 s, figures recomputed, re-signed",
            shift_both,
            "statement_figures",
        )
        case("unknown-signature-field", "a public_key field added to the signature", extra_field, "bundle_format")
        floated = statement()
        floated["statement"]["period"]["start"] = float(start)
        w.case(
            "statement-period-float",
            "statement-valid as raw text, the period start written with .0 and the "
            "body re-signed over it (the same number, another JSON type). Fails at bundle_format.",
            None,
            chain,
            trust,
            "invalid",
            "bundle_format",
            text_of(_resign(floated, cloud_key, recompute=False)),
        )
        upper = statement()
        upper["signature"]["value"] = upper["signature"]["value"].upper()
        w.case(
            "statement-uppercase-signature",
            "statement-valid with the signature value in uppercase hex (the signature does not cover itself). "
            "Fails at bundle_format.",
            upper,
            chain,
            trust,
            "invalid",
            "bundle_format",
        )
        case(
            "bundle-view-edited", "an aggregate's view edited inside the bundle, re-signed", bundle_edit, "decoded_view"
        )


def summary_cases(w: Writer, tmp: Path) -> None:
    """A period summary over two one-hour pages, and one forgery per summary step (signed with the real cloud
    key where a signature would otherwise give it away)."""
    from tests.trace import test_trace_statement_summary as paged

    hours = 2
    with app_client(make_settings(tmp)) as client:
        ours = paged._fill(client, "Summary Ours", hours=hours)
        theirs = paged._fill(client, "Summary Theirs", hours=hours)
        anchor(client)
        chain, trust = reader_of(client), trust_of(client)

        def fresh(traced: Any = ours) -> tuple[dict[str, Any], dict[str, Any]]:
            return paged._summary(client, traced, hours=hours)

        summary, pages = fresh()
        w.case(
            "summary-valid",
            "A period summary of two one-hour statement pages.",
            summary,
            chain,
            trust,
            "valid",
            pages=pages,
        )
        summary, pages = fresh()
        del pages[summary["summary"]["pages"][1]["cid"]]
        w.case(
            "summary-page-missing",
            "summary-valid without its second page: incomplete, never valid.",
            summary,
            chain,
            trust,
            "incomplete",
            pages=pages,
        )
        summary, pages = fresh()
        summary["summary"]["figures"]["energy_wh"] += 1
        w.case(
            "summary-edited-figure",
            "summary-valid with a total edited, not re-signed. Fails at summary_signature.",
            summary,
            chain,
            trust,
            "invalid",
            "summary_signature",
            pages=pages,
        )
        summary, pages = fresh()
        summary["summary"]["figures"]["emissions_g_e4"] -= 10_000
        w.case(
            "summary-edited-figure-resigned",
            "summary-valid with a total lowered and re-signed with the cloud key. Fails at summary_figures.",
            paged._resign_summary(client, summary),
            chain,
            trust,
            "invalid",
            "summary_figures",
            pages=pages,
        )
        summary, pages = fresh()
        _, their_pages = fresh(theirs)
        their = next(p for p in their_pages.values() if p["statement"]["period"]["start"] == paged.T0 + paged.HOUR)
        paged._replace_page(summary, pages, 1, copy.deepcopy(their), fold=False)
        w.case(
            "summary-other-tenants-page",
            "summary-valid with its second page replaced by another enterprise's, "
            "listed properly and re-signed. Fails at summary_pages.",
            paged._resign_summary(client, summary),
            chain,
            trust,
            "invalid",
            "summary_pages",
            pages=pages,
        )
        summary, pages = fresh()
        page = copy.deepcopy(pages[summary["summary"]["pages"][0]["cid"]])
        bundle = page["bundle"]
        # the batches reaching the page's end: the one whose window ends there and the one past it, whose
        # energy was partly used in the page's hour (attribution by measurement time)
        end = page["statement"]["period"]["end"]
        reaching = {b["batch_id"] for b in bundle["batches"] if paged._window_of(b)[1] >= end}
        bundle["batches"] = [b for b in bundle["batches"] if b["batch_id"] not in reaching]
        bundle["items"] = [i for i in bundle["items"] if i["batch_id"] not in reaching]
        paged._prune(bundle)
        body = page["statement"]
        listed = body["completeness"]
        body["completeness"] = paged.completeness_of(
            ProofBundle.from_json(bundle),
            body["period"]["start"],
            body["period"]["end"],
            [g["gateway_id"] for g in listed["gateways"]],
            [d["device_id"] for d in listed["devices"]],
        )
        paged._resign(page, ledger_of(client).signing_key)
        paged._replace_page(summary, pages, 0, page)
        w.case(
            "summary-chain-broken-between-pages",
            "summary-valid with the first page's batches that reach its end dropped (that "
            "page alone is a valid, open statement), everything re-signed. Fails at summary_completeness.",
            paged._resign_summary(client, summary),
            chain,
            trust,
            "invalid",
            "summary_completeness",
            pages=pages,
        )


def market_cases(w: Writer, tmp: Path) -> None:
    """Statements with market-based Scope 2 figures (carbontrace_protocol/market_based.py): a site in Hebei with
    a GEC over half its measured energy and a PPA; the section edited by an insider with the cloud key."""
    import hashlib

    from tests.cloud.cloud_testkit import auth, register_tenant
    from tests.trace.trace_kit import Traced

    hebei = {"country": "CN", "province": "CN-HE", "grid_region": "CN-GRID-NORTH"}
    with app_client(make_settings(tmp)) as client:
        ours = Traced(register_tenant(client, "Market Ours", devices=1, location=hebei))
        upload_batches(client, ours, 3)
        anchor(client)
        chain, trust = reader_of(client), trust_of(client)
        cloud_key = ledger_of(client).signing_key
        start, end = _period(ours)
        tenant = ours.tenant

        def statement() -> dict[str, Any]:
            r = get(client, f"/api/v1/enterprises/{tenant.enterprise_id}/statement", tenant.enterprise_key,
                    start=start, end=end)
            assert r.status_code == 200, r.text
            return r.json()  # type: ignore[no-any-return]

        measured = statement()["statement"]["figures"]["attribution"]["energy_wh"]["measured"]
        for kind, number, issuer, volume, rate in (
            ("gec", "GEC-CONFORMANCE-1", "China Green Certificate Issuance and Trading Platform", measured // 2, 0),
            ("ppa", "PPA-CONFORMANCE-1", "Hebei Wind Co", measured, 120),
        ):
            record = {"kind": kind, "instrument_id": number, "issuer": issuer, "volume_wh": volume,
                      "delivery": {"start": start, "end": end}, "rate_kg_per_kwh_e4": rate,
                      "evidence_sha256": hashlib.sha256(number.encode()).hexdigest()}
            r = client.post(f"/api/v1/sites/{tenant.gateway.site_id}/instruments", json=record,
                            headers=auth(tenant.enterprise_key))
            assert r.status_code == 201, r.text
        w.case("market-valid", "A statement whose market_based section uses a GEC and a PPA for its one site.",
               statement(), chain, trust, "valid")

        def case(name: str, what: str, edit: Callable[[dict[str, Any]], None]) -> None:
            document = statement()
            edit(document["statement"]["market_based"])
            w.case("market-" + name, f"market-valid, {what}, re-signed with the cloud key. Fails at "
                   "statement_market_based.", _resign(document, cloud_key, recompute=False), chain, trust,
                   "invalid", "statement_market_based")

        def figure(market: dict[str, Any]) -> None:
            market["emissions"]["g_e4"] -= 1

        def volume(market: dict[str, Any]) -> None:
            used = market["sites"][0]["instruments"][0]
            used["record"]["volume_wh"] *= 4
            used["record_sha256"] = hashlib.sha256(strict_json.canonical(used["record"])).hexdigest()

        def rate(market: dict[str, Any]) -> None:
            market["sites"][0]["instruments"][1]["record"]["rate_kg_per_kwh_e4"] = 0

        def location(market: dict[str, Any]) -> None:
            market["sites"][0]["location"] = {"country": "CN", "province": "CN-QH", "grid_region": None}

        case("edited-figure", "the market-based emissions lowered by 1e-4 g", figure)
        case("edited-instrument-volume", "the GEC's volume quadrupled, its record_sha256 updated", volume)
        case("edited-instrument-rate", "the PPA's rate set to 0, its record_sha256 left", rate)
        case("swapped-location", "the site's location moved to Qinghai (lower grid factor)", location)

        def older_residual(market: dict[str, Any], version: str | None = None) -> None:
            from carbontrace_protocol.emission_factors import get_factor
            from carbontrace_protocol.market_based import factor_json

            factor = get_factor("CN-national-2022-excl-market-nonfossil")  # 0.5856, below 2023's 0.6096
            site = market["sites"][0]
            site["residual_factor"] = factor_json(factor, None)
            grams = sum(u["emissions"]["g_e4"] for u in site["instruments"])
            grams += site["energy_wh"]["residual"] * factor.kg_per_kwh_e4
            site["emissions"] = market["emissions"] = {**site["emissions"], "g_e4": grams,
                                                       "t_co2": f"{grams // 10**10}.{grams % 10**10:010d}"}
            if version is not None:
                market["catalogue_version"] = version

        case("older-residual", "the residual mix replaced by 2022's (lower), figures made consistent", older_residual)
        case("unknown-catalogue-version", "the residual mix replaced by 2022's (lower), figures made consistent, "
             "naming a catalogue version the verifier's catalogue does not list (refused, not checked more "
             "loosely)", lambda market: older_residual(market, "2025-01-01.1"))


# cases in the same directory that another generator writes: a full run here must not delete them
OTHER_GENERATORS = {"registry-*.json": "tests/trace/make_registry_cases.py"}


def _own_cases(out: Path) -> list[Path]:
    """Every case file of ``out`` this generator writes (a full run replaces them all, so a case it no longer
    makes does not linger), none of another generator's."""
    others = {p for pattern in OTHER_GENERATORS for p in out.glob(pattern)}
    return [p for p in out.glob("*.json") if p not in others]


def main(argv: list[str]) -> int:
    # rewrite one group of cases only (--summaries, --retime, --market), keeping every other file
    only = {"--summaries": "summary-*.json", "--retime": "*retime*.json", "--market": "market-*.json"}
    chosen = [a for a in argv if a in only]
    argv = [a for a in argv if a not in only]
    out = Path(argv[0]) if argv else DEFAULT_DIR
    out.mkdir(parents=True, exist_ok=True)
    for old in [p for a in chosen for p in out.glob(only[a])] if chosen else _own_cases(out):
        old.unlink()
    tmp = Path(tempfile.mkdtemp(prefix="ct-conformance-"))
    try:
        w = Writer(out)
        if not chosen:
            bundle_cases(w, tmp / "bundles")
            statement_cases(w, tmp / "statements")
        if not chosen or "--summaries" in chosen:
            summary_cases(w, tmp / "summaries")
        if not chosen or "--retime" in chosen:
            retime_cases(w, tmp / "retime")
        if not chosen or "--market" in chosen:
            market_cases(w, tmp / "market")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if (
        out == DEFAULT_DIR and not chosen
    ):  # the worked example of docs/proof-bundle.md is the valid reading case's bundle
        valid = json.loads((out / "valid-reading.json").read_text())["document"]
        EXAMPLE.write_text(json.dumps(ProofBundle.from_json(valid).to_json(), indent=2) + "\n")
    total = sum(p.stat().st_size for p in out.glob("*.json"))
    sys.stdout.write(f"{len(w.names)} cases, {total} bytes in {out}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
