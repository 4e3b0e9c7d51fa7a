"""host.json against the official host.json JSON schema (JSON Schema Store, vendored in tests/schemas).

The Functions host ignores settings it does not know and falls back to defaults for values it
cannot read, so a misspelled key or an out-of-range value in host.json fails silently in Azure.
The schema catches both before deployment.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "tests" / "schemas" / "host.schema.json"


def schema() -> dict[str, Any]:
    return json.loads(SCHEMA.read_text(encoding="utf-8"))


def host() -> dict[str, Any]:
    return json.loads((ROOT / "host.json").read_text(encoding="utf-8"))


def errors(document: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft7Validator(schema())
    found = sorted(validator.iter_errors(document), key=lambda error: list(error.absolute_path))
    # oneOf (version 1 or 2) hides the real reason; best_match digs it out of the context.
    return [
        f"{'/'.join(map(str, best.absolute_path)) or '<root>'}: {best.message}"
        for best in (jsonschema.exceptions.best_match([error]) for error in found)
    ]


def test_vendored_schema_is_the_schemastore_host_schema_and_is_valid_draft_7():
    document = schema()
    assert document["$id"] == "https://json.schemastore.org/host.json"
    jsonschema.Draft7Validator.check_schema(document)
    assert (ROOT / "tests" / "schemas" / "LICENSE-schemastore").read_text().lstrip().startswith("Apache License")


def test_host_json_is_valid_against_the_official_schema():
    assert errors(host()) == []


def test_host_json_is_version_2():
    assert host()["version"] == "2.0"


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("extensions", "queues", "batchSize"), 64),  # the host caps batches at 32
        (("extensions", "queues", "batchsize"), 8),  # misspelled: the host would ignore it
        (("functionTimeout",), "10 minutes"),
        (("extensions", "queues", "messageEncoding"), "base32"),
    ],
    ids=["batch-over-32", "misspelled-key", "timeout-not-a-timespan", "unknown-encoding"],
)
def test_schema_rejects_a_broken_host_json(path: tuple[str, ...], value: Any):
    # Guards the test above: a schema that accepted anything would make it pass vacuously.
    broken = copy.deepcopy(host())
    node = broken
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    assert errors(broken), f"the schema accepted {'.'.join(path)} = {value!r}"
