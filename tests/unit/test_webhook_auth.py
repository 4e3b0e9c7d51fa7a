"""Webhook targets and keys for send-event and replay: never a key on the command line,
never plain HTTP to another machine."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from prepost.cli import main
from prepost.local.delivery import deliver
from prepost.webhook_auth import KEY_HEADER, TargetRefused, check_target, webhook_key
from shared.names import EVENTGRID_KEY_ENV

REMOTE = "https://app.azurewebsites.net/runtime/webhooks/eventgrid?functionName=maintenance_event_intake"


@pytest.mark.parametrize(
    "url",
    [
        REMOTE + "&code=s3cr3t",
        "https://app.azurewebsites.net/runtime/webhooks/eventgrid?CODE=s3cr3t",
        "http://localhost:7071/runtime/webhooks/EventGrid?code=s3cr3t",
    ],
)
def test_a_key_in_the_url_is_refused_with_where_to_put_it(url):
    with pytest.raises(TargetRefused, match=EVENTGRID_KEY_ENV):
        check_target(url)


@pytest.mark.parametrize(
    "url", ["http://app.azurewebsites.net/runtime/webhooks/eventgrid", "http://127.example.com:7071", "http://10.0.0.4"]
)
def test_plain_http_to_another_machine_is_refused(url):
    with pytest.raises(TargetRefused, match="https"):
        check_target(url)


@pytest.mark.parametrize("url", ["http://localhost:7071", "http://127.0.0.1:7071/x", "http://[::1]:7071", REMOTE])
def test_loopback_over_http_and_anything_over_https_are_accepted(url):
    check_target(url)


def test_the_key_comes_from_the_environment_first():
    assert webhook_key(REMOTE, env={EVENTGRID_KEY_ENV: " k3y "}, prompt=lambda _: "asked") == "k3y"


def test_a_remote_target_without_a_key_asks_for_one_or_says_which_variable_to_set():
    asked = []
    assert webhook_key(REMOTE, env={}, prompt=lambda text: asked.append(text) or "typed") == "typed"
    assert "app.azurewebsites.net" in asked[0]
    with pytest.raises(TargetRefused, match=EVENTGRID_KEY_ENV):
        webhook_key(REMOTE, env={})  # pytest's stdin is no terminal: nobody to ask


def test_loopback_needs_no_key():
    assert webhook_key("http://localhost:7071", env={}) is None


class _Recorder(BaseHTTPRequestHandler):
    seen: list[tuple[str, str | None]] = []

    def do_POST(self):  # noqa: N802 (http.server's naming)
        self.rfile.read(int(self.headers["Content-Length"]))
        type(self).seen.append((self.path, self.headers.get(KEY_HEADER)))
        body = json.dumps({"ok": True}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook():
    _Recorder.seen = []
    server = HTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _Recorder.seen
    server.shutdown()
    server.server_close()


def test_the_key_travels_in_a_header_and_never_in_the_url(webhook):
    url, seen = webhook
    assert deliver(url, [{"id": "1"}], key="k3y").ok
    path, key = seen[0]
    assert key == "k3y"
    assert "k3y" not in path and "code" not in path.lower()


def test_send_event_refuses_a_key_on_the_command_line_without_sending(webhook, capsys, tmp_path):
    url, seen = webhook
    events = tmp_path / "events.json"
    events.write_text(json.dumps([{"id": "1"}]))

    code = main(["send-event", "--file", str(events), "--to", f"{url}/runtime/webhooks/EventGrid?code=k3y"])

    err = capsys.readouterr().err
    assert code != 0
    assert EVENTGRID_KEY_ENV in err and "k3y" not in err
    assert "Traceback" not in err
    assert seen == []


def test_send_event_delivers_with_the_key_from_the_environment(webhook, monkeypatch, tmp_path):
    url, seen = webhook
    events = tmp_path / "events.json"
    events.write_text(json.dumps([{"id": "1"}]))
    monkeypatch.setenv(EVENTGRID_KEY_ENV, "k3y")

    main(["send-event", "--file", str(events), "--to", url])

    assert seen and seen[0][1] == "k3y"


def test_delivery_itself_refuses_a_remote_target_without_a_key(monkeypatch):
    monkeypatch.delenv(EVENTGRID_KEY_ENV, raising=False)
    with pytest.raises(TargetRefused, match=EVENTGRID_KEY_ENV):
        deliver(REMOTE, [{"id": "1"}])


def test_delivery_takes_the_key_from_the_environment_when_none_is_given(webhook, monkeypatch):
    url, seen = webhook
    monkeypatch.setenv(EVENTGRID_KEY_ENV, "from-env")
    assert deliver(url, [{"id": "1"}]).ok
    assert seen[0][1] == "from-env"
