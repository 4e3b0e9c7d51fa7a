"""Pre and post scripts kept as blobs in the ``prepost-hooks`` container of the app's storage account.

The app reads them with its own identity (``AzureWebJobsStorage``: a connection string, or
managed identity with Storage Blob Data Reader) and sends their text inline, so the machines
need no access to the account. Scripts are small and change rarely; each is read once per
task that begins it, so a changed blob takes effect at the next script begun.
"""

from __future__ import annotations

import threading
from typing import Any

from shared.errors import PermanentError, Throttled, TransientError
from shared.names import HOOKS_CONTAINER
from shared.ports.scripts import ScriptNotFound, ScriptStore
from shared.settings import StorageConnection

MAX_SCRIPT_BYTES = 256 * 1024
"""Larger scripts are refused with a clear error rather than sent inline in an ARM request body."""


class BlobScriptStore(ScriptStore):
    def __init__(self, connection: StorageConnection, container: str = HOOKS_CONTAINER):
        self._connection = connection
        self._container_name = container
        self._container: Any = None
        self._lock = threading.Lock()

    def _client(self):
        with self._lock:
            if self._container is None:
                from azure.storage.blob import ContainerClient

                options = {"retry_total": 2, "connection_timeout": 5, "read_timeout": 30}
                if self._connection.connection_string:
                    self._container = ContainerClient.from_connection_string(
                        self._connection.connection_string, self._container_name, **options
                    )
                else:
                    from azure.identity import DefaultAzureCredential

                    self._container = ContainerClient(
                        self._connection.service_url("blob"),
                        self._container_name,
                        credential=DefaultAzureCredential(),
                        **options,
                    )
            return self._container

    def get_script(self, name: str) -> str:
        from azure.core.exceptions import HttpResponseError, ResourceNotFoundError, ServiceRequestError

        where = f"container {self._container_name} of the app's storage account"
        try:
            blob = self._client().get_blob_client(name)
            size = blob.get_blob_properties().size
            if size > MAX_SCRIPT_BYTES:
                raise PermanentError(f"script {name} is {size:,} bytes; at most {MAX_SCRIPT_BYTES:,} are sent inline")
            data = blob.download_blob().readall()
        except ResourceNotFoundError as error:
            raise ScriptNotFound(f"script {name} not found in {where}") from error
        except ServiceRequestError as error:
            raise TransientError(f"reading script {name}: {error}") from error
        except HttpResponseError as error:
            status = error.status_code or 0
            if status in (429, 503):
                raise Throttled(f"reading script {name}: HTTP {status}") from error
            if status >= 500:
                raise TransientError(f"reading script {name}: HTTP {status}") from error
            raise PermanentError(
                f"reading script {name} from {where}: HTTP {status} (check the app's Storage Blob Data Reader role)"
            ) from error
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as error:
            raise PermanentError(f"script {name} is not UTF-8 text") from error
