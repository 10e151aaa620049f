"""A scenario's workbench: hostile servers and exporter processes that are stopped at the end."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tests.hostile.azure import Account, HostileAzure, TokenRegistry, account_entry, write_config
from tests.hostile.leaks import Outputs
from tests.hostile.pki import Pki
from tests.hostile.process import Completed, ExporterProcess, run_cli


class Lab:
    """Starts hostile servers and exporters in ``folder``; :meth:`close` stops them all."""

    def __init__(self, folder: Path, pki: Pki, registry: TokenRegistry, outputs: Outputs) -> None:
        self.folder = folder
        self.pki = pki
        self.registry = registry
        self.outputs = outputs
        self._servers: list[HostileAzure] = []
        self._exporters: list[ExporterProcess] = []
        self._names = itertools.count(1)

    def azure(self, name: str = "azure") -> HostileAzure:
        """A started hostile Azure AD + AMS server."""
        azure = HostileAzure(f"{name}-{next(self._names)}", self.pki, self.registry).start()
        self._servers.append(azure)
        return azure

    def account(self, azure: HostileAzure, name: str, **fields: Any) -> Account:
        """A new account served by ``azure`` under ``/<name>``."""
        return azure.add(Account(name, **fields))

    def entry(self, azure: HostileAzure, account: Account, **overrides: Any) -> dict[str, Any]:
        """The config entry of ``account``."""
        return account_entry(azure, account, self.pki, **overrides)

    def config(self, entries: Sequence[Mapping[str, Any]]) -> Path:
        """A config file with these accounts."""
        folder = self.folder / f"config-{next(self._names)}"
        folder.mkdir(parents=True)
        return write_config(folder, entries)

    def exporter(
        self,
        entries: Sequence[Mapping[str, Any]],
        *,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> ExporterProcess:
        """A started exporter for these accounts."""
        config = self.config(entries)
        folder = self.folder / f"exporter-{next(self._names)}"
        process = ExporterProcess(folder, config, self.outputs, args=args, env=env)
        self._exporters.append(process)
        return process.start()

    def cli(
        self, args: Sequence[str], *, env: Mapping[str, str] | None = None, timeout: float = 10.0
    ) -> Completed:
        """``python -m exporter ARGS`` run to its end."""
        return run_cli(args, self.outputs, env=env, timeout=timeout)

    def config_check(
        self, config: Path, *, env: Mapping[str, str] | None = None, timeout: float = 10.0
    ) -> Completed:
        """``python -m exporter --config.file CONFIG --config.check``."""
        return self.cli(["--config.file", str(config), "--config.check"], env=env, timeout=timeout)

    def close(self) -> None:
        """Stop every exporter, then every server; fail if a hostile handler crashed."""
        for process in self._exporters:
            process.stop()
        for azure in self._servers:
            azure.stop()
        errors = [error for azure in self._servers for error in azure.server.errors]
        assert not errors, f"the hostile server itself failed: {errors}"
