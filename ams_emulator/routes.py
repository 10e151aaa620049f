"""Which API a path belongs to, and the answer for it: AMS REST, the legacy root, or Azure AD.

The transport (``server.py``) calls :meth:`Dispatcher.api_of` to pick faults and
:meth:`Dispatcher.respond` for everything answered with an HTTP response.
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from urllib.parse import parse_qsl, unquote_plus

from ams_emulator.aad import MANAGED_IDENTITY_PATH, AadError, AadReply, AzureAd
from ams_emulator.faults import Fired
from ams_emulator.messages import Request, Response, json_bytes, json_response
from ams_emulator.rest import AmsRest

_DISCOVERY = re.compile(r"^/(?P<tenant>[^/]+)(?P<v2>/v2\.0)?/\.well-known/openid-configuration$")
_TOKEN = re.compile(r"^/(?P<tenant>[^/]+)/oauth2(?P<v2>/v2\.0)?/token$")
_KEYS = re.compile(r"^/(?P<tenant>[^/]+)/discovery(?:/v2\.0)?/keys$")
_API = re.compile(r"^/api(?:/(?P<rel>.*))?$", re.IGNORECASE)
_MAX_FORM_FIELDS = 50
_MOVED_HTML = (
    '<html><head><title>Object moved</title></head><body>\r\n<h2>Object moved to <a href="{0}">'
    "here</a>.</h2>\r\n</body></html>\r\n"
)


class Dispatcher:
    """Routes decoded requests to the AMS REST API or Azure AD."""

    def __init__(self, rest: AmsRest, aad: AzureAd, account_endpoint: str, legacy_endpoint: str):
        self.rest = rest
        self.aad = aad
        self.account_endpoint = account_endpoint
        self.legacy_endpoint = legacy_endpoint

    @staticmethod
    def api_of(path: str) -> str:
        """``"aad"`` for Azure AD paths, else ``"ams"`` (unknown paths get the AMS 404)."""
        if path == MANAGED_IDENTITY_PATH or any(p.match(path) for p in (_DISCOVERY, _TOKEN, _KEYS)):
            return "aad"
        return "ams"

    def respond(self, request: Request, fired: Fired) -> Response:
        if self.api_of(request.path) == "aad":
            return self._aad(request, fired)
        api = _API.match(request.path)
        if api is None:
            answer = self.rest.fault_answer(request, fired)
            if answer is not None:
                return answer
            if request.path in ("/", ""):
                return self._legacy_root(fired)
            return self.rest.unknown_path(request)
        return self.rest.respond(request, api["rel"] or "", fired)

    def _legacy_root(self, fired: Fired) -> Response:
        """The pre-AAD ``media.windows.net`` root: a 301 to the account's cluster host."""
        looping = fired.fault is not None and fired.fault.kind == "redirect_loop"
        target = self.legacy_endpoint if looping else self.account_endpoint
        body = _MOVED_HTML.format(target).encode("ascii")
        return Response(
            301,
            [("Location", target), ("Content-Type", "text/html; charset=utf-8")],
            body,
        )

    # ---- Azure AD ----------------------------------------------------------------------------

    def _aad(self, request: Request, fired: Fired) -> Response:
        fault_response = self._aad_fault(fired)
        if fault_response is not None:
            return fault_response
        reply = self._aad_reply(request)
        headers = [
            ("Cache-Control", "no-store, no-cache"),
            ("Pragma", "no-cache"),
            ("x-ms-request-id", str(uuid.uuid4())),
        ]
        client_request_id = request.header("client-request-id")
        if client_request_id is not None and len(client_request_id) <= 100:
            headers.append(("client-request-id", client_request_id))
        return json_response(reply.status, reply.body, headers=headers)

    def _aad_reply(self, request: Request) -> AadReply:
        if request.path == MANAGED_IDENTITY_PATH:
            if request.method != "GET":
                return AadReply(405, {"statusCode": 405, "message": "Use GET for this endpoint."})
            return self.aad.managed_identity(request.query, request.header("x-identity-header"))
        discovery = _DISCOVERY.match(request.path)
        if discovery is not None:
            version = "v2.0" if discovery["v2"] else "v1.0"
            return self.aad.openid_configuration(discovery["tenant"], version)
        keys = _KEYS.match(request.path)
        if keys is not None:
            return self.aad.keys(keys["tenant"])
        token = _TOKEN.match(request.path)
        assert token is not None  # api_of() only sends AAD paths here
        return self._token(request, token["tenant"], "v2.0" if token["v2"] else "v1.0")

    def _token(self, request: Request, tenant: str, version: str) -> AadReply:
        correlation = request.header("client-request-id")
        if request.method != "POST":
            return self.aad.error_reply(
                AadError(
                    400, "invalid_request", 900561, "The endpoint only accepts POST requests."
                ),
                correlation,
            )
        content_type = (request.header("content-type") or "").split(";")[0].strip().lower()
        if content_type != "application/x-www-form-urlencoded":
            return self.aad.error_reply(
                AadError(
                    400,
                    "invalid_request",
                    900144,
                    "The request body must be application/x-www-form-urlencoded.",
                ),
                correlation,
            )
        try:
            form = _parse_form(request.body)
            basic = _basic_credentials(request.header("authorization"))
        except ValueError as exc:
            return self.aad.error_reply(
                AadError(400, "invalid_request", 900144, str(exc)), correlation
            )
        return self.aad.token(tenant, version, form, basic, correlation)

    def _aad_fault(self, fired: Fired) -> Response | None:
        fault = fired.fault
        if fault is None:
            return None
        if fault.kind == "status":
            reply = self.aad.unavailable_reply(fault.status, fired.message)
            headers = []
            retry_after = (
                fault.retry_after
                if fault.retry_after is not None
                else (1 if fault.status == 429 else None)
            )
            if retry_after is not None:
                headers.append(("Retry-After", str(retry_after)))
            return json_response(reply.status, reply.body, headers=headers)
        if fault.kind == "malformed_json":
            return Response(
                200,
                [("Content-Type", "application/json; charset=utf-8")],
                b'{"token_type":"Bearer","expires_in":3599,"access_token":"eyJ0eX',
            )
        if fault.kind == "wrong_shape":
            return Response(
                200,
                [("Content-Type", "application/json; charset=utf-8")],
                json_bytes({"status": "ok", "items": "none"}),
            )
        return None


def _parse_form(body: bytes) -> dict[str, str]:
    """A form body; repeated fields are an error (Azure AD rejects them too)."""
    try:
        text = body.decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, max_num_fields=_MAX_FORM_FIELDS)
    except UnicodeDecodeError:
        raise ValueError("The request body is not valid UTF-8.") from None
    except ValueError:
        raise ValueError("The request body has too many fields.") from None
    form: dict[str, str] = {}
    for name, value in pairs:
        if name in form:
            raise ValueError(f"The request body contains the parameter '{name[:40]}' twice.")
        form[name] = value
    return form


def _basic_credentials(header: str | None) -> tuple[str, str] | None:
    """``Authorization: Basic`` client credentials (client_secret_basic), form-decoded."""
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise ValueError("The Authorization header is not valid Basic credentials.") from None
    user, sep, password = decoded.partition(":")
    if not sep:
        raise ValueError("The Authorization header is not valid Basic credentials.")
    return unquote_plus(user), unquote_plus(password)
