"""Storage that answers but refuses: the command's one line and exit code, against Azurite."""

from __future__ import annotations

import pytest

from prepost.cli import EXIT_AUTH, EXIT_AZURE, EXIT_OK, EXIT_USAGE, main

pytestmark = pytest.mark.integration

WRONG_KEY = "d3JvbmcgYWNjb3VudCBrZXkgZm9yIHRoaXMgdGVzdCwgbm90IGEgc2VjcmV0IGF0IGFsbA=="


@pytest.fixture
def no_local_stack(tmp_path, monkeypatch):
    monkeypatch.setenv("PREPOST_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("AzureWebJobsStorage", raising=False)


def _with_key(connection_string: str, key: str) -> str:
    parts = [part for part in connection_string.split(";") if part and not part.startswith("AccountKey=")]
    return ";".join([*parts, f"AccountKey={key}"])


@pytest.mark.parametrize("argv", [["runs", "list"], ["events", "list"], ["poison", "list"]])
def test_a_wrong_account_key_is_refused_access_in_one_line(argv, azurite, no_local_stack, capsys):
    wrong = _with_key(azurite.endpoints.connection_string, WRONG_KEY)
    assert main([*argv, "--storage", wrong]) == EXIT_AUTH
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.count("\n") == 1, err
    assert err.startswith("prepost: ") and "access denied (HTTP 403" in err


def test_the_right_key_still_works(azurite, no_local_stack, capsys):
    from shared.adapters.storage_clients import ensure_storage
    from shared.settings import StorageConnection

    ensure_storage(StorageConnection(connection_string=azurite.endpoints.connection_string))
    assert main(["runs", "list", "--storage", azurite.endpoints.connection_string]) == EXIT_OK
    assert capsys.readouterr().err == ""


def test_an_account_without_the_tables_is_named_as_such(no_local_stack, capsys):
    from prepost.local.azurite import AzuriteProcess

    empty = AzuriteProcess()
    empty.start()
    try:
        for argv in (["runs", "list"], ["events", "list"]):
            assert main([*argv, "--storage", empty.endpoints.connection_string]) == EXIT_USAGE
            assert capsys.readouterr().err == (
                "prepost: this storage account has no prepost tables: is it the function app's storage "
                "(AzureWebJobsStorage), and has the app run there yet?\n"
            )
    finally:
        empty.stop()


def test_a_missing_container_names_it(azurite, no_local_stack, capsys):
    argv = ["replay", "events", "--container", "no-such-container", "--dry-run"]
    code = main([*argv, "--storage", azurite.endpoints.connection_string])
    err = capsys.readouterr().err
    assert code != EXIT_OK and code != EXIT_AZURE
    assert err == "prepost: container no-such-container does not exist in this storage account\n"
