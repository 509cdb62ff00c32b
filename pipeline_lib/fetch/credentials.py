"""Copernicus Data Space credentials and access tokens.

Credentials come from ``CDSE_USERNAME``/``CDSE_PASSWORD`` or from a ``~/.netrc`` entry for the
identity host (never from the config). Tokens follow the CDSE documentation "Access token"
(https://documentation.dataspace.copernicus.eu/APIs/Token.html): a Keycloak OpenID Connect
password grant (RFC 6749 §4.3) with the public client ``cdse-public``, refreshed with the
``refresh_token`` grant (RFC 6749 §6) before ``expires_in`` runs out and whenever a server answers 401.

Secrets never appear in ``repr``, log records or exception messages.
"""

from __future__ import annotations

import logging
import netrc
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

from pipeline_lib.errors import ConfigError, FetchError

__all__ = [
    "Credentials",
    "credentials_from_env",
    "credentials_from_netrc",
    "resolve_credentials",
    "credentials_source",
    "missing_credentials_warning",
    "load_credentials",
    "KeycloakToken",
    "CDSE_TOKEN_URL",
    "CDSE_CLIENT_ID",
]

log = logging.getLogger(__name__)

CDSE_TOKEN_URL = "https://identity.dataspace.copernicus.eu/auth/realms/CDSE/protocol/openid-connect/token"
CDSE_CLIENT_ID = "cdse-public"
USER_VAR = "CDSE_USERNAME"
PASSWORD_VAR = "CDSE_PASSWORD"


@dataclass(frozen=True)
class Credentials:
    """A user name and password; the password never shows in ``repr``/``str``."""

    username: str
    password: str = field(repr=False)

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, password=<hidden>)"

    __str__ = __repr__


def credentials_from_env(
    environ: Mapping[str, str], user_var: str = USER_VAR, password_var: str = PASSWORD_VAR
) -> Credentials | None:
    """Credentials from the two environment variables, or None when either is unset or empty."""
    user, password = environ.get(user_var, ""), environ.get(password_var, "")
    return Credentials(user, password) if user and password else None


def credentials_from_netrc(path: str | Path, host: str) -> Credentials | None:
    """Credentials of the ``machine host`` entry of a netrc file, or None when there is none."""
    p = Path(path)
    if not p.is_file():
        return None
    try:
        entry = netrc.netrc(str(p)).authenticators(host)
    except (netrc.NetrcParseError, OSError) as exc:
        # NetrcParseError's text can quote the offending line (a password): give the line number only.
        line = getattr(exc, "lineno", "?")
        raise ConfigError(f"{p}: unreadable netrc file (line {line}); fix its syntax or remove it") from None
    if entry is None:
        return None
    login, _account, password = entry
    return Credentials(login, password) if login and password else None


def credentials_source(
    environ: Mapping[str, str], netrc_path: str | Path | None, host: str, env_vars: str = f"{USER_VAR}/{PASSWORD_VAR}"
) -> str | None:
    """Where :func:`resolve_credentials` would take the credentials from, in words (never the secret); None
    when there are none. Mentions a netrc entry the environment overrides. Used for logs and ``snakemake -n``."""
    in_env = credentials_from_env(environ) is not None
    in_netrc = False
    if netrc_path is not None:
        try:
            in_netrc = credentials_from_netrc(netrc_path, host) is not None
        except ConfigError:
            in_netrc = False
    if in_env:
        also = f" (they take precedence over the entry for {host} in {netrc_path})" if in_netrc else ""
        return f"environment variables {env_vars}{also}"
    if in_netrc:
        return f"{netrc_path}, machine {host}"
    return None


def resolve_credentials(
    environ: Mapping[str, str], netrc_path: str | Path | None, host: str, env_vars: str = f"{USER_VAR}/{PASSWORD_VAR}"
) -> Credentials:
    """Environment first, then the netrc entry for ``host``; a ConfigError saying how to set them otherwise.

    Logs (INFO) which of the two was used and the user name, never the password.
    """
    creds = credentials_from_env(environ)
    if creds is None and netrc_path is not None:
        creds = credentials_from_netrc(netrc_path, host)
    if creds is None:
        raise ConfigError(
            f"no Copernicus Data Space credentials: export {env_vars.replace('/', ' and ')}, "
            f"or add 'machine {host} login ... password ...' to {netrc_path or '~/.netrc'}"
        )
    log.info(
        "credentials for %s: user %s from %s",
        host,
        creds.username,
        credentials_source(environ, netrc_path, host, env_vars),
    )
    return creds


