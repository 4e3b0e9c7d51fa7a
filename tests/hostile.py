"""Generated hostile and malformed deliveries for the intake (Hypothesis strategies).

Every element these strategies make is one prepost must **not** act on: anything that is not a
JSON object, random objects, events of other types, and the sample maintenance events broken
by at least one mutation from the classes the issue lists (wrong types, huge values, Unicode
look-alikes in ids, edge-of-calendar and malformed times, repeated keys, conflicting envelopes,
too many subscriptions). Each element is produced as JSON **text**, so repeated keys survive to
the parser. Harmless noise (unknown keys with odd values) is added on top; it can add reasons,
never remove the breaking one.

The fast form runs inside ``make test`` with a fixed seed and a bounded number of examples; set
``PREPOST_HOSTILE_EXAMPLES`` (and optionally ``PREPOST_HOSTILE_SEED``) for a longer run
(docs/events.md, "The generated hostile-input test").
"""

from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, seed, settings
from hypothesis import strategies as st

from shared.models.events import EventType
from shared.models.ids import ascii_fold
from tests.conftest import load_events

SEED = int(os.environ.get("PREPOST_HOSTILE_SEED", "20261130"))
LONG_EXAMPLES = int(os.environ.get("PREPOST_HOSTILE_EXAMPLES", "0"))

SAMPLES = {
    "pre": load_events("pre-eventgrid-camelcase.json")[0],
    "pre-pascal": load_events("pre-eventgrid-pascalcase.json")[0],
    "pre-cloud": load_events("pre-cloudevents.json")[0],
    "post": load_events("post-eventgrid.json")[0],
}
MAINTENANCE_TYPES = {ascii_fold(t.value) for t in EventType}

NASTY_TEXT = [
    "",
    " ",
    "now",
    "null",
    "\x00",
    "\ud800",
    "\udfff\ud800",
    "\u017f",
    "\u212a",
    "\u202e",
    "\u0662\u0660\u0662\u0666",
    "\U0001f4a5" * 8,
    "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59-01:00",
    "Sun, 22 Nov 2026 01:25:00 GMT",
    "2026-11-22",
    "2026-13-01T00:00:00Z",
    "'; DROP TABLE runs; --",
    "../../etc/passwd",
    "%00%2F",
    '"\\',
    "<html>",
    "x" * 40_000,
]
HOSTILE_TIMES: list[Any] = [
    "0001-01-01T00:00:00Z",
    "0001-01-01T00:30:00+01:00",
    "9999-12-31T23:59:59Z",
    "9999-12-31T23:30:00-01:00",
    "1601-01-01T00:00:00Z",
    "2099-01-01T00:00:00Z",
    "1999-12-31T23:59:59Z",
    "now",
    "",
    "Sun, 22 Nov 2026 01:25:00 GMT",
    "2026-11-22",
    "2026-W47-7T01:25:00Z",
    "2026-02-30T02:00:00Z",
    "2026-11-22T25:00:00Z",
    "\u0662\u0660\u0662\u0666-11-22T02:00:00Z",
    "2026-11-22T02:00:00+99:00",
    "2026-11-22T02:00:00." + "9" * 40 + "Z",
    0,
    -1,
    1.5e9,
    True,
    [],
    {},
]
LOOK_ALIKES = [
    ("Microsoft", "Micro\u017foft"),
    ("applyupdates", "applyupdate\u017f"),
    ("mc-weekly-linux", "mc-wee\u212aly-linux"),
    ("rg-patching", "rg-p\u0430tching"),
    ("20261122020000", "\u0662\u0660\u0662\u0666\u0661\u0661\u0662\u0662\u0660\u0662\u0660\u0660\u0660\u0660"),
    ("20261122020000", "20261322020000"),
    ("6f1d2c4e", "\u0666f1d2c4e"),
    ("/subscriptions/", "/subscriptions/ "),
]


def hostile_settings(max_examples: int):
    """Hypothesis settings for these tests: fixed seed, bounded, no example database, no deadline."""

    def apply(test):
        examples = LONG_EXAMPLES or max_examples
        configured = settings(
            max_examples=examples,
            deadline=None,  # Azurite's latency is not what is tested
            database=None,  # nothing written into the repository
            suppress_health_check=[
                HealthCheck.function_scoped_fixture,
                HealthCheck.too_slow,
                HealthCheck.data_too_large,
            ],
            print_blob=True,
        )(test)
        return seed(SEED)(configured)

    return apply


