"""A hostile Azure AD and AMS v2 REST service, as the wire protocol describes them.

Azure AD: OIDC discovery at ``/{tenant}/v2.0/.well-known/openid-configuration`` and the v2.0 token
endpoint ``POST /{tenant}/oauth2/v2.0/token`` (client credentials, form-encoded). Every token request
mints a distinct random token, remembered in a :class:`TokenRegistry` (the oracle of the leak check)
even when a scenario then answers something else than the token.

AMS: ``GET {prefix}/api/Jobs`` (``$top``/``$skip`` paging, ``$filter`` ignored),
``GET {prefix}/api/Jobs('<id>')/Tasks``, ``GET {prefix}/api/EncodingReservedUnitTypes`` and
``GET {prefix}/api/MediaProcessors`` (every property, ``$select`` ignored), minimal-metadata JSON,
bearer token and ``x-ms-version`` required. A scenario replaces any of these answers per account
with a handler returning any :data:`~tests.hostile.wire.Reply`.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from tests.hostile.pki import Pki
from tests.hostile.wire import Answer, Handler, HostileServer, Reply, Request

# Characters that change under URL, form and JSON encoding, so that every encoding is distinct.
SECRET = "s3cr+t/v@lue=with&chars%"
SECRET_VARIABLE = "AMS_HOSTILE_SECRET"
RESOURCE = "https://rest.media.hostile.test"
ODATA_JSON = "application/json;odata=minimalmetadata;streaming=true;charset=utf-8"
PLAIN_JSON = "application/json; charset=utf-8"

TokenHandler = Callable[[Request, str], Reply]
"""Answers a token request, given the token just minted for it."""


class TokenRegistry:
    """Every token minted by any hostile Azure AD of the session."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: list[str] = []

    def mint(self, *, opaque: bool) -> str:
        """A new random token: JWT-shaped (``eyJ...``), or ``opaque-<hex>`` which no regex spots."""
        if opaque:
            token = f"opaque-{secrets.token_hex(20)}"
        else:
            header = {"kid": secrets.token_hex(12), "typ": "JWT", "alg": "RS256"}
            claims = {"aud": RESOURCE, "tid": str(uuid.uuid4()), "exp": int(time.time()) + 3600}
            parts = (
                json.dumps(header).encode(),
                json.dumps(claims).encode(),
                secrets.token_bytes(64),
            )
            token = ".".join(_b64url(part) for part in parts)
        with self._lock:
            self._tokens.append(token)
        return token

    def all(self) -> list[str]:
        """A copy of every token minted so far."""
        with self._lock:
            return list(self._tokens)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass(eq=False)
class Account:
    """One hostile account: its credentials, what it serves, and the answers a scenario replaced."""

    name: str
    tenant: str = field(default_factory=lambda: str(uuid.uuid4()))
    client_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    opaque_tokens: bool = False
    expires_in: object = 3599
    jobs: list[dict[str, Any]] = field(default_factory=list)
    tasks: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    reserved_units: list[dict[str, Any]] = field(default_factory=list)
    processors: list[dict[str, Any]] = field(default_factory=list)
    on_discovery: Handler | None = None
    on_token: TokenHandler | None = None
    on_jobs: Handler | None = None
    on_tasks: Handler | None = None
    on_reserved_units: Handler | None = None
    on_processors: Handler | None = None
    minted: list[str] = field(default_factory=list)

    def job_ids(self) -> set[str]:
        """Ids of the served jobs that have one (the oracle of "every job is exported")."""
        return {job["Id"] for job in self.jobs if isinstance(job.get("Id"), str)}


_DISCOVERY = re.compile(r"/([^/]+)/v2\.0/\.well-known/openid-configuration")
_TOKEN = re.compile(r"/([^/]+)/oauth2/v2\.0/token")
_JOBS = re.compile(r"(/[^/]+)?/api/Jobs", re.IGNORECASE)
_TASKS = re.compile(r"(/[^/]+)?/api/Jobs\('(.*)'\)/Tasks", re.IGNORECASE)
_RESERVED_UNITS = re.compile(r"(/[^/]+)?/api/EncodingReservedUnitTypes", re.IGNORECASE)
_PROCESSORS = re.compile(r"(/[^/]+)?/api/MediaProcessors", re.IGNORECASE)
_AMS_KINDS = ("jobs", "tasks", "reserved_units", "processors")


