"""Reloading the running exporter's configuration (SIGHUP, ``POST /-/reload``).

A reload reads and validates both files first; only when both are good does it apply them, so an
invalid file is logged and the running configuration keeps serving. Prometheus's own rule, and its
metric names: ``ams_exporter_config_last_reload_successful`` and
``ams_exporter_config_last_reload_success_timestamp_seconds``.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from exporter.config.accounts import load_config
from exporter.config.model import Config
from exporter.errors import ConfigError
from exporter.expose.contract import ConfigStatus
from exporter.redact import redact
from exporter.web.httpserver import HttpServer
from exporter.web.server import use_web_config
from exporter.web.webconfig import WebConfig, load_web_config
from exporter.wiring import Exporter

log = logging.getLogger("exporter")


class Reloader:
    """Loads ``config_file`` and ``web_config_file`` again and applies them to a running exporter.

    ``config_file`` is ``None`` for ``--demo`` (its configuration is generated, not read), and
    ``web_config_file`` when no ``--web.config.file`` was given.
    """

    def __init__(
        self,
        exporter: Exporter,
        server: HttpServer,
        config_file: Path | None,
        web_config_file: Path | None,
    ) -> None:
        self._exporter = exporter
        self._server = server
        self._config_file = config_file
        self._web_config_file = web_config_file
        self._lock = threading.Lock()  # one reload at a time: a signal and a POST may meet

    def reload(self) -> str | None:
        """Reload; ``None`` when it worked, else why not (the running configuration stays)."""
        with self._lock:
            app = self._exporter.app
            try:
                config = load_config(self._config_file) if self._config_file else None
                web_config = (
                    load_web_config(self._web_config_file) if self._web_config_file else None
                )
            except ConfigError as error:
                app.config_status = ConfigStatus(False, app.config_status.success_time)
                log.error("reloading the configuration failed; the running one stays: %s", error)
                return redact(str(error))
            try:
                self._apply(config, web_config)
            except Exception as error:  # validated files that still fail (say, a file swapped
                # since): the process keeps serving what it has, as with an invalid file
                app.config_status = ConfigStatus(False, app.config_status.success_time)
                log.exception("applying the reloaded configuration failed")
                return redact(f"applying it failed: {type(error).__name__}: {error}")
            app.config_status = ConfigStatus(True, time.time())
            return None

    def _apply(self, config: Config | None, web_config: WebConfig | None) -> None:
        if config is not None:
            for warning in config.warnings:
                log.warning("configuration: %s", warning)
            changes = self._exporter.apply(config)
            log.info("configuration reloaded from %s: accounts %s", self._config_file, changes)
        elif self._web_config_file is None:
            log.info("nothing to reload: --demo has no configuration file")
        if self._web_config_file is not None:
            use_web_config(self._server, self._exporter.app, web_config)
            log.info("web configuration reloaded from %s", self._web_config_file)
