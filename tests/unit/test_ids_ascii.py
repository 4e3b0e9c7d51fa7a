"""Event ids are ASCII ARM ids, folded without merging different characters."""

from __future__ import annotations

import hashlib

import pytest

from shared.models.ids import ascii_fold, configuration_of, is_configuration_id, is_guid, run_key
from tests.conftest import load_events

SAMPLE = load_events("pre-eventgrid-camelcase.json")[0]["data"]
CORRELATION = SAMPLE["correlationId"]
CONFIGURATION = SAMPLE["maintenanceConfigurationId"]
SUBSCRIPTION = SAMPLE["resourceSubscriptionIds"][0]


@pytest.mark.parametrize(
    ("text", "folded"),
    [("MC-Weekly", "mc-weekly"), ("\u212a", "\u212a"), ("\u017f", "\u017f"), ("\u0130", "\u0130"), ("SS", "ss")],
    ids=["ascii", "kelvin-sign-stays", "long-s-stays", "dotted-capital-i-stays", "ascii-ss"],
)
def test_ascii_fold_lowers_ascii_capitals_only(text, folded):
    assert ascii_fold(text) == folded


def test_two_different_characters_never_fold_to_one():
    assert ascii_fold("mc-wee\u212aly") != ascii_fold("mc-weekly")
    assert "mc-wee\u212aly".lower() == "mc-weekly"  # what str.lower would have merged


@pytest.mark.parametrize(
    "guid",
    [
        SUBSCRIPTION.replace("6", "\u0666"),  # ARABIC-INDIC DIGIT SIX
        SUBSCRIPTION.replace("f", "\uff46"),  # FULLWIDTH LATIN SMALL LETTER F
        SUBSCRIPTION + "\n",
    ],
    ids=["arabic-indic-digit", "fullwidth-letter", "trailing-newline"],
)
def test_a_guid_is_ascii_hex_only(guid):
    assert is_guid(guid) is False


def test_text_after_a_run_id_on_another_line_makes_it_not_a_run_id():
    assert configuration_of(CORRELATION + "\n/extra") is None
    assert configuration_of(CORRELATION) is not None


@pytest.mark.parametrize(
    "spelling",
    [
        CONFIGURATION.replace("Microsoft", "Micro\u017foft"),
        CONFIGURATION.replace("resourceGroups", "re\u017fourceGroups"),
        CONFIGURATION.replace("rg-patching", "rg-" + "x" * 90),
        CONFIGURATION.replace("rg-patching", "rg-patching."),
        CONFIGURATION.replace("mc-weekly-linux", "mc weekly"),
        CONFIGURATION.replace("mc-weekly-linux", "mc'weekly"),
    ],
    ids=["long-s-provider", "long-s-keyword", "group-over-90", "group-ending-in-dot", "space", "quote"],
)
def test_what_is_not_an_ascii_configuration_id(spelling):
    assert is_configuration_id(spelling) is False
    assert configuration_of(f"{spelling}/providers/microsoft.maintenance/applyupdates/20261122020000") is None


def test_a_configuration_id_in_any_ascii_case_is_one():
    assert is_configuration_id(CONFIGURATION.upper().replace("/SUBSCRIPTIONS/", "/subscriptions/"))


def test_run_keys_of_ascii_ids_are_what_lower_case_gave():
    """Folding ASCII only changes no key stored before: run ids are ASCII."""
    digest = hashlib.sha256(CORRELATION.lower().encode()).hexdigest()[:12]
    assert run_key(CORRELATION).endswith(f"-20261122020000-{digest}")
