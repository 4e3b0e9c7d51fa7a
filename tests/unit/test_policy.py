"""The per-run policy read from the maintenance configuration's tags."""

from __future__ import annotations

import pytest

from shared.models.policy import RunPolicy, SnapshotDisks


def test_no_tags_give_the_safe_defaults():
    policy = RunPolicy.from_tags(None)

    assert policy == RunPolicy()
    assert policy.snapshot_disks is SnapshotDisks.OS
    assert policy.snapshot_retention_days == 0
    assert policy.start_deallocated is True
    assert policy.suppress_alerts is True
    assert policy.suppression_grace_minutes is None
    assert policy.cancel_on_failure is True
    assert policy.findings == ()


def test_tags_unrelated_to_prepost_are_ignored_silently():
    policy = RunPolicy.from_tags({"owner": "team-linux", "costcenter": "42"})

    assert policy == RunPolicy()
    assert policy.findings == ()


def test_every_tag_is_read():
    policy = RunPolicy.from_tags(
        {
            "prepost-snapshot-disks": "all",
            "prepost-snapshot-retention-days": "14",
            "prepost-start-deallocated": "false",
            "prepost-suppress-alerts": "no",
            "prepost-suppression-grace-minutes": "30",
            "prepost-cancel-on-failure": "off",
        }
    )

    assert policy.snapshot_disks is SnapshotDisks.ALL
    assert policy.snapshot_retention_days == 14
    assert policy.start_deallocated is False
    assert policy.suppress_alerts is False
    assert policy.suppression_grace_minutes == 30
    assert policy.cancel_on_failure is False
    assert policy.findings == ()


def test_tag_names_and_values_are_read_regardless_of_case_and_spaces():
    policy = RunPolicy.from_tags({"Prepost-Snapshot-Disks": " NONE ", "PREPOST-CANCEL-ON-FAILURE": "False"})

    assert policy.snapshot_disks is SnapshotDisks.NONE
    assert policy.cancel_on_failure is False
    assert policy.findings == ()


@pytest.mark.parametrize("value", ["true", "TRUE", "yes", "1", "on"])
def test_true_spellings(value):
    assert RunPolicy.from_tags({"prepost-start-deallocated": value}).start_deallocated is True
    assert RunPolicy.from_tags({"prepost-suppress-alerts": value}).suppress_alerts is True


@pytest.mark.parametrize("value", ["false", "False", "no", "0", "off"])
def test_false_spellings(value):
    assert RunPolicy.from_tags({"prepost-cancel-on-failure": value}).cancel_on_failure is False


@pytest.mark.parametrize(
    ("tag", "value", "field", "default"),
    [
        ("prepost-cancel-on-failure", "nein", "cancel_on_failure", True),
        ("prepost-suppress-alerts", "", "suppress_alerts", True),
        ("prepost-start-deallocated", "maybe", "start_deallocated", True),
        ("prepost-snapshot-disks", "some", "snapshot_disks", SnapshotDisks.OS),
        ("prepost-snapshot-retention-days", "two weeks", "snapshot_retention_days", 0),
        ("prepost-snapshot-retention-days", "-3", "snapshot_retention_days", 0),
        ("prepost-snapshot-retention-days", "\u00b2", "snapshot_retention_days", 0),
        ("prepost-suppression-grace-minutes", "1.5", "suppression_grace_minutes", None),
    ],
)
def test_an_invalid_value_keeps_the_default_and_becomes_a_finding(tag, value, field, default):
    policy = RunPolicy.from_tags({tag: value})

    assert getattr(policy, field) == default
    assert len(policy.findings) == 1
    assert tag in policy.findings[0]


def test_an_unknown_prepost_tag_is_a_finding():
    policy = RunPolicy.from_tags({"prepost-snapshot-disk": "all"})  # typo: singular

    assert policy.snapshot_disks is SnapshotDisks.OS
    assert any("prepost-snapshot-disk " in finding for finding in policy.findings)


def test_findings_do_not_change_equality_but_survive_a_round_trip():
    policy = RunPolicy.from_tags(
        {"prepost-snapshot-disks": "all", "prepost-bogus": "1", "prepost-suppression-grace-minutes": "15"}
    )

    restored = RunPolicy.from_dict(policy.to_dict())

    assert restored == policy
    assert restored.findings == policy.findings
    assert restored.suppression_grace_minutes == 15


def test_an_empty_stored_policy_is_the_default():
    assert RunPolicy.from_dict({}) == RunPolicy()


@pytest.mark.parametrize(
    ("tag", "value", "field"),
    [
        ("prepost-suppression-grace-minutes", "99999999", "suppression_grace_minutes"),
        ("prepost-suppression-grace-minutes", "1441", "suppression_grace_minutes"),
        ("prepost-snapshot-retention-days", "3651", "snapshot_retention_days"),
        ("prepost-snapshot-retention-days", "9" * 400, "snapshot_retention_days"),
    ],
)
def test_a_number_beyond_its_bound_keeps_the_default_and_becomes_a_finding(tag, value, field):
    policy = RunPolicy.from_tags({tag: value})

    assert getattr(policy, field) == getattr(RunPolicy(), field)
    assert any(tag in finding for finding in policy.findings)
    assert all(len(finding) < 300 for finding in policy.findings)


def test_the_largest_numbers_in_bounds_are_kept():
    tags = {"prepost-suppression-grace-minutes": "1440", "prepost-snapshot-retention-days": "3650"}
    policy = RunPolicy.from_tags(tags)

    assert (policy.suppression_grace_minutes, policy.snapshot_retention_days) == (1440, 3650)
    assert policy.findings == ()


def test_the_fail_safe_policy_takes_snapshots_and_cancels_but_starts_and_silences_nothing():
    policy = RunPolicy.fail_safe()

    assert policy.snapshot_disks is not SnapshotDisks.NONE and policy.cancel_on_failure
    assert not policy.start_deallocated and not policy.suppress_alerts
    assert policy.snapshot_retention_days == 0