@dataclass(frozen=True)
class Element:
    """One element of a delivered array: its JSON text, and what it was made to be."""

    text: str
    kind: str


# -- values ---------------------------------------------------------------------------------

texts = st.one_of(st.sampled_from(NASTY_TEXT), st.text(max_size=30))
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    texts,
)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(texts.filter(lambda key: len(key) < 100), children, max_size=4),
    ),
    max_leaves=12,
)


def _dumps(value: Any) -> str:
    return json.dumps(value)


# -- elements -------------------------------------------------------------------------------


@st.composite
def non_objects(draw) -> Element:
    value = draw(st.one_of(scalars, st.lists(json_values, max_size=4)))
    return Element(_dumps(value), "not an object")


@st.composite
def random_objects(draw) -> Element:
    value = draw(st.dictionaries(texts.filter(lambda key: len(key) < 100), json_values, max_size=6))
    return Element(_dumps(value), "random object")


@st.composite
def other_types(draw) -> Element:
    event = copy.deepcopy(draw(st.sampled_from(sorted(SAMPLES.items())))[1])
    new_type = draw(
        st.one_of(
            st.sampled_from(["Microsoft.Resources.ResourceWriteSuccess", "Microsoft.Maintenance.Pre", ""]),
            texts,
            st.integers(),
        ).filter(lambda value: not (isinstance(value, str) and ascii_fold(value) in MAINTENANCE_TYPES))
    )
    event["type" if "specversion" in event else "eventType"] = new_type
    return Element(_dumps(event), "other type")


def _set_data(event: dict, key: str, value: Any) -> None:
    event["data"][key] = value


@st.composite
def _breaking_mutation(draw, event: dict, name: str) -> str | None:
    """Break ``event`` in place (or return the text of a broken one); the name of what was done."""
    data = event["data"]
    cloud = "specversion" in event
    choices = [
        "time",
        "event-time",
        "run-id",
        "configuration-id",
        "subscriptions",
        "too-many-subscriptions",
        "envelope-id",
        "specversion",
        "conflicting-type",
        "repeated-key",
        "case-variant",
        "data-not-object",
    ]
    if name == "post":
        choices.append("status")
    choice = draw(st.sampled_from(choices))
    if choice == "time":
        keys = ["startDateTime", "endDateTime"] + (["cancellationCutOffDateTime"] if name.startswith("pre") else [])
        key = draw(st.sampled_from(keys))
        value = draw(st.sampled_from(HOSTILE_TIMES) | st.integers() | st.none())
        real_key = next(k for k in data if k.lower() == key.lower())
        if value is None and key == "cancellationCutOffDateTime":
            value = "now"  # a missing cut-off is valid: keep the mutation breaking
        if value is None:
            del data[real_key]
        else:
            data[real_key] = value
    elif choice == "event-time":
        event["time" if cloud else "eventTime"] = draw(st.sampled_from([v for v in HOSTILE_TIMES if v is not None]))
    elif choice in ("run-id", "configuration-id"):
        key = next(
            k for k in data if k.lower() == ("correlationid" if choice == "run-id" else "maintenanceconfigurationid")
        )
        applicable = [(original, replacement) for original, replacement in LOOK_ALIKES if original in data[key]]
        if applicable and draw(st.booleans()):
            original, replacement = draw(st.sampled_from(applicable))
            data[key] = data[key].replace(original, replacement)
        else:
            data[key] = draw(st.one_of(texts, st.integers(), st.lists(texts, max_size=2)))
    elif choice == "subscriptions":
        key = next(k for k in data if k.lower() == "resourcesubscriptionids")
        data[key] = draw(
            st.one_of(
                st.just([]),
                st.lists(texts.filter(lambda text: len(text) != 36), min_size=1, max_size=3),
                st.just([data[key][0].replace("6", "\u0666")]),
                texts,
                st.integers(),
            )
        )
    elif choice == "too-many-subscriptions":
        key = next(k for k in data if k.lower() == "resourcesubscriptionids")
        count = draw(st.integers(min_value=801, max_value=5_000))
        data[key] = [f"00000000-0000-0000-0000-{index:012d}" for index in range(count)]
    elif choice == "envelope-id":
        event["id"] = draw(
            st.one_of(st.just("x" * 33_000), st.integers(), st.lists(st.integers(), max_size=2), st.just("\x00"))
        )
    elif choice == "specversion":
        event["specversion"] = draw(st.one_of(st.sampled_from(["2.0", "0.3", "1", "1.0 "]), st.integers(), st.none()))
    elif choice == "conflicting-type":
        other = "eventType" if cloud else "type"
        own = event["type" if cloud else "eventType"]
        event[other] = draw(texts.filter(lambda text: text != own))
    elif choice == "status":
        data["status"] = draw(
            st.one_of(st.just("S" * 40_000), st.integers(), st.lists(texts, max_size=2), st.just("\x07"))
        )
    elif choice == "case-variant":
        key = draw(st.sampled_from(sorted(data)))
        variant = key.upper() if key != key.upper() else key.lower()
        data[variant] = draw(json_values.filter(lambda value, key=key: value != data[key]))
    elif choice == "data-not-object":
        event["data"] = draw(st.one_of(scalars, st.lists(json_values, max_size=4)))
    return choice


