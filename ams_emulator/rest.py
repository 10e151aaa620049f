"""The AMS v2 REST API under ``/api/``: headers, routing, the two JSON shapes and error bodies.

The modelled entity sets are Jobs, Tasks, MediaProcessors and EncodingReservedUnitTypes; the
other sets of the service document answer an empty collection.

Follows the AMS v2 REST documentation (endpoints, headers and shapes, query options, errors).
Order of checks: ``Accept`` (415 for anything but JSON; Atom is not emulated), the bearer token
(401), ``x-ms-version`` and the data service versions (400), then the route (404) and the query
options (400).
"""

from __future__ import annotations

import dataclasses
import re
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timezone
from typing import Any, Literal, Protocol

from ams_emulator.edmx import metadata_document
from ams_emulator.entities import (
    ENTITY_TYPES,
    EmuJob,
    EmuMediaProcessor,
    EmuReservedUnitType,
    EmuTask,
    Entity,
    Kind,
    canonical_guid,
)
from ams_emulator.faults import Fault, Fired
from ams_emulator.messages import Request, Response, json_bytes
from ams_emulator.query import ODataQueryError, QueryOptions, parse_query
from ams_emulator.serialize import DateFormat, dumps_verbose, to_minimal, to_verbose

Shape = Literal["minimal", "verbose"]
CONTENT_TYPES: dict[Shape, str] = {
    "minimal": "application/json;odata=minimalmetadata;streaming=true;charset=utf-8",
    "verbose": "application/json;odata=verbose;charset=utf-8",
}
SUPPORTED_VERSIONS = frozenset(f"2.{minor}" for minor in range(20))  # .NET KnownApiVersions
MAX_CLIENT_REQUEST_ID = 2096
# The 23 entity sets of the service document, in the order the service listed them.
ENTITY_SETS = (
    "AccessPolicies",
    "Locators",
    "ContentKeys",
    "ContentKeyAuthorizationPolicyOptions",
    "ContentKeyAuthorizationPolicies",
    "Files",
    "Assets",
    "AssetDeliveryPolicies",
    "IngestManifestFiles",
    "IngestManifestAssets",
    "IngestManifests",
    "StorageAccounts",
    "Tasks",
    "NotificationEndPoints",
    "Jobs",
    "TaskTemplates",
    "JobTemplates",
    "MediaProcessors",
    "EncodingReservedUnitTypes",
    "Operations",
    "StreamingEndpoints",
    "Channels",
    "Programs",
)
_KEY = r"\((?:'(?P<key>(?:[^']|'')*)'|guid'(?P<guid>[^']*)')\)"  # a string or a GUID literal
_COLLECTION = re.compile(r"^(?P<set>[A-Za-z]+)(?:\(\))?$")
_ENTITY = re.compile(rf"^(?P<set>[A-Za-z]+){_KEY}(?:/(?P<prop>[A-Za-z]+))?$")
_SYNTAX_ERROR = "Bad Request - Error in query syntax."
_DATA_SERVICE_VERSION = re.compile(r"^\s*(?P<major>\d+)\.(?P<minor>\d+)\s*(?:;.*)?$")
_NOT_FOR_SINGLE = ("$filter", "$orderby", "$skip", "$top")
_HUGE_MARKER = "feedfacecafe"
_HUGE_CHUNK = 64 * 1024


class EntitySource(Protocol):
    """What the REST layer reads from the store (``ams_emulator.store.JobStore``)."""

    def list_jobs(self, options: QueryOptions) -> list[EmuJob]: ...
    def get_job(self, job_id: str) -> EmuJob | None: ...
    def list_tasks(self, options: QueryOptions, job_id: str | None = None) -> list[EmuTask]: ...
    def get_task(self, task_id: str) -> EmuTask | None: ...
    def list_media_processors(self, options: QueryOptions) -> list[EmuMediaProcessor]: ...
    def get_media_processor(self, processor_id: str) -> EmuMediaProcessor | None: ...
    def list_reserved_unit_types(self, options: QueryOptions) -> list[EmuReservedUnitType]: ...
    def get_reserved_unit_type(self, account_id: str) -> EmuReservedUnitType | None: ...


