"""The secret grep: no output of the exporter may hold the client secret, in any encoding, or a token.

Every scenario hands its outputs (logs at debug level, ``/metrics``, ``/``, ``/readyz``,
``--config.check``) to one :class:`Witness`, whose :meth:`Witness.assert_clean` looks for the secret
raw, URL-encoded (``quote``, ``quote_plus``, either hex case), JSON-escaped, base64 standard and
URL-safe with and without padding, and for the base64 text of the secret wherever it starts inside a
longer encoded string (the three alignments, without the characters the neighbours touch); and for
every token any hostile Azure AD minted, whole or by its first or last 24 characters.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Iterable
from urllib.parse import quote, quote_plus

from tests.hostile.azure import TokenRegistry

_TOKEN_PART = 24


def _lower_hex(text: str) -> str:
    return re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), text)


def base64_cores(secret: bytes) -> dict[str, str]:
    """Base64 text that any encoding of ``secret`` behind 0, 1 or 2 other bytes must contain.

    Character ``i`` of base64 covers bits ``6i .. 6i+6``; with ``k`` bytes in front, only the
    characters whose bits all come from the secret are fixed, whatever the neighbours are.
    """
    cores = {}
    for offset in range(3):
        encoded = base64.b64encode(bytes(offset) + secret).decode()
        start = -(-8 * offset // 6)
        end = (8 * (offset + len(secret))) // 6
        core = encoded[start:end]
        cores[f"base64 core at offset {offset}"] = core
        cores[f"urlsafe base64 core at offset {offset}"] = core.replace("+", "-").replace("/", "_")
    return cores


def secret_forms(secret: str) -> dict[str, str]:
    """Every text that would reveal ``secret``, by the name of its encoding."""
    raw = secret.encode()
    forms = {
        "raw": secret,
        "quote": quote(secret, safe=""),
        "quote (keeping /)": quote(secret),
        "quote_plus": quote_plus(secret),
        "quote, lower-case hex": _lower_hex(quote(secret, safe="")),
        "quote_plus, lower-case hex": _lower_hex(quote_plus(secret)),
        "JSON-escaped": secret.replace("/", "\\/"),
        "base64": base64.b64encode(raw).decode(),
        "base64 unpadded": base64.b64encode(raw).decode().rstrip("="),
        "urlsafe base64": base64.urlsafe_b64encode(raw).decode(),
        "urlsafe base64 unpadded": base64.urlsafe_b64encode(raw).decode().rstrip("="),
    }
    forms.update(base64_cores(raw))
    return forms


class Witness:
    """The outputs of one test, checked against the secret's forms and every minted token."""

    def __init__(
        self,
        forms: dict[str, str],
        registry: TokenRegistry,
        outputs: list[tuple[str, str]],
        sources: dict[str, tuple[Callable[[], str], int]],
    ) -> None:
        self._forms = forms
        self._registry = registry
        self._outputs = outputs
        self._sources = sources
        self.checked = False

    def assert_clean(self) -> None:
        """Fail naming every output that reveals the secret or a token, and how."""
        self.checked = True
        outputs = list(self._outputs)
        for what, (read, offset) in list(self._sources.items()):
            outputs.append((what, read()[offset:]))
        needles = dict(self._forms)
        for token in self._registry.all():
            needles[f"token {token[:12]}..."] = token
            needles[f"start of token {token[:12]}..."] = token[:_TOKEN_PART]
            needles[f"end of token ...{token[-12:]}"] = token[-_TOKEN_PART:]
        found = list(_findings(outputs, needles))
        assert not found, "secret or token revealed:\n" + "\n".join(found[:20])


class Outputs:
    """Where every output goes: to the witness of the test that is running.

    Outputs produced outside a test (a module's exporter warming up) go to the next test's
    witness. A growing log is watched: each test checks the part written while it ran.
    """

    def __init__(self, secret: str, registry: TokenRegistry) -> None:
        self._forms = secret_forms(secret)
        self._registry = registry
        self._pending: list[tuple[str, str]] = []
        self._readers: dict[str, Callable[[], str]] = {}
        self._sources: dict[str, tuple[Callable[[], str], int]] | None = None
        self._outputs: list[tuple[str, str]] | None = None

    def record(self, what: str, text: str) -> None:
        """Keep one output for the check."""
        (self._outputs if self._outputs is not None else self._pending).append((what, text))

    def watch(self, what: str, read: Callable[[], str]) -> None:
        """Check the text ``read()`` returns (a log that grows) from now on."""
        self._readers[what] = read
        if self._sources is not None:
            self._sources[what] = (read, 0)

    def begin(self) -> Witness:
        """The witness of the test that starts now."""
        self._outputs, self._pending = self._pending, []
        self._sources = {what: (read, len(read())) for what, read in self._readers.items()}
        return Witness(self._forms, self._registry, self._outputs, self._sources)

    def end(self) -> None:
        """The test is over: outputs from now on wait for the next one."""
        self._outputs = None
        self._sources = None


def _findings(outputs: Iterable[tuple[str, str]], needles: dict[str, str]) -> Iterable[str]:
    by_text: dict[str, list[str]] = {}
    for name, needle in needles.items():
        by_text.setdefault(needle, []).append(name)
    pattern = re.compile("|".join(re.escape(n) for n in sorted(by_text, key=len, reverse=True)))
    for what, text in outputs:
        for match in pattern.finditer(text):
            start, end = max(0, match.start() - 60), match.end() + 60
            names = ", ".join(by_text[match.group(0)])
            yield f"- {what}: {names}: ...{text[start:end]!r}..."