class HostileAzure:
    """Azure AD and AMS for any number of accounts on one :class:`HostileServer`.

    Accounts are found by tenant (Azure AD paths) and by AMS path prefix (``/<name>``, or ``""``
    for an account served at ``/api/``). ``root`` answers ``GET /`` (a legacy AMS root); ``delay``
    holds every well-formed answer back that many seconds.
    """

    def __init__(self, name: str, pki: Pki, registry: TokenRegistry) -> None:
        self.server = HostileServer(name, pki.server_context(), self.handle)
        self._registry = registry
        self._by_tenant: dict[str, Account] = {}
        self._by_prefix: dict[str, Account] = {}
        self.root: Handler | None = None
        self.delay = 0.0

    def start(self) -> HostileAzure:
        """Start serving."""
        self.server.start()
        return self

    def stop(self) -> None:
        """Stop serving (bounded)."""
        self.server.stop()

    def add(self, account: Account, *, ams_prefix: str | None = None) -> Account:
        """Serve ``account``: Azure AD for its tenant, AMS under ``ams_prefix`` (``/<name>``)."""
        self._by_tenant[account.tenant] = account
        self._by_prefix[f"/{account.name}" if ams_prefix is None else ams_prefix] = account
        return account

    def base(self, host: str = "127.0.0.1") -> str:
        """``https://host:port``."""
        return self.server.url(host)

    def endpoint(self, account: Account, host: str = "127.0.0.1") -> str:
        """The AMS endpoint of ``account`` (``.../api/``)."""
        prefix = next(p for p, a in self._by_prefix.items() if a is account)
        return f"{self.base(host)}{prefix}/api/"

    def requests_of(self, account: Account, kind: str) -> list[Request]:
        """Requests this server got for ``account``: ``token``, ``jobs``, ``tasks``,
        ``reserved_units``, ``processors`` or ``ams`` (any of the last four)."""
        found = []
        for request in self.server.requests:
            routed = self._route(request)
            if routed is not None and routed[0] is account and kind in (routed[1], _api(routed[1])):
                found.append(request)
        return found

    def handle(self, request: Request) -> Reply:
        """The answer to one request."""
        reply = self._answer(request)
        if self.delay and isinstance(reply, Answer):
            return replace(reply, delay=reply.delay + self.delay)
        return reply

    def _answer(self, request: Request) -> Reply:
        if request.path == "/" and self.root is not None:
            return self.root(request)
        routed = self._route(request)
        if routed is None:
            return odata_error(404, "ResourceNotFound", "no such resource on the hostile server")
        account, kind = routed
        if kind == "discovery":
            return (account.on_discovery or self._discovery)(request)
        if kind == "token":
            return self._token(account, request)
        refusal = _refuse_unauthorized(account, request)
        if refusal is not None:
            return refusal
        if kind == "jobs":
            return (account.on_jobs or (lambda r: self.jobs_answer(account, r)))(request)
        if kind == "reserved_units":
            regular = collection(account.reserved_units, "EncodingReservedUnitTypes")
            return (account.on_reserved_units or (lambda _r: odata_answer(regular)))(request)
        if kind == "processors":
            regular = collection(account.processors, "MediaProcessors")
            return (account.on_processors or (lambda _r: odata_answer(regular)))(request)
        return (account.on_tasks or (lambda r: self.tasks_answer(account, r)))(request)

    def _route(self, request: Request) -> tuple[Account, str] | None:
        path = request.path
        for pattern, kind, method in (
            (_DISCOVERY, "discovery", "GET"),
            (_TOKEN, "token", "POST"),
        ):
            match = pattern.fullmatch(path)
            if match and request.method == method and match.group(1) in self._by_tenant:
                return self._by_tenant[match.group(1)], kind
        for pattern, kind in (
            (_TASKS, "tasks"),
            (_JOBS, "jobs"),
            (_RESERVED_UNITS, "reserved_units"),
            (_PROCESSORS, "processors"),
        ):
            match = pattern.fullmatch(path)
            if match and request.method == "GET":
                account = self._by_prefix.get(match.group(1) or "")
                return (account, kind) if account is not None else None
        return None

    def _discovery(self, request: Request) -> Reply:
        tenant = request.path.split("/")[1]
        base = f"{self.base()}/{tenant}"
        return json_answer(
            {
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "token_endpoint_auth_methods_supported": [
                    "client_secret_post",
                    "private_key_jwt",
                    "client_secret_basic",
                ],
                "jwks_uri": f"{base}/discovery/v2.0/keys",
                "response_modes_supported": ["query", "fragment", "form_post"],
                "subject_types_supported": ["pairwise"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
                "scopes_supported": ["openid", "profile", "email", "offline_access"],
                "issuer": f"{base}/v2.0",
                "request_uri_parameter_supported": False,
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
                "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
                "tenant_region_scope": None,
            },
            content_type=PLAIN_JSON,
        )

    def _token(self, account: Account, request: Request) -> Reply:
        form = dict(parse_qsl(request.body.decode("utf-8", "replace"), keep_blank_values=True))
        token = self._registry.mint(opaque=account.opaque_tokens)
        account.minted.append(token)
        if (
            form.get("grant_type") != "client_credentials"
            or form.get("client_id") != account.client_id
            or form.get("client_secret") != SECRET
            or form.get("scope") != f"{RESOURCE}/.default"
        ):
            return json_answer(
                {
                    "error": "invalid_client",
                    "error_description": "AADSTS7000215: Invalid client secret provided.",
                    "error_codes": [7000215],
                },
                status=401,
                content_type=PLAIN_JSON,
            )
        if account.on_token is not None:
            return account.on_token(request, token)
        return token_answer(account, token)

    def jobs_answer(self, account: Account, request: Request) -> Answer:
        """The regular answer to a Jobs request: a page of ``account.jobs``."""
        top = _int(request.query.get("$top"), 1000)
        skip = _int(request.query.get("$skip"), 0)
        return Answer(200, collection(account.jobs[skip : skip + top]), _ODATA_HEADERS)

    def tasks_answer(self, account: Account, request: Request) -> Answer:
        """The regular answer to a Tasks request: ``account.tasks`` of the job, 404 if unknown."""
        match = _TASKS.fullmatch(request.path)
        job_id = match.group(2).replace("''", "'") if match else ""
        if not any(job.get("Id") == job_id for job in account.jobs):
            return odata_error(404, "ResourceNotFound", "no job with this Id")
        return Answer(200, collection(account.tasks.get(job_id, []), "Tasks"), _ODATA_HEADERS)


_ODATA_HEADERS = (
    ("Content-Type", ODATA_JSON),
    ("DataServiceVersion", "3.0;"),
    ("Cache-Control", "no-cache"),
    ("X-Content-Type-Options", "nosniff"),
)


def token_answer(account: Account, token: str) -> Answer:
    """The regular token response, with the account's ``expires_in``."""
    return json_answer(
        {
            "token_type": "Bearer",
            "expires_in": account.expires_in,
            "ext_expires_in": account.expires_in,
            "access_token": token,
        },
        content_type=PLAIN_JSON,
    )


def _api(kind: str) -> str:
    return "ams" if kind in _AMS_KINDS else kind


def _int(text: str | None, default: int) -> int:
    try:
        return int(text) if text is not None else default
    except ValueError:
        return default


def _refuse_unauthorized(account: Account, request: Request) -> Reply | None:
    if request.bearer is None or request.bearer not in account.minted:
        return Answer(401, b"", (("WWW-Authenticate", 'Bearer error="invalid_token"'),))
    if "x-ms-version" not in request.headers:
        return odata_error(400, "MissingRequiredHeader", "x-ms-version is required")
    return None


def odata_error(status: int, code: str, message: str) -> Answer:
    body = {"odata.error": {"code": code, "message": {"lang": "en-US", "value": message}}}
    return json_answer(body, status=status)


def json_answer(
    document: object,
    *,
    status: int = 200,
    content_type: str = ODATA_JSON,
    headers: Sequence[tuple[str, str]] = (),
) -> Answer:
    """``document`` as a JSON answer."""
    body = json.dumps(document).encode()
    return Answer(status, body, (("Content-Type", content_type), *headers))


def odata_answer(body: bytes) -> Answer:
    """A 200 answer with ``body`` as is, typed as AMS types its JSON."""
    return Answer(200, body, _ODATA_HEADERS)


# ---------------------------------------------------------------------------------------------
# Entities


def iso(ts: float) -> str:
    """A date as the minimal JSON shape writes it: zone-less ISO with milliseconds."""
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]


