"""Settings: read from an explicit mapping (never the process environment), validated at once."""

from __future__ import annotations

from datetime import timedelta

import pytest

from shared.errors import SettingsError
from shared.names import SERVICEBUS_CONNECTION, STORAGE_CONNECTION, SettingName
from shared.settings import (
    AZURE_RESOURCE_MANAGER,
    AllowList,
    ArmAuth,
    ServiceBusSettlement,
    Settings,
    Transport,
    selected_servicebus_settlement,
    selected_transport,
)

SUB_A = "6f1d2c4e-8a7b-4c21-9e3f-2b5a7d9c1e40"
SUB_B = "b3e8a912-4f6c-4d0b-8a21-7c5e9f3d2a18"


def env(**changes: str | None) -> dict[str, str]:
    """A minimal valid environment, with ``changes`` applied (None removes a setting)."""
    values = {
        STORAGE_CONNECTION: "UseDevelopmentStorage=true",
        SettingName.ALLOWED_CONFIGURATIONS.value: "*",
        SettingName.ALLOWED_SUBSCRIPTIONS.value: SUB_A,
    }
    for name, value in changes.items():
        key = SettingName[name].value if name in SettingName.__members__ else name
        if value is None:
            values.pop(key, None)
        else:
            values[key] = value
    return values


def problems(values: dict[str, str]) -> str:
    with pytest.raises(SettingsError) as caught:
        Settings.from_environ(values)
    return str(caught.value)


def test_a_minimal_environment_gives_the_defaults():
    settings = Settings.from_environ(env())

    assert settings.transport is Transport.STORAGE
    assert settings.arm_endpoint == AZURE_RESOURCE_MANAGER
    assert settings.arm_auth is ArmAuth.AZURE
    assert settings.suppression_grace == timedelta(minutes=60)
    assert settings.cancel_margin == timedelta(minutes=2)
    assert settings.max_task_attempts == 8
    assert settings.servicebus is None
    assert settings.suppression_resource_group is None
    assert settings.storage.connection_string == "UseDevelopmentStorage=true"


def test_an_empty_environment_names_every_missing_setting():
    message = problems({})

    assert STORAGE_CONNECTION in message
    assert SettingName.ALLOWED_CONFIGURATIONS.value in message
    assert SettingName.ALLOWED_SUBSCRIPTIONS.value in message


@pytest.mark.parametrize("name", ["ALLOWED_CONFIGURATIONS", "ALLOWED_SUBSCRIPTIONS"])
@pytest.mark.parametrize("value", [None, "", "   "], ids=["absent", "empty", "blank"])
def test_allow_lists_are_required(name, value):
    assert SettingName[name].value in problems(env(**{name: value}))


def test_storage_may_be_an_identity_based_account():
    values = env(AzureWebJobsStorage=None, **{f"{STORAGE_CONNECTION}__accountName": "stprepost"})

    settings = Settings.from_environ(values)

    assert settings.storage.account_name == "stprepost"
    assert settings.storage.service_url("queue") == "https://stprepost.queue.core.windows.net"


def test_allow_lists_are_case_insensitive_and_accept_commas_and_semicolons():
    config = "/subscriptions/X/resourceGroups/RG/providers/Microsoft.Maintenance/maintenanceConfigurations/MC"
    settings = Settings.from_environ(
        env(ALLOWED_CONFIGURATIONS=f" {config} ; /other ", ALLOWED_SUBSCRIPTIONS=f"{SUB_A.upper()},{SUB_B}")
    )

    assert settings.allowed_configurations.allows(config.lower())
    assert settings.allowed_configurations.allows("/OTHER")
    assert not settings.allowed_configurations.allows("/third")
    assert settings.allowed_subscriptions.allows(SUB_A)
    assert settings.allowed_subscriptions.allows(SUB_B.upper())


def test_a_star_allows_everything():
    settings = Settings.from_environ(env(ALLOWED_SUBSCRIPTIONS="*"))

    assert settings.allowed_subscriptions.allows(SUB_B)
    assert settings.allowed_subscriptions.describe() == "*"


