"""Delivered JSON parsed strictly: repeated keys kept visible, depth and numbers bounded."""

from __future__ import annotations

import json

import pytest

from shared.errors import MalformedPayload
from shared.models.json_text import MAX_DEPTH, DuplicateKeys, loads, nesting_depth, repeated_keys, value_depth


def test_a_key_repeated_with_different_values_is_named_and_the_last_value_kept():
    value = loads('{"a": 1, "b": {"c": "x", "c": "y"}, "a": 2}')

    assert value == {"a": 2, "b": {"c": "y"}}  # what the Functions host's parser keeps
    assert isinstance(value, DuplicateKeys) and value.duplicates == ("a",)
    assert sorted(repeated_keys(value)) == ["a", "b.c"]


def test_a_key_repeated_with_the_same_value_is_not_a_conflict():
    value = loads('{"a": [1, {"b": null}], "a": [1, {"b": null}]}')

    assert type(value) is dict
    assert list(repeated_keys(value)) == []


@pytest.mark.parametrize(("first", "second"), [("1", "1.0"), ("1", "true"), ("0", "false"), ('"1"', "1")])
def test_values_equal_in_python_but_not_in_json_are_a_conflict(first, second):
    assert list(repeated_keys(loads(f'{{"a": {first}, "a": {second}}}'))) == ["a"]


def test_repeated_keys_are_found_inside_arrays_with_their_path():
    value = loads('{"data": {"ids": [{"x": 1, "x": 2}]}}')

    assert list(repeated_keys(value)) == ["data.ids[0].x"]


@pytest.mark.parametrize(
    "text",
    ["NaN", "[Infinity]", '{"a": -Infinity}', "[1e400]", "1" * 5000, "{not json", "", "[1,]"],
    ids=["nan", "infinity", "minus-infinity", "overflowing-float", "5000-digit-int", "broken", "empty", "comma"],
)
def test_what_python_accepts_but_json_does_not_is_refused(text):
    with pytest.raises(MalformedPayload, match="not JSON"):
        loads(text)


def test_a_body_nested_beyond_the_limit_is_refused_before_parsing():
    text = "[" * 100_000 + "]" * 100_000  # json.loads alone would raise RecursionError

    with pytest.raises(MalformedPayload, match=f"at most {MAX_DEPTH}"):
        loads(text)


def test_brackets_inside_strings_do_not_count_as_nesting():
    text = json.dumps({"a": "[[[[{{{{" * 100, "b": 'quote \\" and [['})

    assert nesting_depth(text) == 1
    assert loads(text)["a"].startswith("[[[[")


def test_the_depth_of_a_parsed_value_is_measured_without_recursion():
    deep: object = 1
    for _ in range(100_000):
        deep = [deep]

    assert value_depth({"a": [1]}) == 2
    assert value_depth(deep) > MAX_DEPTH


@pytest.mark.parametrize(
    ("body", "expected"),
    [(b'\xef\xbb\xbf{"a": 1}', {"a": 1}), (b'{"a": "\xc3\xa9"}', {"a": "\u00e9"})],
    ids=["byte-order-mark", "utf-8"],
)
def test_utf8_bytes_are_read(body, expected):
    assert loads(body) == expected


def test_bytes_that_are_not_utf8_are_refused():
    with pytest.raises(MalformedPayload, match="not UTF-8"):
        loads('{"a": "\u00e9"}'.encode("latin-1"))
