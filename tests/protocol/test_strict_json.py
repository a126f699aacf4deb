"""Strict JSON for evidence: one meaning per document (duplicate keys, NaN, depth), exact types in views."""

from __future__ import annotations

import json

import pytest

from carbontrace_protocol import strict_json, views


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ('{"a": 1, "a": 2}', "duplicate key"),
        ('{"x": {"a": 1, "a": 1}}', "duplicate key"),
        ('{"a": NaN}', "NaN"),
        ('{"a": Infinity}', "Infinity"),
        ("[" * 100 + "]" * 100, "nesting"),
        ('{"a": 1', "not JSON"),
        (b"\xff\xfe", "not UTF-8"),
    ],
)
def test_ambiguous_or_hostile_documents_are_refused(text: str | bytes, why: str) -> None:
    with pytest.raises(strict_json.StrictJSONError, match=why):
        strict_json.loads(text)


def test_deep_nesting_is_refused_before_the_parser_runs() -> None:
    """100,000 nested [ crash the C parser once web3 has raised the recursion limit; the scan stops it first."""
    with pytest.raises(strict_json.StrictJSONError, match="nesting"):
        strict_json.loads("[" * 100_000)


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    value = {"s": "[[[[" * 50 + '\\"{{{'}
    assert strict_json.loads(json.dumps(value)) == value


def test_size_limit() -> None:
    with pytest.raises(strict_json.StrictJSONError, match="exceeds"):
        strict_json.loads("[" + "1," * 100 + "1]", max_bytes=50)


def test_a_plain_document_parses_as_json_does() -> None:
    text = '{"b": [1, 2.5, true, null, "x"], "a": {"c": 0}}'
    assert strict_json.loads(text) == json.loads(text)


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        (674, 674, True),
        (674, 674.0, False),
        (0, False, False),
        (1, True, False),
        ({"a": [1, {"b": 2}]}, {"a": [1, {"b": 2}]}, True),
        ({"a": [1, {"b": 2}]}, {"a": [1, {"b": 2.0}]}, False),
        ({"a": 1}, {"a": 1, "b": 2}, False),
        ([1, 2], [1, 2, 3], False),
        (None, None, True),
    ],
)
def test_same_json_keeps_json_types_apart(a: object, b: object, same: bool) -> None:
    assert views.same_json(a, b) is same
    assert (a == b) or not same  # Python's == is the weaker relation the verifier must not use


@pytest.mark.parametrize(
    "text",
    [
        r'"\ud800"',  # a lone high surrogate
        r'"\udfff"',  # a lone low surrogate
        r'["a", "x\uDC00y"]',  # inside a list, upper-case hex
        r'{"\ud83d": 1}',  # in a key
        r'{"a": {"b": "\ude00\ud83d"}}',  # a pair the wrong way round: two lone ones
        '"\ud800"',  # a str holding the surrogate character itself
    ],
)
def test_a_lone_surrogate_is_ambiguous(text: str) -> None:
    # it is no Unicode character: the string has no UTF-8 (a database write, a file, a hash of it would fail)
    with pytest.raises(strict_json.AmbiguousJSON, match="surrogate"):
        strict_json.loads(text)


def test_a_surrogate_pair_and_an_escaped_backslash_u_are_characters() -> None:
    assert strict_json.loads(r'"\ud83d\ude00"') == "\U0001f600"
    assert strict_json.loads(r'"\\ud800"') == "\\ud800"  # a backslash, then the letters u d 8 0 0


def test_duplicates_and_constants_are_ambiguous_and_bad_syntax_is_not() -> None:
    with pytest.raises(strict_json.AmbiguousJSON):
        strict_json.loads('{"a": 1, "a": 2}')
    with pytest.raises(strict_json.AmbiguousJSON):
        strict_json.loads("[NaN]")
    with pytest.raises(strict_json.StrictJSONError) as err:
        strict_json.loads("{")
    assert not isinstance(err.value, strict_json.AmbiguousJSON)
