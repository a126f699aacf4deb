"""The conformance set (docs/conformance/): every case verifies to its expected verdict on its recorded chain.

Written by ``python -m tests.trace.make_conformance``; run here exactly as docs/conformance/README.md tells
another verifier to run them: parse the document strictly (raw text: a strict-JSON error is bundle_format),
verify it as a statement or a bundle against the case's trust anchor and recorded chain, compare status,
failed step and exit code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from carbontrace_protocol import strict_json
from carbontrace_protocol.proof_bundle import Trust
from carbontrace_protocol.proof_verify import STEP_EXIT, STEPS, VERDICT_EXIT, verify_bundle_json
from carbontrace_protocol.recorded_chain import RecordedChain
from carbontrace_protocol.statement import STATEMENT_FORMAT, verify_statement
from carbontrace_protocol.statement_summary import SUMMARY_FORMAT, verify_summary
from tests.conftest import REPO_ROOT

CONFORMANCE = Path(REPO_ROOT) / "docs" / "conformance"
CASES = sorted(CONFORMANCE.glob("*.json"))
CASE_FIELDS = {"name", "description", "trust", "chain", "expected"}


def load(path: Path) -> dict[str, Any]:
    case: dict[str, Any] = strict_json.loads(path.read_bytes())
    documents = ({"document"}, {"document_text"}, {"document", "pages"})  # pages: a period summary's, by CID
    assert any(set(case) == CASE_FIELDS | d for d in documents), sorted(case)
    assert case["name"] == path.stem
    return case


def run(case: dict[str, Any]) -> tuple[str, str | None, int]:
    trust = Trust.from_json(case["trust"])
    chain = RecordedChain.from_json(case["chain"])
    if "document_text" in case:
        try:
            document = strict_json.loads(case["document_text"])
        except strict_json.StrictJSONError:
            return "invalid", "bundle_format", STEP_EXIT["bundle_format"]
    else:
        document = case["document"]
    if isinstance(document, dict) and document.get("format") == SUMMARY_FORMAT:
        report = verify_summary(document, case.get("pages", {}), chain, trust)
    elif isinstance(document, dict) and document.get("format") == STATEMENT_FORMAT:
        report = verify_statement(document, chain, trust)
    else:
        report = verify_bundle_json(document, chain, trust)
    return report.status, report.failed_step, report.exit_code


def test_the_set_is_there_and_small() -> None:
    assert len(CASES) >= 60
    # version 3 items carry the openings of the fields they disclose (~60 bytes of hex each): summaries grew;
    # under attribution by measurement time each summary page also holds the batch past its end (part of its
    # energy was used in the page's hour) and format-3 leaves carry their energy runs: ~+35% on summaries;
    # the seven market-* statements (market-based Scope 2) add ~0.15 MB
    assert sum(p.stat().st_size for p in CASES) < 1_400_000


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_conformance_case(path: Path) -> None:
    case = load(path)
    expected = case["expected"]
    assert set(expected) == {"status", "failed_step", "exit_code"}
    assert run(case) == (expected["status"], expected["failed_step"], expected["exit_code"]), case["description"]


def test_every_step_and_every_verdict_has_a_case() -> None:
    expected = [load(p)["expected"] for p in CASES]
    failing = {e["failed_step"] for e in expected if e["status"] == "invalid"}
    assert set(STEPS) - failing == set(), "steps no case fails at"
    assert set(VERDICT_EXIT) - {e["status"] for e in expected} == set(), "verdicts no case has"
    assert all((e["status"] == "invalid") == (e["failed_step"] is not None) for e in expected)


def test_harmless_reencodings_are_valid() -> None:
    reencoded = [load(p) for p in CASES if p.stem.startswith("reencoded-")]
    assert len(reencoded) >= 3
    assert all(c["expected"]["status"] == "valid" and "document_text" in c for c in reencoded)


def test_a_full_regeneration_leaves_another_generators_cases(tmp_path: Path) -> None:
    """make_conformance replaces its own cases on a full run, never the registry-* cases make_registry_cases
    writes into the same directory (a full run used to delete every *.json there)."""
    from tests.trace.make_conformance import OTHER_GENERATORS, _own_cases

    for name in ("registry-valid-across-migration.json", "valid-reading.json", "market-valid.json"):
        (tmp_path / name).write_text("{}")
    assert sorted(p.name for p in _own_cases(tmp_path)) == ["market-valid.json", "valid-reading.json"]
    real = Path(REPO_ROOT) / "docs" / "conformance"
    others = [p for pattern in OTHER_GENERATORS for p in real.glob(pattern)]
    assert others and not set(others) & set(_own_cases(real))
