"""Fixtures of the hostile suite: the PKI, the token oracle, the leak witness and the labs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.hostile.azure import SECRET, TokenRegistry
from tests.hostile.lab import Lab
from tests.hostile.leaks import Outputs, Witness
from tests.hostile.pki import Pki, make_pki


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("hostile-pki"))


@pytest.fixture(scope="session")
def registry() -> TokenRegistry:
    return TokenRegistry()


@pytest.fixture(scope="session")
def outputs(registry: TokenRegistry) -> Outputs:
    return Outputs(SECRET, registry)


@pytest.fixture(autouse=True)
def witness(outputs: Outputs) -> Iterator[Witness]:
    """Every test's outputs pass the secret grep; a test that failed first is checked too."""
    current = outputs.begin()
    try:
        yield current
        if not current.checked:
            current.assert_clean()
    finally:
        outputs.end()


@pytest.fixture
def lab(tmp_path: Path, pki: Pki, registry: TokenRegistry, outputs: Outputs) -> Iterator[Lab]:
    bench = Lab(tmp_path, pki, registry, outputs)
    try:
        yield bench
    finally:
        bench.close()


@pytest.fixture(scope="module")
def module_lab(
    tmp_path_factory: pytest.TempPathFactory, pki: Pki, registry: TokenRegistry, outputs: Outputs
) -> Iterator[Lab]:
    bench = Lab(tmp_path_factory.mktemp("hostile"), pki, registry, outputs)
    try:
        yield bench
    finally:
        bench.close()
