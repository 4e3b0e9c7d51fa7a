"""Typed application settings, read from the environment once and validated.

An explicit argument beats the environment: every use case takes what it needs as parameters,
and only the bootstrap calls :func:`get_settings`.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from enum import Enum
from functools import cache
from typing import TYPE_CHECKING

from shared.errors import SettingsError
from shared.names import SERVICEBUS_CONNECTION, STORAGE_CONNECTION, SettingName

if TYPE_CHECKING:
    from shared.models.policy import RunPolicy

AZURE_RESOURCE_MANAGER = "https://management.azure.com"
MAX_SETTING_MINUTES = 24 * 60
"""The largest grace or margin a setting may give: a day (the same bound as the policy tag's)."""


class Transport(str, Enum):
    """Which service carries plans and VM tasks. Monitoring and outcomes always use Storage queues."""

    STORAGE = "storage"
    SERVICEBUS = "servicebus"


class ServiceBusSettlement(str, Enum):
    """How Service Bus messages are settled (docs/servicebus.md, "Settlement")."""

    EXPLICIT = "explicit"
    """SDK-type binding with ``ServiceBusMessageActions``: permanent failures are dead-lettered."""
    CLASSIC = "classic"
    """Classic binding: the host completes on return; permanent failures are parked in Storage."""


DEFAULT_SETTLEMENT = ServiceBusSettlement.CLASSIC
"""Classic by default: a Python worker without the settlement client fails to index an app that
declares ``ServiceBusMessageActions``, every function with it, the Event Grid intake included
(docs/servicebus.md, "Which workers load explicit settlement"). Explicit is an opt-in."""


class ArmAuth(str, Enum):
    """How the management clients authenticate."""

    AZURE = "azure"
    """DefaultAzureCredential (managed identity in Azure, developer login locally)."""
    SIMULATOR = "simulator"
    """A static token over plain HTTP, for the loopback management-API simulator only."""


@dataclass(frozen=True)
class AllowList:
    """A case-insensitive allow-list; ``*`` allows everything."""

    values: frozenset[str] = field(default_factory=frozenset)
    allow_all: bool = False

    @classmethod
    def parse(cls, raw: str) -> AllowList:
        items = [part.strip() for part in raw.replace(";", ",").split(",") if part.strip()]
        if "*" in items:
            return cls(allow_all=True)
        return cls(values=frozenset(item.lower() for item in items))

    def allows(self, value: str) -> bool:
        return self.allow_all or value.lower() in self.values

    def describe(self) -> str:
        return "*" if self.allow_all else ", ".join(sorted(self.values)) or "(empty)"


@dataclass(frozen=True)
class StorageConnection:
    """Either a connection string (Azurite, keys) or an account reached with a managed identity."""

    connection_string: str | None = None
    account_name: str | None = None

    def service_url(self, service: str) -> str:
        """``https://ACCOUNT.SERVICE.core.windows.net`` for identity-based connections."""
        if not self.account_name:
            raise SettingsError("storage account name is needed for identity-based connections")
        return f"https://{self.account_name}.{service}.core.windows.net"


@dataclass(frozen=True)
class ServiceBusConnection:
    """A connection string, or a fully qualified namespace reached with a managed identity."""

    connection_string: str | None = None
    fully_qualified_namespace: str | None = None


@dataclass(frozen=True)
class Settings:
    storage: StorageConnection
    allowed_configurations: AllowList
    allowed_subscriptions: AllowList
    transport: Transport = Transport.STORAGE
    servicebus: ServiceBusConnection | None = None
    arm_endpoint: str = AZURE_RESOURCE_MANAGER
    arm_auth: ArmAuth = ArmAuth.AZURE
    suppression_grace: timedelta = timedelta(minutes=60)
    cancel_margin: timedelta = timedelta(minutes=2)
    max_task_attempts: int = 8
    suppression_resource_group: str | None = None
    servicebus_settlement: ServiceBusSettlement = DEFAULT_SETTLEMENT
    operation_check_interval: timedelta = timedelta(seconds=20)
    """How long after starting a long Azure operation (VM start, snapshot) its task looks again."""
    telemetry: bool = False
    """PREPOST_TELEMETRY=on with an Application Insights connection string: OpenTelemetry export."""
    arm_buckets: Mapping[str, tuple[int, float]] = field(default_factory=dict)
    """ARM token buckets the rate control models, by class (``reads``...): (capacity, refill per
    second). Empty: Azure's published sizes. Free and trial subscriptions may have smaller ones."""
    readiness_configurations: tuple[str, ...] = ()
    """Configurations the readiness timer checks every day (docs/preflight.md); none by default."""
    policy_defaults: RunPolicy = field(default_factory=lambda: _default_policy())
    """The gate's defaults where a configuration has no tag: error budget, safety-critical work,
    whether to cancel at all (docs/policy.md)."""

    @classmethod
    def from_environ(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read and validate every setting; raise :class:`SettingsError` naming each problem."""
        env = os.environ if env is None else env
        problems: list[str] = []

        def text(name: str, default: str | None = None) -> str | None:
            value = env.get(name)
            return value.strip() if value and value.strip() else default

        def minutes(name: SettingName, default: int, maximum: int = MAX_SETTING_MINUTES) -> timedelta:
            raw = text(name.value)
            if raw is None:
                return timedelta(minutes=default)
            try:
                value = int(raw)
            except ValueError:
                problems.append(f"{name.value} must be a whole number of minutes, got {raw!r}")
                return timedelta(minutes=default)
            if value < 0:
                problems.append(f"{name.value} must not be negative, got {value}")
            elif value > maximum:
                problems.append(f"{name.value} must be at most {maximum} minutes, got {value}")
                return timedelta(minutes=default)
            return timedelta(minutes=value)

        storage = StorageConnection(
            connection_string=text(STORAGE_CONNECTION),
            account_name=text(f"{STORAGE_CONNECTION}__accountName"),
        )
        if not storage.connection_string and not storage.account_name:
            problems.append(
                f"{STORAGE_CONNECTION} (connection string) or {STORAGE_CONNECTION}__accountName "
                "(managed identity) must be set"
            )

        allow_lists = {}
        for name in (SettingName.ALLOWED_CONFIGURATIONS, SettingName.ALLOWED_SUBSCRIPTIONS):
            raw = text(name.value)
            if raw is None:
                # Safety: no default allow-list. An operator states what prepost may touch.
                problems.append(f"{name.value} must be set: a comma-separated list, or * for any")
                allow_lists[name] = AllowList()
            else:
                allow_lists[name] = AllowList.parse(raw)
        subscriptions = allow_lists[SettingName.ALLOWED_SUBSCRIPTIONS]
        for value in subscriptions.values:
            if not _is_guid(value):
                problems.append(f"{SettingName.ALLOWED_SUBSCRIPTIONS.value}: {value!r} is not a subscription id")

        transport_raw = text(SettingName.TRANSPORT.value, Transport.STORAGE.value).lower()
        try:
            transport = Transport(transport_raw)
        except ValueError:
            problems.append(f"{SettingName.TRANSPORT.value} must be 'storage' or 'servicebus', got {transport_raw!r}")
            transport = Transport.STORAGE

        servicebus = None
        sb_string = text(SERVICEBUS_CONNECTION)
        sb_namespace = text(f"{SERVICEBUS_CONNECTION}__fullyQualifiedNamespace")
        if sb_string or sb_namespace:
            servicebus = ServiceBusConnection(sb_string, sb_namespace)
        elif transport is Transport.SERVICEBUS:
            problems.append(
                f"{SettingName.TRANSPORT.value}=servicebus needs {SERVICEBUS_CONNECTION} or "
                f"{SERVICEBUS_CONNECTION}__fullyQualifiedNamespace"
            )

        arm_auth_raw = text(SettingName.ARM_AUTH.value, ArmAuth.AZURE.value).lower()
        try:
            arm_auth = ArmAuth(arm_auth_raw)
        except ValueError:
            problems.append(f"{SettingName.ARM_AUTH.value} must be 'azure' or 'simulator', got {arm_auth_raw!r}")
            arm_auth = ArmAuth.AZURE
        arm_endpoint = text(SettingName.ARM_ENDPOINT.value, AZURE_RESOURCE_MANAGER).rstrip("/")
        if arm_auth is ArmAuth.SIMULATOR and not is_loopback(arm_endpoint):
            # A static token must never be sent anywhere but the local simulator.
            problems.append(f"{SettingName.ARM_AUTH.value}=simulator needs a loopback {SettingName.ARM_ENDPOINT.value}")
        if arm_auth is ArmAuth.AZURE and not arm_endpoint.startswith("https://"):
            problems.append(f"{SettingName.ARM_ENDPOINT.value} must be https with {SettingName.ARM_AUTH.value}=azure")

        attempts_raw = text(SettingName.MAX_TASK_ATTEMPTS.value, "8")
        try:
            max_attempts = int(attempts_raw)
            if not 1 <= max_attempts <= 50:
                raise ValueError
        except ValueError:
            problems.append(f"{SettingName.MAX_TASK_ATTEMPTS.value} must be a whole number from 1 to 50")
            max_attempts = 8

        settlement_raw = text(SettingName.SERVICEBUS_SETTLEMENT.value, DEFAULT_SETTLEMENT.value).lower()
        try:
            settlement = ServiceBusSettlement(settlement_raw)
        except ValueError:
            problems.append(
                f"{SettingName.SERVICEBUS_SETTLEMENT.value} must be 'explicit' or 'classic', got {settlement_raw!r}"
            )
            settlement = DEFAULT_SETTLEMENT

        check_raw = text(SettingName.OPERATION_CHECK_SECONDS.value, "20")
        try:
            check_seconds = int(check_raw)
            if not 1 <= check_seconds <= 600:
                raise ValueError
        except ValueError:
            problems.append(f"{SettingName.OPERATION_CHECK_SECONDS.value} must be a whole number from 1 to 600")
            check_seconds = 20

        from shared.observability.telemetry import telemetry_wanted

        try:
            telemetry = telemetry_wanted(env)
        except SettingsError as error:
            problems.append(str(error))
            telemetry = False
        arm_buckets = _arm_buckets(text(SettingName.ARM_BUCKETS.value), problems)
        policy_defaults = _policy_defaults(text, problems)
        readiness = tuple(
            part.strip()
            for part in (text(SettingName.READINESS_CONFIGURATIONS.value, "") or "").replace(";", ",").split(",")
            if part.strip()
        )
        for configuration_id in readiness:
            if not configuration_id.lower().startswith("/subscriptions/"):
                problems.append(
                    f"{SettingName.READINESS_CONFIGURATIONS.value}: {configuration_id!r} is not a configuration id"
                )

        settings = cls(
            storage=storage,
            allowed_configurations=allow_lists[SettingName.ALLOWED_CONFIGURATIONS],
            allowed_subscriptions=subscriptions,
            transport=transport,
            servicebus=servicebus,
            arm_endpoint=arm_endpoint,
            arm_auth=arm_auth,
            suppression_grace=minutes(SettingName.SUPPRESSION_GRACE_MINUTES, 60),
            cancel_margin=minutes(SettingName.CANCEL_MARGIN_MINUTES, 2),
            max_task_attempts=max_attempts,
            suppression_resource_group=text(SettingName.SUPPRESSION_RESOURCE_GROUP.value),
            servicebus_settlement=settlement,
            operation_check_interval=timedelta(seconds=check_seconds),
            telemetry=telemetry,
            arm_buckets=arm_buckets,
            policy_defaults=policy_defaults,
            readiness_configurations=readiness,
        )
        if problems:
            raise SettingsError("invalid settings: " + "; ".join(problems))
        return settings


ARM_BUCKET_CLASSES = ("reads", "writes", "deletes")


def _arm_buckets(raw: str | None, problems: list[str]) -> dict[str, tuple[int, float]]:
    """``reads=250/25,writes=200/10``: capacity/refill-per-second for any of the three classes."""
    buckets: dict[str, tuple[int, float]] = {}
    for item in (raw or "").replace(";", ",").split(","):
        if not item.strip():
            continue
        name, _, value = item.partition("=")
        capacity, _, refill = value.partition("/")
        try:
            parsed = (int(capacity), float(refill))
            if name.strip().lower() not in ARM_BUCKET_CLASSES or parsed[0] < 1 or not 0 < parsed[1] <= 10_000:
                raise ValueError
        except ValueError:
            problems.append(
                f"{SettingName.ARM_BUCKETS.value}: {item.strip()!r} is not CLASS=CAPACITY/REFILL_PER_SECOND "
                f"with CLASS one of {', '.join(ARM_BUCKET_CLASSES)}"
            )
            continue
        buckets[name.strip().lower()] = parsed
    return buckets
def read_policy_defaults(env: Mapping[str, str] | None = None) -> RunPolicy:
    """The gate's defaults alone (for tools that need no other setting); raises SettingsError."""
    env = os.environ if env is None else env
    problems: list[str] = []

    def text(name: str, default: str | None = None) -> str | None:
        value = env.get(name)
        return value.strip() if value and value.strip() else default

    defaults = _policy_defaults(text, problems)
    if problems:
        raise SettingsError("invalid settings: " + "; ".join(problems))
    return defaults


def _default_policy() -> RunPolicy:
    # Imported here, not at the top: function_app imports this module to pick its triggers, and
    # the policy models (and the gate's, and the events' they pull in) are not needed for that.
    from shared.models.policy import RunPolicy

    return RunPolicy()


def _policy_defaults(text, problems: list[str]) -> RunPolicy:
    from shared.models.gate import ErrorBudget
    from shared.models.policy import parse_safety_critical

    defaults = _default_policy()
    max_errors = text(SettingName.MAX_ERRORS.value, defaults.max_errors)
    try:
        max_errors = str(ErrorBudget.parse(max_errors))
    except ValueError as error:
        problems.append(f"{SettingName.MAX_ERRORS.value}: {error}")
        max_errors = defaults.max_errors
    critical = defaults.safety_critical
    raw_critical = text(SettingName.SAFETY_CRITICAL.value)
    if raw_critical is not None:
        try:
            critical = parse_safety_critical(raw_critical)
        except ValueError as error:
            problems.append(f"{SettingName.SAFETY_CRITICAL.value}: {error}")
    cancel_raw = (text(SettingName.CANCEL_ON_FAILURE.value, "true") or "true").lower()
    if cancel_raw not in {"true", "false"}:
        problems.append(f"{SettingName.CANCEL_ON_FAILURE.value} must be true or false, got {cancel_raw!r}")
    return replace(defaults, max_errors=max_errors, safety_critical=critical, cancel_on_failure=cancel_raw != "false")


def selected_transport(env: Mapping[str, str] | None = None) -> Transport:
    """The transport alone, read at import time to choose which triggers to register."""
    env = os.environ if env is None else env
    raw = (env.get(SettingName.TRANSPORT.value) or Transport.STORAGE.value).strip().lower()
    try:
        return Transport(raw)
    except ValueError as error:
        raise SettingsError(f"{SettingName.TRANSPORT.value} must be 'storage' or 'servicebus', got {raw!r}") from error


def selected_servicebus_settlement(env: Mapping[str, str] | None = None) -> ServiceBusSettlement:
    """The Service Bus settlement alone, read at import time: it decides the trigger's binding type."""
    env = os.environ if env is None else env
    raw = (env.get(SettingName.SERVICEBUS_SETTLEMENT.value) or DEFAULT_SETTLEMENT.value).strip().lower()
    try:
        return ServiceBusSettlement(raw)
    except ValueError as error:
        raise SettingsError(
            f"{SettingName.SERVICEBUS_SETTLEMENT.value} must be 'explicit' or 'classic', got {raw!r}"
        ) from error


@cache
def get_settings() -> Settings:
    """The process-wide settings, read once on first use (not at import: cold start)."""
    return Settings.from_environ()


def _is_guid(value: str) -> bool:
    # uuid.UUID() ignores hyphens, so a length check alone lets misplaced hyphens through;
    # such an entry would never match the canonical ids events carry.
    try:
        return len(value) == 36 and str(uuid.UUID(value)) == value.lower()
    except ValueError:
        return False


def is_loopback(url: str) -> bool:
    """True when ``url``'s host is ``localhost`` or a loopback IP literal (never a DNS name)."""
    import ipaddress
    from urllib.parse import urlparse

    host = urlparse(url).hostname or ""
    if host == "localhost":
        return True
    try:
        # An IP literal only: a DNS name such as 127.example.com is not loopback.
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
