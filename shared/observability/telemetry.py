"""OpenTelemetry export to Application Insights, behind a setting.

Off unless ``PREPOST_TELEMETRY`` is ``on`` **and** ``APPLICATIONINSIGHTS_CONNECTION_STRING`` is
set: the Azure Monitor distro (``azure-monitor-opentelemetry``) then sends the ``shared.*``
logs with their dimensions, and the metrics of :mod:`shared.observability.metrics`. When off,
nothing of OpenTelemetry is imported, so cold start pays nothing for it.
https://learn.microsoft.com/azure/azure-monitor/app/opentelemetry-enable?tabs=python
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from shared.errors import SettingsError
from shared.names import SettingName

CONNECTION_STRING = "APPLICATIONINSIGHTS_CONNECTION_STRING"
"""Set by the platform when the app has Application Insights (infra/ sets it)."""
AUTHENTICATION_STRING = "APPLICATIONINSIGHTS_AUTHENTICATION_STRING"
"""``Authorization=AAD`` (optionally ``;ClientId=...``): telemetry is sent with a managed identity."""
LOGGER = "shared"
"""The logger tree exported: the use cases, adapters and handlers (not the worker's own logs,
which the Functions host already sends)."""
_ON, _OFF = ("on", "true", "1", "yes"), ("off", "false", "0", "no", "")

_enabled = False


def telemetry_wanted(env: Mapping[str, str] | None = None) -> bool:
    """True when the setting is on and there is a connection string; raises on a value that is neither."""
    env = os.environ if env is None else env
    raw = (env.get(SettingName.TELEMETRY.value) or "").strip().lower()
    if raw not in _ON + _OFF:
        raise SettingsError(f"{SettingName.TELEMETRY.value} must be 'on' or 'off', got {raw!r}")
    return raw in _ON and bool((env.get(CONNECTION_STRING) or "").strip())


def configure_telemetry(env: Mapping[str, str] | None = None) -> bool:
    """Start the Azure Monitor exporter when wanted; returns whether telemetry is on. Idempotent."""
    global _enabled
    if _enabled:
        return True
    if not telemetry_wanted(env):
        return False
    from azure.monitor.opentelemetry import configure_azure_monitor

    env = os.environ if env is None else env
    options = {}
    if "authorization=aad" in (env.get(AUTHENTICATION_STRING) or "").lower():
        # The component accepts Entra ID tokens only (infra/ turns local auth off): the exporter
        # sends with the app's managed identity, as the Functions host does for its own telemetry.
        from azure.identity import ManagedIdentityCredential

        client_id = _client_id(env[AUTHENTICATION_STRING])
        options["credential"] = (
            ManagedIdentityCredential(client_id=client_id) if client_id else ManagedIdentityCredential()
        )
    configure_azure_monitor(connection_string=env[CONNECTION_STRING], logger_name=LOGGER, **options)
    _enabled = True
    logging.getLogger(__name__).info("OpenTelemetry export to Application Insights is on")
    return True


def telemetry_enabled() -> bool:
    """Whether :func:`configure_telemetry` turned the export on in this process."""
    return _enabled


def _client_id(authentication: str) -> str | None:
    for part in authentication.split(";"):
        name, _, value = part.partition("=")
        if name.strip().lower() == "clientid" and value.strip():
            return value.strip()
    return None