def test_an_allow_list_of_only_separators_allows_nothing():
    allow = AllowList.parse(" , ; ")

    assert not allow.allows("")
    assert not allow.allows(SUB_A)
    assert allow.describe() == "(empty)"


@pytest.mark.parametrize(
    "value",
    [
        "not-a-guid",
        SUB_A.replace("-", ""),
        "{" + SUB_A + "}",
        "1234-5678-1234-5678-1234567812345678",  # 36 characters, hyphens misplaced
    ],
    ids=["text", "no-hyphens", "braces", "misplaced-hyphens"],
)
def test_allowed_subscriptions_must_be_guids(value):
    message = problems(env(ALLOWED_SUBSCRIPTIONS=f"{SUB_A},{value}"))

    assert SettingName.ALLOWED_SUBSCRIPTIONS.value in message
    assert value.lower() in message


def test_upper_case_subscription_guids_are_accepted():
    assert Settings.from_environ(env(ALLOWED_SUBSCRIPTIONS=SUB_A.upper())).allowed_subscriptions.allows(SUB_A)


@pytest.mark.parametrize(("raw", "transport"), [("storage", Transport.STORAGE), (" ServiceBus ", Transport.SERVICEBUS)])
def test_transport(raw, transport):
    values = env(TRANSPORT=raw, **{SERVICEBUS_CONNECTION: "Endpoint=sb://x/;SharedAccessKeyName=k;SharedAccessKey=v"})

    assert Settings.from_environ(values).transport is transport
    assert selected_transport(values) is transport


def test_an_unknown_transport_is_refused():
    assert SettingName.TRANSPORT.value in problems(env(TRANSPORT="kafka"))
    with pytest.raises(SettingsError):
        selected_transport({SettingName.TRANSPORT.value: "kafka"})


def test_the_transport_defaults_to_storage_when_unset():
    assert selected_transport({}) is Transport.STORAGE


def test_service_bus_transport_needs_a_connection():
    assert SERVICEBUS_CONNECTION in problems(env(TRANSPORT="servicebus"))


def test_service_bus_may_be_an_identity_based_namespace():
    values = env(
        TRANSPORT="servicebus",
        **{f"{SERVICEBUS_CONNECTION}__fullyQualifiedNamespace": "sb.servicebus.windows.net"},
    )

    settings = Settings.from_environ(values)

    assert settings.servicebus.fully_qualified_namespace == "sb.servicebus.windows.net"
    assert settings.servicebus.connection_string is None


@pytest.mark.parametrize(
    "endpoint", ["http://127.0.0.1:7480", "http://localhost:7480/", "http://[::1]:7480", "https://127.0.0.2"]
)
def test_simulator_auth_with_a_loopback_endpoint(endpoint):
    settings = Settings.from_environ(env(ARM_AUTH="simulator", ARM_ENDPOINT=endpoint))

    assert settings.arm_auth is ArmAuth.SIMULATOR
    assert settings.arm_endpoint == endpoint.rstrip("/")


@pytest.mark.parametrize(
    "endpoint",
    [
        AZURE_RESOURCE_MANAGER,
        "http://10.0.0.4:7480",
        "http://127.attacker.example:7480",  # starts with "127." but is a DNS name
        "http://localhost.attacker.example",
        None,  # the default endpoint is Azure's
    ],
)
def test_simulator_auth_never_goes_beyond_loopback(endpoint):
    message = problems(env(ARM_AUTH="simulator", ARM_ENDPOINT=endpoint))

    assert SettingName.ARM_ENDPOINT.value in message
    assert "loopback" in message


@pytest.mark.parametrize("endpoint", ["http://127.0.0.1:7480", "http://management.example"])
def test_azure_auth_needs_https(endpoint):
    assert "https" in problems(env(ARM_AUTH="azure", ARM_ENDPOINT=endpoint))


def test_an_unknown_auth_is_refused():
    assert SettingName.ARM_AUTH.value in problems(env(ARM_AUTH="token"))


