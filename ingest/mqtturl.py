"""Broker URLs: the one place that turns `mqtt://` / `mqtts://user:password@host:8883`
into connection settings, used by collectors and simulators alike.

Credentials and TLS come from the URL (and the CA bundle from configuration), never from
code. The password is kept out of repr() and str() so logs never show it; a URL itself
is shown only through `redact`, in logs and in error messages alike.
"""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass, field
from urllib.parse import quote, unquote, urlsplit

import paho.mqtt.client as mqtt

from ingest.errors import IngestError

_SCHEMES = {"mqtt": (False, 1883), "tcp": (False, 1883), "mqtts": (True, 8883),
            "ssl": (True, 8883), "tls": (True, 8883)}


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    """Where a broker listens and how to authenticate to it."""

    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    def __str__(self) -> str:
        user = f"{self.username}:***@" if self.username else ""
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{self.host}:{self.port}"


_USERINFO = re.compile(r"^([^:/?#]*://)?([^@/?#]*)@")


def redact(url: str | None) -> str:
    """A URL fit for logs and messages: the password (anything after the user's ':' before
    the '@') replaced by ***. Works on URLs that do not parse too."""
    if not url:
        return str(url)

    def hide(m: re.Match) -> str:
        user, sep, _ = m.group(2).partition(":")
        return f"{m.group(1) or ''}{user}{':***' if sep else ''}@"

    return _USERINFO.sub(hide, url.strip(), count=1)


def with_credentials(url: str, username: str, password: str) -> str:
    """`url` logging in as username:password (both URL-quoted)."""
    scheme, sep, rest = url.partition("://")
    rest = rest.rpartition("@")[2]
    return f"{scheme}{sep}{quote(username, safe='')}:{quote(password, safe='')}@{rest}"


def parse(url: str) -> BrokerAddress:
    """Parse a broker URL; raise IngestError saying what is wrong with it (the URL shown
    with its password hidden)."""
    shown = redact(url)
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise IngestError(f"broker URL {shown!r} is not valid: "
                          f"{str(exc).replace(url.strip(), shown)}") from None
    scheme = parts.scheme.lower()
    if scheme not in _SCHEMES:
        raise IngestError(f"broker URL scheme must be one of {sorted(_SCHEMES)}, got {scheme!r}")
    if not parts.hostname:
        raise IngestError(f"broker URL {shown!r} has no host")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise IngestError(f"broker URL {shown!r} must not carry a path, query or fragment")
    tls, default_port = _SCHEMES[scheme]
    return BrokerAddress(
        host=parts.hostname,
        port=port or default_port,
        tls=tls,
        username=unquote(parts.username) if parts.username is not None else None,
        password=unquote(parts.password) if parts.password is not None else None,
    )


def configure(client: mqtt.Client, address: BrokerAddress, ca_file: str | None = None) -> None:
    """Set credentials and TLS on a paho client before it connects."""
    if address.username is not None:
        client.username_pw_set(address.username, address.password)
    if address.tls:
        context = ssl.create_default_context(cafile=ca_file)
        client.tls_set_context(context)