class ApiError(Exception):
    """An error answer in the OData error shape."""

    def __init__(self, status: int, message: str, headers: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, list(headers)


def negotiate(accept: str | None) -> Shape | None:
    """The JSON shape ``Accept`` asks for; None when it accepts no JSON at all."""
    if not accept or not accept.strip():
        return "minimal"
    fallback: Shape | None = None
    for item in accept.split(","):
        media, *params = (p.strip().lower() for p in item.split(";"))
        if media == "application/json":
            if "odata=verbose" in (p.replace(" ", "") for p in params):
                return "verbose"
            return "minimal"
        if media in ("*/*", "application/*"):
            fallback = "minimal"
    return fallback


def error_body(shape: Shape, message: str) -> dict[str, Any]:
    """``odata.error`` (minimal metadata) or ``error`` (verbose), with an empty code as captured."""
    inner = {"code": "", "message": {"lang": "en-US", "value": message}}
    return {"odata.error" if shape == "minimal" else "error": inner}


def _dump(shape: Shape, payload: Any) -> bytes:
    return dumps_verbose(payload).encode("utf-8") if shape == "verbose" else json_bytes(payload)


def _entity_key(set_name: str, match: re.Match[str]) -> str:
    """The key of ``Set('...')`` or ``Set(guid'...')``; 400 when the literal does not fit the
    set's key type (a GUID key takes only a GUID literal, a string key only a string)."""
    guid = match["guid"]
    if ENTITY_TYPES[set_name].has_guid_key != (guid is not None):
        raise ApiError(400, _SYNTAX_ERROR)
    if guid is None:
        return match["key"].replace("''", "'")
    key = canonical_guid(guid)
    if key is None:
        raise ApiError(400, f"Unrecognized 'Edm.Guid' literal 'guid'{guid[:40]}''.")
    return key


class AmsRest:
    """Answers requests under ``/api/`` from an :class:`EntitySource`."""

    def __init__(
        self,
        store: EntitySource,
        check_token: Callable[[str], str | None],
        account_endpoint: str,
        date_format: DateFormat = "iso",
    ) -> None:
        self.store = store
        self.check_token = check_token
        self.base = account_endpoint if account_endpoint.endswith("/") else account_endpoint + "/"
        self.date_format: DateFormat = date_format
        self._lists: dict[str, Callable[[QueryOptions], Sequence[Entity]]] = {
            "Jobs": store.list_jobs,
            "Tasks": store.list_tasks,
            "MediaProcessors": store.list_media_processors,
            "EncodingReservedUnitTypes": store.list_reserved_unit_types,
        }
        self._gets: dict[str, Callable[[str], Entity | None]] = {
            "Jobs": store.get_job,
            "Tasks": store.get_task,
            "MediaProcessors": store.get_media_processor,
            "EncodingReservedUnitTypes": store.get_reserved_unit_type,
        }

    # ---- entry point -------------------------------------------------------------------------

    def respond(self, request: Request, rel: str, fired: Fired) -> Response:
        """Answer ``request``; ``rel`` is the decoded path after ``/api/``.

        An injected fault that replaces the answer (status, bodies) comes before any validation,
        as a front end failing would.
        """
        answer = self.fault_answer(request, fired)
        if answer is not None:
            return answer
        shape = negotiate(request.header("accept"))
        try:
            if shape is None:
                raise ApiError(
                    415,
                    "Unsupported media type requested: this service answers application/json "
                    "(minimal metadata or odata=verbose).",
                )
            self._check_headers(request, rel)
            response = self._route(request, rel, shape, fired)
        except ApiError as exc:
            response = self.error_response(shape or "minimal", exc.status, exc.message)
            response.headers.extend(exc.headers)
        return self._finish(request, response)

    def fault_answer(self, request: Request, fired: Fired) -> Response | None:
        """The answer of an injected fault that replaces the normal one, else None."""
        if fired.fault is None:
            return None
        shape = negotiate(request.header("accept")) or "minimal"
        try:
            response = self._fault_response(request, shape, fired.fault, fired.message)
        except ApiError as exc:
            response = self.error_response(shape, exc.status, exc.message)
        return self._finish(request, response) if response is not None else None

    def unknown_path(self, request: Request) -> Response:
        """404 for a path outside ``/api/`` (and not Azure AD's)."""
        shape = negotiate(request.header("accept")) or "minimal"
        segment = request.path.strip("/").split("/")[0][:80]
        response = self.error_response(
            shape, 404, f"Resource not found for the segment '{segment}'."
        )
        return self._finish(request, response)

    def error_response(self, shape: Shape, status: int, message: str) -> Response:
        return Response(
            status,
            [("Content-Type", CONTENT_TYPES[shape])],
            _dump(shape, error_body(shape, message)),
        )

    def _finish(self, request: Request, response: Response) -> Response:
        request_id = str(uuid.uuid4())
        response.headers += [
            ("request-id", request_id),
            ("x-ms-request-id", request_id),
            ("DataServiceVersion", "3.0;"),
            ("Cache-Control", "no-cache"),
            ("X-Content-Type-Options", "nosniff"),
            ("Strict-Transport-Security", "max-age=31536000; includeSubDomains"),
        ]
        for name in ("x-ms-client-request-id", "client-request-id"):
            value = request.header(name)
            if value is not None and len(value.encode()) <= MAX_CLIENT_REQUEST_ID:
                response.headers.append((name, value))
        return response

    # ---- request validation ------------------------------------------------------------------

    def _check_headers(self, request: Request, rel: str) -> None:
        self._authorize(request.header("authorization"))
        version = request.header("x-ms-version")
        if version is None and rel == "$metadata" and "api-version" in request.query:
            version = request.query["api-version"]
        if version is None:
            raise ApiError(
                400, "The 'x-ms-version' header is required; supported versions are 2.0 to 2.19."
            )
        if version.strip() not in SUPPORTED_VERSIONS:
            raise ApiError(
                400,
                f"The API version '{version[:40]}' is not supported; supported versions are "
                "2.0 to 2.19.",
            )
        for name in ("dataserviceversion", "maxdataserviceversion"):
            self._check_data_service_version(name, request.header(name))
        for name in ("x-ms-client-request-id", "client-request-id"):
            value = request.header(name)
            if value is not None and len(value.encode()) > MAX_CLIENT_REQUEST_ID:
                raise ApiError(400, f"The '{name}' header must be at most 2096 bytes long.")
        if request.method not in ("GET", "HEAD"):
            raise ApiError(
                405,
                f"The method '{request.method}' is not supported by this emulator.",
                [("Allow", "GET")],
            )
        if request.repeated_options:
            name = request.repeated_options[0]
            raise ApiError(400, f"Query option '{name}' was specified more than once.")

    def _authorize(self, header: str | None) -> None:
        challenge = [("WWW-Authenticate", "Bearer")]
        if not header:
            raise ApiError(401, "The Authorization header is missing.", challenge)
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, "The Authorization header must be 'Bearer <token>'.", challenge)
        problem = self.check_token(token.strip())
        if problem is not None:
            raise ApiError(401, problem, challenge)

    @staticmethod
    def _check_data_service_version(name: str, value: str | None) -> None:
        if value is None:
            return  # the service assumes 3.0
        match = _DATA_SERVICE_VERSION.match(value)
        display = "DataServiceVersion" if name == "dataserviceversion" else "MaxDataServiceVersion"
        if match is None:
            raise ApiError(400, f"The {display} header value '{value[:40]}' is not valid.")
        if int(match["major"]) > 3 or (name == "maxdataserviceversion" and int(match["major"]) < 3):
            raise ApiError(
                400,
                f"Request version '{value[:40]}' in {display} is not supported for the request; "
                "this service supports versions 1.0 to 3.0 and responds with 3.0.",
            )

    # ---- routing -----------------------------------------------------------------------------

    def _route(self, request: Request, rel: str, shape: Shape, fired: Fired) -> Response:
        if rel == "":
            return self._service_document(shape)
        if rel == "$metadata":
            return Response(
                200, [("Content-Type", "application/xml;charset=utf-8")], metadata_document()
            )
        collection = _COLLECTION.match(rel)
        if collection is not None:
            return self._collection(request, collection["set"], shape, fired)
        entity = _ENTITY.match(rel)
        if entity is not None and entity["set"] in ENTITY_TYPES:
            key = _entity_key(entity["set"], entity)
            return self._entity(
                request, entity["set"], key, prop=entity["prop"], shape=shape, fired=fired
            )
        first = re.split(r"[/(]", rel, maxsplit=1)[0]
        if first in ENTITY_SETS and "(" in rel:
            raise ApiError(400, _SYNTAX_ERROR)
        raise ApiError(404, f"Resource not found for the segment '{first[:80]}'.")

    def _service_document(self, shape: Shape) -> Response:
        if shape == "verbose":
            payload: dict[str, Any] = {"d": {"EntitySets": list(ENTITY_SETS)}}
        else:
            payload = {
                "odata.metadata": f"{self.base}$metadata",
                "value": [{"name": name, "url": name} for name in ENTITY_SETS],
            }
        return self._ok(shape, payload)

    def _collection(self, request: Request, set_name: str, shape: Shape, fired: Fired) -> Response:
        if set_name not in ENTITY_SETS:
            raise ApiError(404, f"Resource not found for the segment '{set_name[:80]}'.")
        if set_name not in ENTITY_TYPES:
            return self._ok(shape, self._envelope(shape, set_name, [], None))  # nothing modelled
        options = self._options(request, set_name, fired)
        items = self._lists[set_name](options)
        return self._ok(shape, self._envelope(shape, set_name, items, options.select))

    def _entity(
        self,
        request: Request,
        set_name: str,
        key: str,
        *,
        prop: str | None,
        shape: Shape,
        fired: Fired,
    ) -> Response:
        found = self._gets[set_name](key)
        if found is None:
            raise ApiError(404, f"Resource not found for the segment '{set_name}'.")
        if prop is None:
            options = self._options(request, set_name, fired)
            self._reject_collection_options(request)
            return self._ok(shape, self._single(shape, set_name, found, options.select))
        if set_name == "Jobs" and prop == "Tasks":
            options = self._options(request, "Tasks", fired)
            try:
                tasks = self.store.list_tasks(options, job_id=found.id)
            except KeyError:  # deleted since it was looked up
                raise ApiError(404, "Resource not found for the segment 'Jobs'.") from None
            return self._ok(shape, self._envelope(shape, "Tasks", tasks, options.select))
        return self._property(request, set_name, found, prop, shape)

    def _property(
        self, request: Request, set_name: str, entity: Entity, prop: str, shape: Shape
    ) -> Response:
        definition = ENTITY_TYPES[set_name].prop(prop)
        if definition is None:
            raise ApiError(404, f"Resource not found for the segment '{prop}'.")
        if any(name.startswith("$") for name in request.query):
            raise ApiError(400, "Query options cannot be applied to the requested resource.")
        if definition.kind is Kind.NAVIGATION:  # asset links: no assets are modelled
            return self._ok(shape, self._envelope(shape, "Assets", [], None))
        if shape == "verbose":
            value = to_verbose(entity, self.base, [prop], self.date_format)[prop]
            return self._ok(shape, {"d": {prop: value}})
        edm = (
            definition.collection_type
            if definition.kind is Kind.COLLECTION
            else definition.kind.value
        )
        value = to_minimal(entity, self.base, [prop])[prop]
        return self._ok(shape, {"odata.metadata": f"{self.base}$metadata#{edm}", "value": value})

    # ---- query options -----------------------------------------------------------------------

    def _options(self, request: Request, set_name: str, fired: Fired) -> QueryOptions:
        try:
            options = parse_query(request.query, set_name)
        except ODataQueryError as exc:
            raise ApiError(400, str(exc)) from None
        if fired.fault is not None and fired.fault.kind == "repeat_page" and options.skip > 0:
            # As if a job had been inserted ahead of this page since the previous one was read.
            options = dataclasses.replace(options, skip=options.skip - 1)
        return options

    @staticmethod
    def _reject_collection_options(request: Request) -> None:
        for name in _NOT_FOR_SINGLE:
            if name in request.query:
                raise ApiError(
                    400,
                    "Query options $filter, $orderby, $inlinecount, $skip and $top cannot be "
                    "applied to the requested resource.",
                )

    # ---- bodies ------------------------------------------------------------------------------

    def _serialize(
        self, shape: Shape, entity: Entity, select: Sequence[str] | None
    ) -> dict[str, Any]:
        if shape == "verbose":
            return to_verbose(entity, self.base, select, self.date_format)
        return to_minimal(entity, self.base, select)

    def _metadata_url(self, set_name: str, select: Sequence[str] | None, element: bool) -> str:
        url = f"{self.base}$metadata#{set_name}" + ("/@Element" if element else "")
        return url + (f"&$select={','.join(select)}" if select else "")

    def _envelope(
        self,
        shape: Shape,
        set_name: str,
        items: Sequence[Entity],
        select: Sequence[str] | None,
    ) -> dict[str, Any]:
        values = [self._serialize(shape, item, select) for item in items]
        if shape == "verbose":
            return {"d": {"results": values}}
        return {"odata.metadata": self._metadata_url(set_name, select, False), "value": values}

    def _single(
        self, shape: Shape, set_name: str, entity: Entity, select: Sequence[str] | None
    ) -> dict[str, Any]:
        body = self._serialize(shape, entity, select)
        if shape == "verbose":
            return {"d": body}
        return {"odata.metadata": self._metadata_url(set_name, select, True), **body}

    @staticmethod
    def _ok(shape: Shape, payload: Any) -> Response:
        return Response(200, [("Content-Type", CONTENT_TYPES[shape])], _dump(shape, payload))

    # ---- injected faults ---------------------------------------------------------------------

    def _fault_response(
        self, request: Request, shape: Shape, fault: Fault, message: str
    ) -> Response | None:
        if fault.kind == "status":
            response = self.error_response(shape, fault.status, message)
            retry_after = (
                fault.retry_after
                if fault.retry_after is not None
                else (1 if fault.status == 429 else None)
            )
            if retry_after is not None:
                response.add_header("Retry-After", str(retry_after))
            return response
        if fault.kind == "reject_datetime_filter":
            self._authorize(request.header("authorization"))
            return self.error_response(shape, 400, message)
        content_type = [("Content-Type", CONTENT_TYPES[shape])]
        if fault.kind == "malformed_json":
            body = f'{{"odata.metadata":"{self.base}$metadata#Jobs","value":[{{"Id":"nb:jid:UUID:'
            return Response(200, content_type, body.encode())
        if fault.kind == "wrong_shape":
            return Response(200, content_type, json_bytes({"status": "ok", "items": "none"}))
        if fault.kind == "huge":
            return self._huge(shape, fault.size)
        return None  # transport-level kinds (reset, truncated, slow_drip, latency)

    def _huge(self, shape: Shape, size: int) -> Response:
        """A valid Jobs collection of about ``size`` bytes, generated while it is sent."""
        now = datetime.now(timezone.utc)
        job = EmuJob(
            id=f"nb:jid:UUID:00000000-0000-4000-8000-{_HUGE_MARKER}",
            name="huge-response-filler",
            created=now,
            last_modified=now,
            start_time=None,
            end_time=None,
            priority=0,
            running_duration_ms=0.0,
            state=0,
        )
        entity = _dump(shape, self._serialize(shape, job, None)).decode("utf-8")
        if shape == "verbose":
            prefix, suffix = '{"d":{"results":[', "]}}"
        else:
            prefix, suffix = f'{{"odata.metadata":"{self.base}$metadata#Jobs","value":[', "]}"
        count = max(1, (size - len(prefix) - len(suffix) + 1) // (len(entity.encode()) + 1))
        length = len(prefix) + count * (len(entity.encode()) + 1) - 1 + len(suffix)

        def chunks() -> Iterator[bytes]:
            yield prefix.encode()
            buffer: list[str] = []
            for index in range(count):
                buffer.append(
                    ("," if index else "") + entity.replace(_HUGE_MARKER, f"{index:012x}")
                )
                if len(buffer) * len(entity) >= _HUGE_CHUNK:
                    yield "".join(buffer).encode()
                    buffer.clear()
            yield ("".join(buffer) + suffix).encode()

        return Response(200, [("Content-Type", CONTENT_TYPES[shape])], chunks(), length)