def missing_credentials_warning(
    fetch: Mapping[str, Any], environ: Mapping[str, str], netrc_path: str | Path | None, where: str
) -> str | None:
    """A one-line warning when ``fetch`` (a region's ``fetch`` block) needs credentials that are not set.

    For ``snakemake -n``: missing credentials would otherwise surface only at the first download.
    ``where`` names the region file. None for sources without credentials or when they are present.
    """
    source = fetch.get("source")
    if source == "cdse":
        host = urlsplit(str((fetch.get("cdse") or {}).get("token_url", CDSE_TOKEN_URL))).hostname or ""
        env = environ
        env_vars = f"{USER_VAR}/{PASSWORD_VAR}"
    elif source == "dhus":
        host = urlsplit(str((fetch.get("dhus") or {}).get("api_url", "https://colhub.met.no/"))).hostname or ""
        env = {USER_VAR: environ.get("DHUS_USERNAME", ""), PASSWORD_VAR: environ.get("DHUS_PASSWORD", "")}
        env_vars = "DHUS_USERNAME/DHUS_PASSWORD"
    else:
        return None
    if credentials_source(env, netrc_path, host, env_vars) is not None:
        return None
    return (
        f"{where}: fetch.source {source} needs credentials but none are set; export {env_vars.replace('/', ' and ')} "
        f"or add 'machine {host} login ... password ...' to {netrc_path or '~/.netrc'} before running"
    )


def load_credentials(token_url: str = CDSE_TOKEN_URL) -> Credentials:
    """Credentials for the process: the one place that reads ``os.environ`` and ``~/.netrc``.

    Called by the workflow's script shims only; library functions take :class:`Credentials`.
    """
    import os

    host = urlsplit(token_url).hostname or ""
    return resolve_credentials(os.environ, Path.home() / ".netrc", host)


class KeycloakToken:
    """A bearer token from a Keycloak password grant, refreshed before expiry and on demand.

    ``header()`` returns ``{"Authorization": "Bearer ..."}``; ``header(refresh=True)`` forces a
    new token (after a 401). Thread-safe: parallel downloads share one token.
    """

    def __init__(
        self,
        token_url: str,
        credentials: Credentials | Callable[[], Credentials],
        *,
        session: requests.Session | None = None,
        client_id: str = CDSE_CLIENT_ID,
        margin_s: float = 60.0,
        timeout_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.token_url = token_url
        self._credentials = credentials
        self._session = session or requests.Session()
        self.client_id = client_id
        self.margin_s = margin_s
        self.timeout_s = timeout_s
        self._clock = clock
        self._lock = threading.Lock()
        self._access = ""
        self._refresh = ""
        self._access_expiry = 0.0
        self._refresh_expiry = 0.0
        self.grants: list[str] = []  # grant types used, in order (for logs and tests; no secrets)

    def __repr__(self) -> str:
        return f"KeycloakToken(token_url={self.token_url!r}, client_id={self.client_id!r})"

    def _creds(self) -> Credentials:
        c = self._credentials
        return c if isinstance(c, Credentials) else c()

    def header(self, *, refresh: bool = False) -> dict[str, str]:
        """The Authorization header, fetching or refreshing the token when needed."""
        with self._lock:
            now = self._clock()
            if refresh or not self._access or now >= self._access_expiry - self.margin_s:
                self._renew(now, forced=refresh)
            return {"Authorization": f"Bearer {self._access}"}

    def _renew(self, now: float, *, forced: bool) -> None:
        if self._refresh and now < self._refresh_expiry - self.margin_s:
            try:
                self._grant(
                    {"grant_type": "refresh_token", "refresh_token": self._refresh, "client_id": self.client_id}, now
                )
                return
            except FetchError as exc:
                log.info("token refresh failed (%s); requesting a new token", exc)
        creds = self._creds()
        self._grant(
            {
                "grant_type": "password",
                "username": creds.username,
                "password": creds.password,
                "client_id": self.client_id,
            },
            now,
        )
        if forced:
            log.info("access token renewed after the server rejected the previous one")

    def _grant(self, data: dict[str, str], now: float) -> None:
        kind = data["grant_type"]
        try:
            resp = self._session.post(self.token_url, data=data, timeout=self.timeout_s, allow_redirects=False)
        except requests.RequestException as exc:
            raise FetchError(
                f"token endpoint {self.token_url}: unreachable ({type(exc).__name__}); check the network or fetch.cdse.token_url"
            ) from None
        body: dict[str, Any] = {}
        try:
            parsed = resp.json()
            body = parsed if isinstance(parsed, dict) else {}
        except ValueError:
            pass
        if resp.status_code != 200 or "access_token" not in body:
            reason = str(body.get("error_description") or body.get("error") or f"HTTP {resp.status_code}")[:200]
            what = "rejected the credentials" if kind == "password" else "refused the refresh token"
            raise FetchError(
                f"token endpoint {self.token_url} {what} ({reason}); check {USER_VAR}/{PASSWORD_VAR} or ~/.netrc"
            )
        self._access = str(body["access_token"])
        self._access_expiry = now + float(body.get("expires_in", 600))
        self._refresh = str(body.get("refresh_token", ""))
        self._refresh_expiry = now + float(body.get("refresh_expires_in", 3600)) if self._refresh else 0.0
        self.grants.append(kind)
        log.debug("access token obtained (%s grant), valid %s s", kind, body.get("expires_in"))