def new_job_id() -> str:
    """``nb:jid:UUID:<guid>``."""
    return f"nb:jid:UUID:{uuid.uuid4()}"


def new_task_id() -> str:
    """``nb:tid:UUID:<guid>``."""
    return f"nb:tid:UUID:{uuid.uuid4()}"


FINAL_STATES = (3, 4, 5)


def job(
    state: int = 2,
    *,
    name: str | None = None,
    started: float | None = 300.0,
    ended: float | None = 60.0,
    created: float = 600.0,
    running_ms: object = 0.0,
    priority: object = 0,
) -> dict[str, Any]:
    """A Jobs entity; times are seconds ago. Only final states get an EndTime."""
    now = time.time()
    job_id = new_job_id()
    return {
        "Id": job_id,
        "Name": name if name is not None else f"hostile-{job_id[-12:]}",
        "State": state,
        "Created": iso(now - created),
        "LastModified": iso(now - (ended if state in FINAL_STATES and ended else 1.0)),
        "StartTime": iso(now - started) if started is not None and state != 0 else None,
        "EndTime": iso(now - ended) if ended is not None and state in FINAL_STATES else None,
        "Priority": priority,
        "RunningDuration": running_ms,
    }


def task(
    *,
    progress: object = 50.0,
    state: int = 2,
    name: str | None = None,
    running_ms: object = 0.0,
    processor_id: object = None,
) -> dict[str, Any]:
    """A Tasks entity of a running task; ``processor_id`` is its MediaProcessorId (left out when
    ``None``: a task that names no processor)."""
    now = time.time()
    task_id = new_task_id()
    entity: dict[str, Any] = {
        "Id": task_id,
        "Name": name if name is not None else f"task-{task_id[-12:]}",
        "State": state,
        "Progress": progress,
        "RunningDuration": running_ms,
        "StartTime": iso(now - 200),
        "EndTime": None,
        "ErrorDetails": [],
    }
    if processor_id is not None:
        entity["MediaProcessorId"] = processor_id
    return entity


