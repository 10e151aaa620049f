"""Where the exporter listens: the ``--web.listen-address`` forms, read as Go's ``net.Listen`` reads them.

- ``:PORT`` and ``[::]:PORT``: every address, IPv6 and IPv4, on one IPv6 socket with
  ``IPV6_V6ONLY`` off (dual-stack). On a host without IPv6 it is an IPv4 socket on ``0.0.0.0``,
  and the log says so.
- ``0.0.0.0:PORT``: every IPv4 address, and IPv4 only (Go listens dual-stack here too; this
  address says IPv4).
- ``[IPv6]:PORT`` and ``IPv4:PORT``: that address only.
- ``NAME:PORT``: the first IPv4 address the name resolves to, or its first address if it has no
  IPv4 one, as Go does: ``localhost:PORT`` listens on ``127.0.0.1``. Both loopbacks are two
  addresses, ``127.0.0.1:PORT`` and ``[::1]:PORT``.
- Port 0: a free port, which the kernel picks for each address.

The addresses are checked together before any is bound: one given twice, or two that would take
the same port of the same address (``:9000`` and ``127.0.0.1:9000``), are refused with both named.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import re
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

_PORT = re.compile(r"[0-9]{1,5}")
# What a socket() or bind() on a host without (dual-stack) IPv6 fails with.
_NO_IPV6 = frozenset(
    {errno.EAFNOSUPPORT, errno.EPROTONOSUPPORT, errno.EADDRNOTAVAIL, errno.ENOPROTOOPT}
)
_WILDCARDS = ("0.0.0.0", "::")


class ListenError(ValueError):
    """Why the exporter cannot listen on ``addresses`` (as given; two for an overlap)."""

    def __init__(self, addresses: Sequence[str], reason: str) -> None:
        self.addresses = tuple(addresses)
        self.reason = reason
        super().__init__(f"cannot listen on {' and '.join(self.addresses)}: {reason}")


@dataclass(frozen=True)
class _Endpoint:
    """A listen address as given, and the socket address it is bound to."""

    given: str
    family: socket.AddressFamily
    sockaddr: tuple[Any, ...]
    dual_stack: bool = False

    @property
    def host(self) -> str:
        return str(self.sockaddr[0])

    @property
    def port(self) -> int:
        return int(self.sockaddr[1])

    def covers(self, other: _Endpoint) -> bool:
        """Whether this endpoint's addresses include every address of ``other``."""
        if self.dual_stack:
            return True
        return self.family == other.family and self.host in (*_WILDCARDS, other.host)


def open_listeners(addresses: Sequence[str]) -> list[socket.socket]:
    """A listening, non-blocking socket for each address, in order; raises :class:`ListenError`."""
    if not addresses:
        raise ValueError("no address to listen on")
    endpoints = [_endpoint(given) for given in addresses]
    for index, later in enumerate(endpoints):
        for earlier in endpoints[:index]:
            _check_apart(earlier, later)
    listeners: list[socket.socket] = []
    try:
        for endpoint in endpoints:
            listeners.append(_open(endpoint))
    except BaseException:
        for listener in listeners:
            listener.close()
        raise
    return listeners


def format_address(sockaddr: tuple[Any, ...]) -> str:
    """``host:port``, with an IPv6 host in brackets: ``[::1]:10267``."""
    host, port = sockaddr[:2]
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


def _split(given: str) -> tuple[str, int, bool]:
    """The host (``""`` for none), the port, and whether the host was written in brackets."""
    host, colon, port_text = given.rpartition(":")
    if not colon or given.endswith("]"):
        hint = f"; did you mean :{given}?" if _PORT.fullmatch(given) else ""
        raise ListenError([given], f"expected host:port, :port or [IPv6]:port{hint}")
    if not _PORT.fullmatch(port_text) or int(port_text) > 65535:
        raise ListenError([given], f"the port must be a number from 0 to 65535, not {port_text!r}")
    bracketed = host.startswith("[") and host.endswith("]")
    if bracketed:
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ListenError([given], f"{host!r} in brackets is not an IPv6 address") from None
    elif "[" in host or "]" in host:
        raise ListenError([given], "unbalanced brackets; an IPv6 address is written [IPv6]:port")
    elif ":" in host:
        raise ListenError([given], f"an IPv6 address is written in brackets: [{host}]:{port_text}")
    return host, int(port_text), bracketed


def _endpoint(given: str) -> _Endpoint:
    host, port, bracketed = _split(given)
    if host in ("", "::"):
        return _Endpoint(given, socket.AF_INET6, ("::", port), dual_stack=True)
    flags = socket.AI_NUMERICHOST if bracketed else 0
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=flags)
    except socket.gaierror as exc:
        raise ListenError([given], f"cannot resolve {host}: {exc.strerror}") from None
    usable = [entry for entry in found if entry[0] in (socket.AF_INET, socket.AF_INET6)]
    if not usable:
        raise ListenError([given], f"{host} has no IP address")
    family, _, _, _, sockaddr = next((e for e in usable if e[0] == socket.AF_INET), usable[0])
    return _Endpoint(given, family, tuple(sockaddr))


def _check_apart(earlier: _Endpoint, later: _Endpoint) -> None:
    if earlier.given == later.given:
        raise ListenError([later.given], "the address is given twice")
    # Port 0 is a different free port for each socket.
    if earlier.port == 0 or earlier.port != later.port:
        return
    if earlier.covers(later) or later.covers(earlier):
        raise ListenError([earlier.given, later.given], f"they overlap on port {later.port}")


def _open(endpoint: _Endpoint) -> socket.socket:
    if not endpoint.dual_stack:
        return _bound(socket.socket(endpoint.family, socket.SOCK_STREAM), endpoint)
    try:
        return _bound(_dual_stack_socket(), endpoint)
    except OSError as exc:
        if exc.errno not in _NO_IPV6:
            raise
        log.info(
            "no IPv6 on this host (%s): %s listens on IPv4 only, 0.0.0.0:%d",
            exc.strerror,
            endpoint.given,
            endpoint.port,
        )
    ipv4 = _Endpoint(endpoint.given, socket.AF_INET, ("0.0.0.0", endpoint.port))
    return _bound(socket.socket(socket.AF_INET, socket.SOCK_STREAM), ipv4)


def _dual_stack_socket() -> socket.socket:
    """An IPv6 socket that takes IPv4 connections too; ``OSError`` on a host without IPv6."""
    if not socket.has_ipv6:
        raise OSError(errno.EAFNOSUPPORT, "Python was built without IPv6")
    sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    try:
        # Off by default on Linux, but the net.ipv6.bindv6only sysctl or the OS may turn it on.
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    except BaseException:
        sock.close()
        raise
    return sock


def _bound(sock: socket.socket, endpoint: _Endpoint) -> socket.socket:
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(endpoint.sockaddr)
        except OSError as exc:
            if endpoint.dual_stack and exc.errno in _NO_IPV6:
                raise
            raise ListenError([endpoint.given], exc.strerror or str(exc)) from exc
        # The default backlog of a few drops the SYNs of a burst of scrapes (HA pairs,
        # dashboards), which the clients retry after 1 s, 3 s, 7 s: scrapes late by seconds.
        sock.listen(socket.SOMAXCONN)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock
