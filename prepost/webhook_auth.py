"""Where ``send-event`` and ``replay events`` may deliver, and the key they deliver with.

A deployed app's Event Grid webhook wants its system key. On the command line (``--to
...&code=KEY``) the key would sit in the shell history and in every other user's process list,
so a ``code`` in the URL is refused; the key comes from ``PREPOST_EVENTGRID_KEY`` or, in an
interactive terminal, from a prompt that does not echo it. It travels in the ``x-functions-key``
header, which Functions accepts as well as the ``code`` query parameter
(https://learn.microsoft.com/azure/azure-functions/function-keys-how-to). Events and the key go
over HTTPS to anything that is not this machine.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from urllib.parse import parse_qsl, urlparse

from shared.names import EVENTGRID_KEY_ENV
from shared.settings import is_loopback

KEY_HEADER = "x-functions-key"


class TargetRefused(ValueError):
    """The webhook URL carries a key, or is plain HTTP to another machine."""


def check_target(url: str) -> None:
    """Raise :class:`TargetRefused` for a URL with a ``code`` parameter, or ``http://`` off loopback."""
    parsed = urlparse(url)
    if any(name.lower() == "code" for name, _ in parse_qsl(parsed.query, keep_blank_values=True)):
        raise TargetRefused(
            "the webhook URL carries a key (code=...): command lines are visible in the process list and the "
            f"shell history. Remove it from the URL and set {EVENTGRID_KEY_ENV}, or run interactively to be asked"
        )
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise TargetRefused(f"not a webhook URL: {parsed.scheme or '(no scheme)'}://{parsed.hostname or ''}")
    if parsed.scheme != "https" and not is_loopback(url):
        raise TargetRefused(f"{parsed.hostname} is not this machine: events and the key go there over https:// only")


def webhook_key(
    url: str,
    *,
    env: Mapping[str, str] | None = None,
    prompt: Callable[[str], str] | None = None,
) -> str | None:
    """The key to deliver to ``url`` with, after :func:`check_target`.

    ``PREPOST_EVENTGRID_KEY`` when set; else, for a target that is not loopback, the answer to
    ``prompt`` (by default a non-echoing prompt when stdin is a terminal). A loopback host
    (``func start``, the local stack) needs no key. Raises :class:`TargetRefused` when a remote
    target has no key and there is no terminal to ask in.
    """
    check_target(url)
    env = os.environ if env is None else env
    key = (env.get(EVENTGRID_KEY_ENV) or "").strip()
    if key:
        return key
    if is_loopback(url):
        return None
    if prompt is None and sys.stdin is not None and sys.stdin.isatty():
        from getpass import getpass

        prompt = getpass
    if prompt is None:
        raise TargetRefused(f"{urlparse(url).hostname} needs the Event Grid system key: set {EVENTGRID_KEY_ENV}")
    key = prompt(f"Event Grid system key for {urlparse(url).hostname}: ").strip()
    if not key:
        raise TargetRefused(f"no key for {urlparse(url).hostname}: set {EVENTGRID_KEY_ENV}")
    return key