@st.composite
def broken_events(draw) -> Element:
    name, sample = draw(st.sampled_from(sorted(SAMPLES.items())))
    event = copy.deepcopy(sample)
    choice = draw(_breaking_mutation(event, name))
    if draw(st.booleans()):  # harmless noise on top
        target = event["data"] if isinstance(event.get("data"), dict) else event
        target[draw(st.sampled_from(["x-extra", "\u017fextra", "\U0001f4a5"]))] = draw(json_values)
    text = _dumps(event)
    if choice == "repeated-key":
        # The same key twice in the text, the first time with another value: the parser keeps the
        # last (the sample's), another parser would read the first.
        key = draw(st.sampled_from(sorted(k for k in event if k != "data")))
        decoy = draw(json_values.filter(lambda value: value != event[key]))
        text = "{" + json.dumps(key) + ": " + _dumps(decoy) + ", " + text[1:]
    return Element(text, f"broken {name}: {choice}")


# Broken maintenance events are the most telling kind: they get most of the examples.
elements = st.one_of(non_objects(), random_objects(), other_types(), *[broken_events()] * 5)


@dataclass(frozen=True)
class Body:
    """A delivered body: its bytes, and the elements it holds (None: it is not events at all)."""

    data: bytes
    elements: tuple[Element, ...] | None
    kind: str


@st.composite
def event_bodies(draw) -> Body:
    """A JSON array of 1-4 elements, or a single object: every element must be recorded."""
    items = draw(st.lists(elements, min_size=1, max_size=4))
    if len(items) == 1 and items[0].text.startswith("{") and draw(st.booleans()):
        return Body(items[0].text.encode(), tuple(items), "one object")
    return Body(("[" + ",".join(item.text for item in items) + "]").encode(), tuple(items), "array")


@st.composite
def not_event_bodies(draw) -> Body:
    """Bodies that are not events at all: answered 400 or 413, nothing recorded."""
    kind = draw(st.sampled_from(["bytes", "scalar", "deep", "too-many", "huge", "broken-json", "nan"]))
    if kind == "bytes":
        data = draw(st.binary(max_size=64).filter(lambda data: not _is_json_container(data)))
    elif kind == "scalar":
        data = _dumps(draw(scalars)).encode()
    elif kind == "deep":
        depth = draw(st.integers(min_value=33, max_value=50_000))
        data = (
            ("[" * depth + "]" * depth).encode()
            if draw(st.booleans())
            else ('{"a":' * depth + "1" + "}" * depth).encode()
        )
    elif kind == "too-many":
        data = ("[" + ",".join(["{}"] * draw(st.integers(min_value=101, max_value=500))) + "]").encode()
    elif kind == "huge":
        data = json.dumps([{"id": "x" * (1024 * 1024)}]).encode()
    elif kind == "broken-json":
        data = draw(st.sampled_from([b"[", b"{", b"[{}", b'{"a":}', b"[1,]", b"\xff\xfe[]", b"[NaN]", b"[1e999]"]))
    else:
        data = b'[{"id": NaN}]'
    return Body(data, None, kind)


def _is_json_container(data: bytes) -> bool:
    try:
        return isinstance(json.loads(data), list | dict)
    except (ValueError, UnicodeDecodeError):
        return False


bodies = st.one_of(event_bodies(), event_bodies(), not_event_bodies())