# The documented Id of Media Encoder Standard; the other processors' Ids are not documented.
MES_ID = "nb:mpid:UUID:ff4df607-d419-42f0-bc17-a481b1331e56"


def new_processor_id() -> str:
    """``nb:mpid:UUID:<guid>``."""
    return f"nb:mpid:UUID:{uuid.uuid4()}"


def reserved_units(
    unit_type: object = 0, current: object = 10, maximum: object = 25
) -> dict[str, Any]:
    """An EncodingReservedUnitTypes entity (ReservedUnitType 0, 1, 2 for S1, S2, S3)."""
    return {
        "AccountId": str(uuid.uuid4()),
        "ReservedUnitType": unit_type,
        "CurrentReservedUnits": current,
        "MaxReservableUnits": maximum,
    }


def processor(
    name: object = "Media Encoder Standard", version: object = "1.1", processor_id: object = None
) -> dict[str, Any]:
    """A MediaProcessors entity (a new Id unless one is given)."""
    return {
        "Id": new_processor_id() if processor_id is None else processor_id,
        "Description": name,
        "Name": name,
        "Sku": "",
        "Vendor": "Microsoft",
        "Version": version,
    }


def collection(entities: Sequence[Mapping[str, Any]], entity_set: str = "Jobs") -> bytes:
    """A minimal-metadata collection body."""
    document = {
        "odata.metadata": f"https://hostile.test/api/$metadata#{entity_set}",
        "value": list(entities),
    }
    return json.dumps(document).encode()


def collection_of_raw(entities: Sequence[bytes], entity_set: str = "Jobs") -> bytes:
    """A collection body from entity texts written by hand (``NaN``, invalid UTF-8 ...)."""
    head = f'{{"odata.metadata":"https://hostile.test/api/$metadata#{entity_set}","value":['
    return head.encode() + b",".join(entities) + b"]}"


# ---------------------------------------------------------------------------------------------
# Configuration


@dataclass(frozen=True)
class Verbatim:
    """YAML text written as is (a tab, an unquoted ``$VAR`` ...)."""

    text: str


def account_entry(
    azure: HostileAzure, account: Account, pki: Pki, **overrides: Any
) -> dict[str, Any]:
    """The ``accounts`` entry of ``account``; ``overrides`` replace keys, ``None`` drops one."""
    entry: dict[str, Any] = {
        "name": account.name,
        "endpoint": azure.endpoint(account),
        "authority_host": azure.base(),
        "resource": RESOURCE,
        "tenant": account.tenant,
        "client_id": account.client_id,
        "client_secret": "${" + SECRET_VARIABLE + "}",
        "ca_file": str(pki.ca_file),
        "timeout": "10s",
        "jobs": {"finished_window": "24h", "max_jobs": 2000, "tasks": True},
    }
    entry.update(overrides)
    return {key: value for key, value in entry.items() if value is not None}


def config_text(entries: Sequence[Mapping[str, Any]]) -> str:
    """A configuration file with these accounts."""
    lines = ["accounts:"]
    for entry in entries:
        items = _yaml_lines(entry, "    ")
        lines.append("  - " + items[0].lstrip())
        lines.extend(items[1:])
    return "\n".join(lines) + "\n"


def write_config(
    folder: Path, entries: Sequence[Mapping[str, Any]], name: str = "config.yml"
) -> Path:
    """Write :func:`config_text` into ``folder``."""
    path = folder / name
    path.write_text(config_text(entries), encoding="utf-8")
    return path


def _yaml_lines(mapping: Mapping[str, Any], indent: str) -> list[str]:
    lines = []
    for key, value in mapping.items():
        name = key if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key) else json.dumps(key)
        if isinstance(value, Mapping):
            lines.append(f"{indent}{name}:")
            lines.extend(_yaml_lines(value, indent + "  "))
        else:
            lines.append(f"{indent}{name}: {_yaml_scalar(value)}")
    return lines


def _yaml_scalar(value: Any) -> str:
    if isinstance(value, Verbatim):
        return value.text
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_yaml_scalar(item) for item in value) + "]"
    return json.dumps(str(value))