def test_numbers_are_read():
    settings = Settings.from_environ(
        env(
            SUPPRESSION_GRACE_MINUTES="15",
            CANCEL_MARGIN_MINUTES="0",
            MAX_TASK_ATTEMPTS="3",
            SUPPRESSION_RESOURCE_GROUP="rg-ops",
        )
    )

    assert settings.suppression_grace == timedelta(minutes=15)
    assert settings.cancel_margin == timedelta(0)
    assert settings.max_task_attempts == 3
    assert settings.suppression_resource_group == "rg-ops"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SUPPRESSION_GRACE_MINUTES", "an hour"),
        ("SUPPRESSION_GRACE_MINUTES", "-5"),
        ("CANCEL_MARGIN_MINUTES", "1.5"),
        ("CANCEL_MARGIN_MINUTES", "-1"),
        ("MAX_TASK_ATTEMPTS", "0"),
        ("MAX_TASK_ATTEMPTS", "51"),
        ("MAX_TASK_ATTEMPTS", "many"),
    ],
)
def test_numbers_out_of_range_are_refused(name, value):
    assert SettingName[name].value in problems(env(**{name: value}))


def test_every_problem_is_named_at_once():
    message = problems(env(MAX_TASK_ATTEMPTS="0", CANCEL_MARGIN_MINUTES="x", TRANSPORT="kafka"))

    for name in (SettingName.MAX_TASK_ATTEMPTS, SettingName.CANCEL_MARGIN_MINUTES, SettingName.TRANSPORT):
        assert name.value in message


class TestServiceBusSettlementAndOperationChecks:
    def _env(self, **extra):
        return {
            "AzureWebJobsStorage": "UseDevelopmentStorage=true",
            "PREPOST_ALLOWED_CONFIGURATIONS": "*",
            "PREPOST_ALLOWED_SUBSCRIPTIONS": "*",
            **extra,
        }

    def test_defaults_are_classic_settlement_and_twenty_second_checks(self):
        settings = Settings.from_environ(self._env())
        assert settings.servicebus_settlement is ServiceBusSettlement.CLASSIC
        assert settings.operation_check_interval == timedelta(seconds=20)

    def test_explicit_settlement_and_a_short_check_interval_are_read(self):
        settings = Settings.from_environ(
            self._env(PREPOST_SERVICEBUS_SETTLEMENT="Explicit", PREPOST_OPERATION_CHECK_SECONDS="1")
        )
        assert settings.servicebus_settlement is ServiceBusSettlement.EXPLICIT
        assert settings.operation_check_interval == timedelta(seconds=1)

    @pytest.mark.parametrize(
        ("name", "value", "expected"),
        [
            ("PREPOST_SERVICEBUS_SETTLEMENT", "auto", "must be 'explicit' or 'classic', got 'auto'"),
            ("PREPOST_OPERATION_CHECK_SECONDS", "0", "PREPOST_OPERATION_CHECK_SECONDS must be a whole number from 1"),
            ("PREPOST_OPERATION_CHECK_SECONDS", "soon", "OPERATION_CHECK_SECONDS must be a whole number from 1"),
        ],
    )
    def test_bad_values_are_named(self, name, value, expected):
        with pytest.raises(SettingsError, match=expected):
            Settings.from_environ(self._env(**{name: value}))

    def test_import_time_reader_defaults_to_classic_and_rejects_typos(self):
        assert selected_servicebus_settlement({}) is ServiceBusSettlement.CLASSIC
        assert selected_servicebus_settlement({"PREPOST_SERVICEBUS_SETTLEMENT": " explicit "}) is (
            ServiceBusSettlement.EXPLICIT
        )
        with pytest.raises(SettingsError, match="PREPOST_SERVICEBUS_SETTLEMENT"):
            selected_servicebus_settlement({"PREPOST_SERVICEBUS_SETTLEMENT": "explicitly"})


def test_a_grace_beyond_a_day_is_refused():
    """A grace of 99999999 minutes would keep a suppression rule alive for centuries."""
    assert "at most 1440 minutes" in problems(env(SUPPRESSION_GRACE_MINUTES="99999999"))
    assert Settings.from_environ(env(SUPPRESSION_GRACE_MINUTES="1440")).suppression_grace == timedelta(days=1)
