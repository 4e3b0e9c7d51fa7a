"""Sample pre and post scripts (the worked example of docs/hooks.md) and their upload to the
``prepost-hooks`` container, for the local stack, the demo and the chaos drill."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping

from shared.names import HOOKS_CONTAINER

SAMPLE_SCRIPTS: dict[str, str] = {
    "nginx/stop.sh": (
        "#!/bin/sh\nset -eu\nsystemctl stop nginx\n"
        'systemctl is-active --quiet nginx && { echo "nginx still active" >&2; exit 2; }\necho "nginx stopped"\n'
    ),
    "nginx/start-and-check.sh": (
        "#!/bin/sh\nset -eu\nsystemctl start nginx\n"
        'curl --fail --silent --show-error --max-time 10 http://127.0.0.1/ > /dev/null\necho "nginx answers"\n'
    ),
    "iis/stop-pool.ps1": "Import-Module WebAdministration\nStop-WebAppPool -Name shop\n",
    "iis/start-pool.ps1": (
        "Import-Module WebAdministration\nStart-WebAppPool -Name shop\n"
        "if ((Get-WebAppPoolState -Name shop).Value -ne 'Started') { exit 1 }\n"
    ),
}
SAMPLE_HOOK_TAGS: dict[str, str] = {
    "prepost-hook-pre-linux": "nginx/stop.sh",
    "prepost-hook-post-linux": "nginx/start-and-check.sh",
    "prepost-hook-pre-windows": "iis/stop-pool.ps1",
    "prepost-hook-post-windows": "iis/start-pool.ps1",
    "prepost-hook-timeout-seconds": "120",
}
"""Configuration tags that declare :data:`SAMPLE_SCRIPTS`."""


def upload_scripts(connection_string: str, scripts: Mapping[str, str] = SAMPLE_SCRIPTS) -> None:
    """Create the container if needed and upload (overwrite) ``scripts``."""
    from azure.core.exceptions import ResourceExistsError
    from azure.storage.blob import BlobServiceClient

    with BlobServiceClient.from_connection_string(connection_string) as service:
        container = service.get_container_client(HOOKS_CONTAINER)
        with contextlib.suppress(ResourceExistsError):
            container.create_container()
        for name, text in scripts.items():
            container.upload_blob(name, text.encode("utf-8"), overwrite=True)
