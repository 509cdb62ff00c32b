"""Credentials from the environment or netrc; never shown in repr or errors; config keys refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline_lib.errors import ConfigError
from pipeline_lib.fetch import cdse
from pipeline_lib.fetch.credentials import Credentials, resolve_credentials
from pipeline_lib.fetch.http import parse_retry_after

HOST = "identity.dataspace.copernicus.eu"
SECRET = "n3tRC-secret-pw"


def test_env_first_then_netrc(tmp_path: Path) -> None:
    rc = tmp_path / "netrc"
    rc.write_text(f"machine {HOST}\n  login rc-user\n  password {SECRET}\n")
    rc.chmod(0o600)
    assert resolve_credentials({"CDSE_USERNAME": "env-user", "CDSE_PASSWORD": "pw"}, rc, HOST) == Credentials(
        "env-user", "pw"
    )
    got = resolve_credentials({"CDSE_USERNAME": "only-user"}, rc, HOST)
    assert got == Credentials("rc-user", SECRET) and SECRET not in repr(got) and SECRET not in str(got)
    with pytest.raises(ConfigError, match="export CDSE_USERNAME and CDSE_PASSWORD"):
        resolve_credentials({}, rc, "other.host")


def test_broken_netrc_error_hides_password(tmp_path: Path) -> None:
    rc = tmp_path / "netrc"
    rc.write_text(f"machine {HOST} login u password {SECRET} bogus-token\n")
    rc.chmod(0o600)
    with pytest.raises(ConfigError) as exc:
        resolve_credentials({}, rc, HOST)
    assert SECRET not in str(exc.value)


def test_credentials_refused_in_config() -> None:
    with pytest.raises(ConfigError, match="do not belong in the config"):
        cdse.source_from_settings({"password": SECRET})
    src = cdse.source_from_settings({"catalogue_url": "http://127.0.0.1:9/odata/v1"})
    assert src.catalogue_url == "http://127.0.0.1:9/odata/v1" and src.download_url == cdse.DOWNLOAD_URL


def test_retry_after_forms() -> None:
    from datetime import UTC, datetime

    now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after("Wed, 01 Jan 2025 12:00:30 GMT", now) == 30.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None
