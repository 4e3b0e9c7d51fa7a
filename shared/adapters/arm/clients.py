"""One factory for every management client: endpoint, credential and pipeline in one place.

Only two things change between Azure and the local simulator, both from settings: the base
URL, and the authentication policy (a static token over loopback HTTP for the simulator, since
management clients refuse bearer tokens over plain http).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from azure.core.credentials import AccessToken
from azure.core.pipeline.policies import RetryPolicy, SansIOHTTPPolicy

from shared.adapters.arm.rate_control import ArmRatePolicy, RateControl
from shared.settings import ArmAuth

# Functions must not sleep through long Retry-After values: a 429 goes straight back to the
# use case, which re-queues the task with that delay. 5xx and connection errors get two quick
# retries here (docs/reference.md section 4: the default policy retries 10 times and sleeps).
RETRY_TOTAL = 2
RETRY_BACKOFF = 0.5
RETRY_BACKOFF_MAX = 4
CONNECTION_TIMEOUT = 10
READ_TIMEOUT = 60
POLLING_INTERVAL = 5
SCOPE = "https://management.azure.com/.default"


class NoThrottleRetryPolicy(RetryPolicy):
    """azure-core's retry policy, minus retrying 429s (which would sleep inside the function)."""

    def __init__(self, **kwargs: Any):
        super().__init__(
            retry_total=RETRY_TOTAL,
            retry_backoff_factor=RETRY_BACKOFF,
            retry_backoff_max=RETRY_BACKOFF_MAX,
            **kwargs,
        )
        self._retry_on_status_codes = set(self._retry_on_status_codes) - {429}

    def is_retry(self, settings, response):  # noqa: D102 - same contract as RetryPolicy
        if response.http_response.status_code == 429:
            return False
        return super().is_retry(settings, response)


class StaticToken:
    """A credential for the simulator: any bearer token is accepted there."""

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken("prepost-simulator", int(time.time()) + 3600)


class LoopbackBearerPolicy(SansIOHTTPPolicy):
    """Adds the static bearer token without the https check (settings allow loopback only)."""

    def on_request(self, request) -> None:
        request.http_request.headers["Authorization"] = "Bearer prepost-simulator"


class ArmClients:
    """Lazily created, reused management clients, one per (kind, subscription).

    Every client carries an :class:`ArmRatePolicy` around the same :class:`RateControl`, so all
    tasks of the instance share the subscription budgets (``shared.adapters.arm.rate_control``).
    """

    def __init__(self, endpoint: str, auth: ArmAuth, *, rate: RateControl | None = None):
        self.endpoint = endpoint.rstrip("/")
        self.auth = auth
        self.rate = rate or RateControl()
        self._clients: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()
        self._credential = None

    @property
    def credential(self):
        if self._credential is None:
            if self.auth is ArmAuth.SIMULATOR:
                self._credential = StaticToken()
            else:
                from azure.identity import DefaultAzureCredential

                self._credential = DefaultAzureCredential()
        return self._credential

    def _options(self) -> dict[str, Any]:
        options: dict[str, Any] = {
            "base_url": self.endpoint,
            "retry_policy": NoThrottleRetryPolicy(),
            "connection_timeout": CONNECTION_TIMEOUT,
            "read_timeout": READ_TIMEOUT,
            "polling_interval": POLLING_INTERVAL,
            # After the retry policy: a retried request is paced like a first one. One policy per
            # client (a pipeline links its policies to each other), all around the same state.
            "per_retry_policies": [ArmRatePolicy(self.rate)],
        }
        if self.auth is ArmAuth.SIMULATOR:
            options["authentication_policy"] = LoopbackBearerPolicy()
            options["credential_scopes"] = [SCOPE]
        return options

    def _client(self, kind: str, subscription_id: str, build) -> Any:
        key = (kind, subscription_id.lower())
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                client = build()
                self._clients[key] = client
            return client

    def compute(self, subscription_id: str):
        from azure.mgmt.compute import ComputeManagementClient

        return self._client(
            "compute",
            subscription_id,
            lambda: ComputeManagementClient(self.credential, subscription_id, **self._options()),
        )

    def maintenance(self, subscription_id: str):
        from azure.mgmt.maintenance import MaintenanceManagementClient

        return self._client(
            "maintenance",
            subscription_id,
            lambda: MaintenanceManagementClient(self.credential, subscription_id, **self._options()),
        )

    def resources(self, subscription_id: str):
        from azure.mgmt.resource.resources import ResourceManagementClient

        return self._client(
            "resources",
            subscription_id,
            lambda: ResourceManagementClient(self.credential, subscription_id, **self._options()),
        )

    def resource_graph(self):
        from azure.mgmt.resourcegraph import ResourceGraphClient

        return self._client("graph", "-", lambda: ResourceGraphClient(self.credential, **self._options()))
