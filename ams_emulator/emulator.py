"""The :class:`Emulator`: one AMS v2 account and its Azure AD tenant, served over HTTPS on loopback.

It ties the parts together: certificates (``tls``), the job store over the living scenario
(``store``), Azure AD (``aad``), the REST API (``rest``), routing (``routes``), the transport
(``server``), faults and the request log. The socket is bound on construction, so every endpoint
attribute is valid at once; :meth:`start` begins serving and :meth:`stop` ends it and removes the
temporary files.
"""

from __future__ import annotations

import ipaddress
import secrets
import shutil
import tempfile
import threading
import weakref
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from ams_emulator.aad import MANAGED_IDENTITY_PATH, AadConfig, AzureAd
from ams_emulator.clock import Clock
from ams_emulator.config_text import Connection, account_entry
from ams_emulator.entities import (
    EmuJob,
    EmuMediaProcessor,
    EmuReservedUnitType,
    JobState,
    ReservedUnitType,
    generated_processor_id,
)
from ams_emulator.faults import FaultSet
from ams_emulator.requestlog import RequestLog, RequestRecord
from ams_emulator.rest import AmsRest
from ams_emulator.routes import Dispatcher
from ams_emulator.scenario import ScenarioConfig
from ams_emulator.serialize import DateFormat
from ams_emulator.server import EmulatorHTTPServer
from ams_emulator.store import JobStore
from ams_emulator.tls import generate_tls

DEFAULT_RESOURCE = "https://rest.media.azure.net"
TENANT = "emulator.onmicrosoft.com"
TENANT_ID = "5e1f0a2b-7c3d-4e5f-8a9b-0c1d2e3f4a5b"
CLIENT_ID = "a3b1c2d4-e5f6-4789-8abc-def012345678"
MANAGED_IDENTITY_CLIENT_ID = "9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a"
_LOOPBACK_NAMES = ("localhost",)


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``."""
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _url_host(host: str) -> str:
    """How ``host`` appears in a URL; an unspecified address is reached through loopback."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if address.is_unspecified:
        return "127.0.0.1" if address.version == 4 else "[::1]"
    return f"[{host}]" if address.version == 6 else host


