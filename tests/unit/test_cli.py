"""The ``prepost`` command itself: its parser tree, --version, and Azure errors as one line and an exit code."""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys

import pytest
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
)
from azure.servicebus.exceptions import ServiceBusAuthenticationError, ServiceBusConnectionError

from prepost.cli import (
    EXIT_AUTH,
    EXIT_AZURE,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    GROUPS,
    AzureFailure,
    build_parser,
    main,
)
from prepost.cli.errors import describe

AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def _walk(parser: argparse.ArgumentParser, path: tuple[str, ...]):
    """Every (command path, action) of the tree, and every (path, subcommand name, its help)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help for choice in action._choices_actions}
            for name, sub in action.choices.items():
                yield path, f"subcommand {name}", helps.get(name)
                yield from _walk(sub, (*path, name))
        else:
            yield path, "/".join(action.option_strings) or action.dest, action.help


def test_every_option_and_subcommand_has_help():
    tree = list(_walk(build_parser(), ("prepost",)))
    missing = [f"{' '.join(path)}: {name}" for path, name, text in tree if not text or text == argparse.SUPPRESS]
    assert len(tree) > 100  # the walk reached the leaves
    assert missing == []


def test_every_group_module_registers_something():
    import importlib

    for group in GROUPS:
        commands = argparse.ArgumentParser().add_subparsers()
        importlib.import_module(group).add_parser(commands)
        assert commands.choices, f"{group} added no command"


def test_version_prints_the_package_version(capsys):
    from importlib.metadata import version

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"prepost {version('prepost')}"


def test_python_dash_m_runs_the_package():
    done = subprocess.run([sys.executable, "-m", "prepost.cli", "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    assert "send-event" in done.stdout and "exit codes" in done.stdout


def _refused_port() -> int:
    """A local port nobody listens on: bound to learn a free number, then closed."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _unreachable_storage() -> tuple[str, int]:
    port = _refused_port()
    endpoint = f"http://127.0.0.1:{port}/devstoreaccount1"
    return (
        f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={AZURITE_KEY};"
        f"BlobEndpoint={endpoint};QueueEndpoint={endpoint};TableEndpoint={endpoint}",
        port,
    )


@pytest.fixture
def no_local_stack(tmp_path, monkeypatch):
    monkeypatch.setenv("PREPOST_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("AzureWebJobsStorage", raising=False)


@pytest.mark.parametrize(
    "argv",
    [
        ["runs", "list"],
        ["runs", "show", "some-run"],
        ["events", "list"],
        ["poison", "list"],
        ["replay", "poison", "prepost-vm-tasks", "--dry-run"],
        ["replay", "events", "--container", "eventgrid-deadletter", "--dry-run"],
    ],
)
def test_unreachable_storage_is_one_line_and_its_own_exit_code(argv, no_local_stack, capsys):
    """The real SDK clients against a refused port: no traceback, one line that says where and why."""
    connection, port = _unreachable_storage()
    assert main([*argv, "--storage", connection]) == EXIT_AZURE
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.count("\n") == 1, err
    assert err.startswith("prepost: ")
    assert f"127.0.0.1:{port}: connection refused" in err
    assert "--debug" in err


def test_runs_list_against_unreachable_storage_in_a_process(no_local_stack, tmp_path):
    """As an operator runs it: the process's stderr is the one line, the exit code says what kind."""
    connection, port = _unreachable_storage()
    done = subprocess.run(
        [sys.executable, "-m", "prepost.cli", "runs", "list", "--storage", connection],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "PREPOST_STATE_DIR": str(tmp_path / "state")},
    )
    assert done.returncode == EXIT_AZURE
    assert done.stderr.splitlines() == [
        f"prepost: cannot reach the service: 127.0.0.1:{port}: connection refused (--debug shows the traceback)"
    ]
    assert done.stdout == ""


def test_debug_shows_the_traceback_too(no_local_stack, capsys):
    connection, port = _unreachable_storage()
    assert main(["--debug", "runs", "list", "--storage", connection]) == EXIT_AZURE
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err
    assert "ServiceRequestError" in err
    assert err.rstrip().splitlines()[-1] == f"prepost: cannot reach the service: 127.0.0.1:{port}: connection refused"


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_is_taken_before_or_after_the_command(where, no_local_stack, capsys):
    connection, _ = _unreachable_storage()
    command = ["runs", "list", "--storage", connection]
    argv = ["--debug", *command] if where == "before" else [*command, "--debug"]
    assert main(argv) == EXIT_AZURE
    assert "Traceback (most recent call last)" in capsys.readouterr().err


