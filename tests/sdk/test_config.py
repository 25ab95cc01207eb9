"""Where the SDK finds credentials and the base URL: arguments, then environment, then config files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from convoscope_sdk.config import Credentials, resolve_base_url, resolve_credentials, websocket_url
from convoscope_sdk.exceptions import ConfigurationError

APP_ID = "a" * 64
APP_SECRET = "b" * 128


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    cwd, home = tmp_path / "project", tmp_path / "home"
    cwd.mkdir()
    home.mkdir()
    return cwd, home


def _write_conf(directory: Path, name: str, app_id: str, app_secret: str, base_url: str | None = None) -> None:
    text = f"[credentials]\napp_id = {app_id}\napp_secret = {app_secret}\n"
    if base_url:
        text += f"[convoscope]\nbase_url = {base_url}\n"
    (directory / name).write_text(text)


@pytest.mark.parametrize(
    "argument",
    [
        {"app_id": APP_ID, "app_secret": APP_SECRET},  # the official SDK's form
        {"appId": APP_ID, "appSecret": APP_SECRET},  # the API's and `convoscope up`'s form
        (APP_ID, APP_SECRET),
        Credentials(APP_ID, APP_SECRET),
    ],
)
def test_argument_wins_over_everything(argument: object, dirs: tuple[Path, Path]) -> None:
    cwd, home = dirs
    _write_conf(cwd, "symbl.conf", "file-id", "file-secret")
    environ = {"CONVOSCOPE_APP_ID": "env-id", "CONVOSCOPE_APP_SECRET": "env-secret"}
    found = resolve_credentials(argument, environ=environ, cwd=cwd, home=home)  # type: ignore[arg-type]
    assert (found.app_id, found.app_secret) == (APP_ID, APP_SECRET)


@pytest.mark.parametrize(
    "argument", [{"app_id": APP_ID}, {"app_secret": APP_SECRET}, {"app_id": "", "app_secret": "x"}]
)
def test_half_a_credential_is_an_error_not_a_fallback(argument: dict[str, str], dirs: tuple[Path, Path]) -> None:
    cwd, home = dirs
    _write_conf(cwd, "symbl.conf", "file-id", "file-secret")
    with pytest.raises(ConfigurationError, match="required"):
        resolve_credentials(argument, environ={}, cwd=cwd, home=home)


def test_convoscope_environment_before_symbl_environment(dirs: tuple[Path, Path]) -> None:
    cwd, home = dirs
    environ = {"SYMBL_APP_ID": "symbl-id", "SYMBL_APP_SECRET": "symbl-secret"}
    assert resolve_credentials(environ=environ, cwd=cwd, home=home).app_id == "symbl-id"
    environ |= {"CONVOSCOPE_APP_ID": "cs-id", "CONVOSCOPE_APP_SECRET": "cs-secret"}
    found = resolve_credentials(environ=environ, cwd=cwd, home=home)
    assert (found.app_id, found.source) == ("cs-id", "$CONVOSCOPE_APP_ID")


def test_environment_before_config_file(dirs: tuple[Path, Path]) -> None:
    cwd, home = dirs
    _write_conf(cwd, "symbl.conf", "file-id", "file-secret")
    environ = {"SYMBL_APP_ID": "env-id", "SYMBL_APP_SECRET": "env-secret"}
    assert resolve_credentials(environ=environ, cwd=cwd, home=home).app_id == "env-id"


def test_official_symbl_conf_in_home_directory(dirs: tuple[Path, Path]) -> None:
    cwd, home = dirs
    _write_conf(home, "symbl.conf", "home-id", "home-secret")
    found = resolve_credentials(environ={}, cwd=cwd, home=home)
    assert (found.app_id, found.app_secret, found.source) == ("home-id", "home-secret", str(home / "symbl.conf"))


def test_working_directory_before_home_and_convoscope_conf_before_symbl_conf(dirs: tuple[Path, Path]) -> None:
    cwd, home = dirs
    _write_conf(home, "convoscope.conf", "home-id", "home-secret")
    _write_conf(cwd, "symbl.conf", "cwd-symbl-id", "s")
    assert resolve_credentials(environ={}, cwd=cwd, home=home).app_id == "cwd-symbl-id"
    _write_conf(cwd, "convoscope.conf", "cwd-convoscope-id", "s")
    assert resolve_credentials(environ={}, cwd=cwd, home=home).app_id == "cwd-convoscope-id"


def test_a_config_file_without_both_values_is_skipped(dirs: tuple[Path, Path]) -> None:
    cwd, home = dirs
    (cwd / "symbl.conf").write_text("[credentials]\napp_id = lonely\n")
    _write_conf(home, "symbl.conf", "home-id", "home-secret")
    assert resolve_credentials(environ={}, cwd=cwd, home=home).app_id == "home-id"


def test_credentials_saved_by_convoscope_up_are_the_last_resort(dirs: tuple[Path, Path]) -> None:
    cwd, home = dirs
    (cwd / ".convoscope").mkdir()
    (cwd / ".convoscope" / "credentials.json").write_text(json.dumps({"appId": "up-id", "appSecret": "up-secret"}))
    assert resolve_credentials(environ={}, cwd=cwd, home=home).app_id == "up-id"
    _write_conf(home, "symbl.conf", "home-id", "home-secret")
    assert resolve_credentials(environ={}, cwd=cwd, home=home).app_id == "home-id"


def test_no_credentials_anywhere_says_where_it_looked(dirs: tuple[Path, Path]) -> None:
    cwd, home = dirs
    with pytest.raises(ConfigurationError) as raised:
        resolve_credentials(environ={}, cwd=cwd, home=home)
    assert "CONVOSCOPE_APP_ID" in str(raised.value) and str(home / "symbl.conf") in str(raised.value)
    assert isinstance(raised.value, ValueError)  # what the official SDK raised


def test_secret_stays_out_of_repr() -> None:
    assert APP_SECRET not in repr(Credentials(APP_ID, APP_SECRET))


def test_base_url_argument_then_environment_then_file_then_default(dirs: tuple[Path, Path]) -> None:
    cwd, home = dirs
    assert resolve_base_url(environ={}, cwd=cwd, home=home) == "http://127.0.0.1:8080"
    _write_conf(home, "symbl.conf", "i", "s", base_url="https://file.example:9000/")
    assert resolve_base_url(environ={}, cwd=cwd, home=home) == "https://file.example:9000"
    environ = {"CONVOSCOPE_BASE_URL": "http://env.example:8080/prefix/"}
    assert resolve_base_url(environ=environ, cwd=cwd, home=home) == "http://env.example:8080/prefix"
    assert resolve_base_url("http://arg.example", environ=environ, cwd=cwd, home=home) == "http://arg.example"


@pytest.mark.parametrize("bad", ["api.example.com", "ws://host:8080", "http://"])
def test_base_url_must_be_http(bad: str) -> None:
    with pytest.raises(ConfigurationError, match="base URL"):
        resolve_base_url(bad, environ={})


def test_websocket_url_follows_scheme_and_prefix() -> None:
    assert websocket_url("http://h:8080", "/v1/streaming/abc") == "ws://h:8080/v1/streaming/abc"
    assert websocket_url("https://h/api", "/v1/streaming/abc") == "wss://h/api/v1/streaming/abc"