class Emulator:
    """An AMS v2 account with its Azure AD tenant. Use as a context manager, or start()/stop().

    ``scenario`` keyword arguments go to :class:`ScenarioConfig` (``history_days``,
    ``failure_ratio``, ``slots`` - the encoding reserved units -, ``reserved_unit_type`` ...).
    ``speed`` 0 freezes the clock (tests move it explicitly).
    """

    def __init__(
        self,
        *,
        jobs: int = 200,
        seed: int = 1,
        speed: float = 1.0,
        start: datetime | None = None,
        token_lifetime: float = 3600.0,
        host: str = "127.0.0.1",
        port: int = 0,
        verbose_date_format: DateFormat = "iso",
        resource: str = DEFAULT_RESOURCE,
        allow_non_loopback: bool = False,
        **scenario: Any,
    ) -> None:
        if not allow_non_loopback and not is_loopback(host):
            raise ValueError(
                f"host {host!r} is not a loopback address; pass allow_non_loopback=True to "
                "expose the emulator beyond this machine"
            )
        if not 0 <= port <= 65535:
            raise ValueError(f"port must be within 0..65535, got {port}")
        if verbose_date_format not in ("iso", "msdate"):
            raise ValueError("verbose_date_format must be 'iso' or 'msdate'")
        self.clock = Clock(start, speed)
        self.store = JobStore(ScenarioConfig(seed=seed, jobs=jobs, **scenario), self.clock)
        self.faults = FaultSet(seed)
        self._log = RequestLog()
        self.tenant, self.tenant_id, self.client_id = TENANT, TENANT_ID, CLIENT_ID
        self.client_secret = secrets.token_hex(20)
        self.resource = resource
        self.managed_identity_header = secrets.token_hex(16)
        self._directory = Path(tempfile.mkdtemp(prefix="ams-emulator-"))
        # Removes the certificate files even if stop() is never called.
        self._cleanup = weakref.finalize(self, shutil.rmtree, self._directory, ignore_errors=True)
        self._thread: threading.Thread | None = None
        self._stopped = False
        try:
            self._bind(host, port, token_lifetime, verbose_date_format)
        except BaseException:
            self._cleanup()
            raise

    def _bind(self, host: str, port: int, token_lifetime: float, date_format: DateFormat) -> None:
        hosts = tuple(dict.fromkeys(("127.0.0.1", "::1", "localhost", host)))
        tls = generate_tls(self._directory, hosts, self.client_id)
        self.ca_file, self.ca_pem = tls.ca_file, tls.ca_pem
        self.client_certificate_file = tls.client.file
        self.client_certificate_pem = tls.client.certificate_pem
        self.client_private_key_pem = tls.client.private_key_pem
        self.client_certificate_thumbprint = tls.client.sha1_thumbprint
        self._server = EmulatorHTTPServer(
            host, port, tls.server_context(), dispatcher=None, faults=self.faults, log=self._log
        )
        self.port = self._server.server_port
        self.authority_host = f"https://{_url_host(host)}:{self.port}"
        self.account_endpoint = f"{self.authority_host}/api/"
        self.legacy_endpoint = f"https://localhost:{self.port}/"
        self.managed_identity_endpoint = f"{self.authority_host}{MANAGED_IDENTITY_PATH}"
        self.aad = AzureAd(
            AadConfig(
                tenant=self.tenant,
                tenant_id=self.tenant_id,
                client_id=self.client_id,
                client_secret=self.client_secret,
                resource=self.resource,
                client_certificate=tls.client,
                token_lifetime=token_lifetime,
                managed_identity_client_id=MANAGED_IDENTITY_CLIENT_ID,
                managed_identity_header=self.managed_identity_header,
            ),
            self.authority_host,
        )
        rest = AmsRest(self.store, self.aad.check_access_token, self.account_endpoint, date_format)
        self._server.dispatcher = Dispatcher(
            rest, self.aad, self.account_endpoint, self.legacy_endpoint
        )

    # ---- life cycle --------------------------------------------------------------------------

    def start(self) -> Emulator:
        """Begin serving (idempotent). Returns self."""
        if self._stopped:
            raise RuntimeError("a stopped emulator cannot be started again; create a new one")
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.2},
                name=f"ams-emulator:{self.port}",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, drop open connections and delete the certificate files (idempotent)."""
        if self._stopped:
            return
        self._stopped = True
        if self._thread is not None:
            self._server.stop()
            self._thread.join(timeout=10)
        else:
            self._server.server_close()
        self._cleanup()

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # ---- the account's jobs ------------------------------------------------------------------

    def jobs(self) -> list[EmuJob]:
        """Copies of every job (with tasks), in Id order, as of the clock's now."""
        return self.store.snapshot()

    def job(self, job_id: str) -> EmuJob | None:
        return self.store.get_job(job_id)

    def add_job(self, **fields: Any) -> str:
        """Add a job only tests move; see :meth:`JobStore.add_job`. Returns its Id."""
        return self.store.add_job(**fields)

    def set_job_state(
        self, job_id: str, state: JobState | int, error_code: str | None = None
    ) -> None:
        self.store.set_job_state(job_id, state, error_code)

    def set_task_progress(self, job_id: str, task_index: int, progress: float) -> None:
        self.store.set_task_progress(job_id, task_index, progress)

    def delete_job(self, job_id: str) -> None:
        self.store.delete_job(job_id)

    # ---- the account's capacity and media processors -----------------------------------------

    def reserved_units(self) -> EmuReservedUnitType:
        """The ``EncodingReservedUnitTypes`` entity as of now; its ``current_reserved_units`` is
        how many jobs hold an encoding slot at once (Scheduled, Processing or Canceling)."""
        return self.store.reserved_units()

    def set_reserved_units(
        self, units: int, reserved_unit_type: ReservedUnitType | int | None = None
    ) -> None:
        """Reserve ``units`` encoding units (1..MaxReservableUnits): from now on that many jobs
        run at once. With fewer than before, running jobs finish and no job starts meanwhile."""
        self.store.set_reserved_units(units, reserved_unit_type)

    def media_processors(self) -> list[EmuMediaProcessor]:
        """The ``MediaProcessors`` the account lists now, in Id order."""
        return self.store.media_processors()

    def add_media_processor(
        self,
        name: str,
        version: str,
        *,
        processor_id: str | None = None,
        description: str | None = None,
        sku: str = "",
        vendor: str = "Microsoft",
    ) -> str:
        """List one more media processor; returns its Id (default: made up from the name and
        version). ``description`` defaults to the name."""
        processor = EmuMediaProcessor(
            id=processor_id or generated_processor_id(f"{name}/{version}"),
            name=name,
            description=name if description is None else description,
            sku=sku,
            vendor=vendor,
            version=version,
        )
        self.store.add_media_processor(processor)
        return processor.id

    def remove_media_processor(self, processor_id: str) -> None:
        """Stop listing a processor; tasks naming it keep its Id (an unknown MediaProcessorId)."""
        self.store.remove_media_processor(processor_id)

    # ---- tokens and the request log ----------------------------------------------------------

    def revoke_tokens(self) -> None:
        """Every access token issued so far is rejected from now on (401, "revoked")."""
        self.aad.revoke_tokens()

    def expire_tokens(self) -> None:
        """Every access token issued so far is treated as expired from now on (401)."""
        self.aad.expire_tokens()

    def announce_expires_in(self, seconds: int | None) -> None:
        """Token responses announce ``expires_in: seconds`` (``None``: the real lifetime)."""
        self.aad.announce_expires_in(seconds)

    @property
    def connection(self) -> Connection:
        """What an exporter needs to reach this account."""
        return Connection(
            endpoint=self.account_endpoint,
            authority_host=self.authority_host,
            resource=self.resource,
            tenant=self.tenant,
            client_id=self.client_id,
            ca_file=self.ca_file,
            legacy_endpoint=self.legacy_endpoint,
        )

    def account_entry(self, name: str, *, secret_variable: str, **settings: Any) -> str:
        """This account as an item of an exporter's ``accounts`` list (see ``account_entry``)."""
        return account_entry(name, self.connection, secret_variable=secret_variable, **settings)

    @property
    def request_log(self) -> list[RequestRecord]:
        """The requests served so far, oldest first (a copy)."""
        return self._log.records()

    def clear_log(self) -> None:
        self._log.clear()

    def request_count(
        self, api: str | None = None, path: str | None = None, method: str | None = None
    ) -> int:
        """How many logged requests match (``path`` is a regular expression)."""
        return self._log.count(api, path, method)