def test_without_debug_there_is_no_traceback_even_after_a_subcommand(no_local_stack, capsys):
    connection, _ = _unreachable_storage()
    assert main(["runs", "list", "--storage", connection]) == EXIT_AZURE
    assert "Traceback" not in capsys.readouterr().err


def test_a_usage_error_is_still_a_usage_error(no_local_stack, capsys):
    assert main(["runs", "list", "--storage", "x", "--account", "y"]) == EXIT_USAGE
    assert capsys.readouterr().err == "prepost: give either --storage or --account, not both\n"


class TestDescribe:
    def test_an_http_error_keeps_status_and_code_and_only_its_first_line(self):
        busy = "Operation returned an invalid status 'Server Busy'"
        error = HttpResponseError(message=f"{busy}\nContent: <xml/>\nHeaders")
        error.status_code, error.error_code = 503, "ServerBusy"
        assert describe(error) == (f"HTTP 503 ServerBusy: {busy}", EXIT_AZURE)

    @pytest.mark.parametrize("status", [401, 403])
    def test_refused_access_is_the_auth_exit_code(self, status):
        error = HttpResponseError(message="This request is not authorized to perform this operation.\nRequestId:1")
        error.status_code, error.error_code = status, "AuthorizationPermissionMismatch"
        line, code = describe(error)
        assert code == EXIT_AUTH
        assert line == (
            f"access denied (HTTP {status} AuthorizationPermissionMismatch): "
            "This request is not authorized to perform this operation."
        )

    def test_no_credential_is_the_auth_exit_code(self):
        from azure.identity import CredentialUnavailableError

        failed = "DefaultAzureCredential failed to retrieve a token"
        line, code = describe(CredentialUnavailableError(f"{failed}\nAttempted credentials"))
        assert (line, code) == (f"authentication failed: {failed}", EXIT_AUTH)
        assert describe(ClientAuthenticationError("Signature did not match"))[1] == EXIT_AUTH

    def test_service_bus_errors(self):
        assert describe(ServiceBusAuthenticationError(message="Unauthorized access"))[1] == EXIT_AUTH
        refused = ServiceBusConnectionError(
            message="Failed to initiate the connection due to exception: [Errno 111] Connection refused\nmore"
        )
        assert describe(refused) == ("cannot reach the service: connection refused", EXIT_AZURE)

    def test_name_resolution(self):
        error = ServiceRequestError(
            "HTTPSConnection(host='nosuch.queue.core.windows.net', port=443): Failed to resolve "
            "'nosuch.queue.core.windows.net' ([Errno -2] Name or service not known)"
        )
        assert describe(error) == (
            "cannot reach the service: nosuch.queue.core.windows.net:443: unknown host name",
            EXIT_AZURE,
        )

    def test_what_the_command_was_doing_comes_first(self):
        error = ResourceNotFoundError(message="The specified queue does not exist.\nRequestId")
        error.status_code, error.error_code = 404, "QueueNotFound"
        assert describe(AzureFailure("reading prepost-plan-poison", error)) == (
            "reading prepost-plan-poison: HTTP 404 QueueNotFound: The specified queue does not exist.",
            EXIT_AZURE,
        )

    def test_anything_else_is_not_ours_to_hide(self):
        assert describe(ValueError("a bug")) is None
        assert describe(KeyError("x")) is None


def test_exit_codes_are_distinct():
    codes = [EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_AZURE, EXIT_AUTH]
    assert len(set(codes)) == len(codes)


def test_an_unreachable_webhook_is_one_line_too(no_local_stack, capsys):
    port = _refused_port()
    assert main(["send-event", "pre", "--to", f"http://127.0.0.1:{port}"]) == EXIT_AZURE
    assert capsys.readouterr().err == (
        f"prepost: cannot reach the service: 127.0.0.1:{port}: connection refused (--debug shows the traceback)\n"
    )
