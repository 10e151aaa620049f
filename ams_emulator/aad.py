"""The emulator's Azure AD: OIDC discovery, the v1/v2 token endpoints and a managed identity endpoint.

Only what a daemon needs: the ``client_credentials`` grant with a client secret (form field or HTTP
Basic) or a certificate client assertion (RS256 or PS256 JWT, verified against the registered
certificate), and the App Service managed identity protocol that MSAL's ``ManagedIdentityClient``
speaks when ``IDENTITY_ENDPOINT`` and ``IDENTITY_HEADER`` are set. Errors have Azure AD's JSON shape
(``error``, ``error_description`` starting with an AADSTS code, ``error_codes``, ``timestamp``,
``trace_id``, ``correlation_id``).

Access tokens are JWT-shaped and HMAC-signed with a key private to this emulator instance; the AMS
side validates them with :meth:`AzureAd.check_access_token`. Token times use the wall clock, not the
scenario clock, because MSAL caches tokens by wall-clock time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from ams_emulator.tls import ClientCertificate

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
MANAGED_IDENTITY_PATH = "/msi/token"
MANAGED_IDENTITY_API_VERSION = "2019-08-01"
# Other resources a real tenant would issue tokens for: a client that asks for the wrong one gets a
# token, and AMS then rejects it for its audience.
OTHER_RESOURCES = ("https://graph.microsoft.com", "https://management.azure.com")
CLOCK_SKEW = 300.0  # seconds Azure AD tolerates on client assertion times
_MAX_ECHO = 120  # user-supplied values quoted in error messages are cut to this length


@dataclass(frozen=True)
class AadReply:
    """An Azure AD answer: status and JSON body."""

    status: int
    body: dict[str, Any]


class AadError(Exception):
    """A request Azure AD refuses; becomes an :class:`AadReply` in Azure AD's error shape."""

    def __init__(self, status: int, error: str, code: int, description: str) -> None:
        super().__init__(f"AADSTS{code}: {description}")
        self.status, self.error, self.code, self.description = status, error, code, description


def _echo(value: str) -> str:
    return value if len(value) <= _MAX_ECHO else value[:_MAX_ECHO] + "..."


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _json_segment(segment: str) -> dict[str, Any]:
    value = json.loads(_b64url_decode(segment))
    if not isinstance(value, dict):
        raise ValueError("JWT segment is not a JSON object")
    return value


def split_jwt(token: str) -> tuple[dict[str, Any], dict[str, Any], bytes, bytes]:
    """(header, claims, signed bytes, signature); raises ValueError when malformed."""
    parts = token.split(".")
    if len(parts) != 3:
        raise ValueError("a JWT has three dot-separated parts")
    try:
        header, claims = _json_segment(parts[0]), _json_segment(parts[1])
        signature = _b64url_decode(parts[2])
    except (binascii.Error, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError("a JWT part is not base64url-encoded JSON") from exc
    return header, claims, f"{parts[0]}.{parts[1]}".encode("ascii"), signature


@dataclass
class _Revocation:
    """Tokens carry the generation they were issued in; older generations can be cut off."""

    generation: int = 0
    revoked_below: int = 0
    expired_below: int = 0


@dataclass(frozen=True)
class AadConfig:
    """The tenant, its one app registration and the resource tokens are issued for."""

    tenant: str
    tenant_id: str
    client_id: str
    client_secret: str
    resource: str
    client_certificate: ClientCertificate
    token_lifetime: float
    managed_identity_client_id: str
    managed_identity_header: str
    service_principal_id: str = field(default_factory=lambda: str(uuid.uuid4()))


class AzureAd:
    """Issues and checks tokens for one tenant. Thread-safe."""

    def __init__(self, config: AadConfig, authority_host: str) -> None:
        if config.token_lifetime <= 0:
            raise ValueError("token_lifetime must be positive")
        self.config = config
        self.authority_host = authority_host.rstrip("/")
        self._key = secrets.token_bytes(32)
        self._kid = secrets.token_hex(8)
        self._lock = threading.Lock()
        self._revocation = _Revocation()
        self.announced_expires_in: int | None = None

    # ---- tenants and endpoints -------------------------------------------------------------

    def knows_tenant(self, tenant: str) -> bool:
        t = tenant.lower()
        return t in (self.config.tenant.lower(), self.config.tenant_id.lower())

    def token_endpoint(self, tenant: str, version: str = "v2.0") -> str:
        suffix = "oauth2/v2.0/token" if version == "v2.0" else "oauth2/token"
        return f"{self.authority_host}/{tenant}/{suffix}"

    def _accepted_assertion_audiences(self) -> set[str]:
        return {
            self.token_endpoint(t, v)
            for t in (self.config.tenant, self.config.tenant_id)
            for v in ("v2.0", "v1.0")
        }

    def openid_configuration(self, tenant: str, version: str) -> AadReply:
        """Discovery document, with the tenant id in every URL as Azure AD writes it."""
        if not self.knows_tenant(tenant):
            return self.error_reply(self._unknown_tenant(tenant), None)
        tid, host = self.config.tenant_id, self.authority_host
        v2 = "/v2.0" if version == "v2.0" else ""
        oauth = "oauth2/v2.0" if version == "v2.0" else "oauth2"
        body = {
            "issuer": f"{host}/{tid}{v2}" if v2 else f"{host}/{tid}/",
            "token_endpoint": f"{host}/{tid}/{oauth}/token",
            "authorization_endpoint": f"{host}/{tid}/{oauth}/authorize",
            "device_authorization_endpoint": f"{host}/{tid}/{oauth}/devicecode",
            "end_session_endpoint": f"{host}/{tid}/{oauth}/logout",
            "jwks_uri": f"{host}/{tid}/discovery{v2}/keys",
            "token_endpoint_auth_methods_supported": [
                "client_secret_post",
                "private_key_jwt",
                "client_secret_basic",
            ],
            "response_modes_supported": ["query", "fragment", "form_post"],
            "response_types_supported": ["code", "id_token", "code id_token", "token id_token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nbf", "tid", "oid"],
            "request_uri_parameter_supported": False,
            "tenant_region_scope": "EU",
            "cloud_instance_name": "emulator.local",
            "cloud_graph_host_name": "graph.emulator.local",
            "msgraph_host": "graph.emulator.local",
        }
        return AadReply(200, body)

    def keys(self, tenant: str) -> AadReply:
        """The signing keys document; empty because access tokens are HMAC-signed."""
        if not self.knows_tenant(tenant):
            return self.error_reply(self._unknown_tenant(tenant), None)
        return AadReply(200, {"keys": []})

    # ---- the token endpoints ---------------------------------------------------------------

    def token(
        self,
        tenant: str,
        version: str,
        form: Mapping[str, str],
        basic: tuple[str, str] | None,
        correlation_id: str | None,
    ) -> AadReply:
        """``POST /{tenant}/oauth2/v2.0/token`` (version "v2.0") or ``/oauth2/token`` ("v1.0")."""
        try:
            return AadReply(200, self._client_credentials(tenant, version, form, basic))
        except AadError as exc:
            return self.error_reply(exc, correlation_id)

    def _client_credentials(
        self, tenant: str, version: str, form: Mapping[str, str], basic: tuple[str, str] | None
    ) -> dict[str, Any]:
        if not self.knows_tenant(tenant):
            raise self._unknown_tenant(tenant)
        grant = _required(form, "grant_type")
        if grant != "client_credentials":
            raise AadError(
                400,
                "unsupported_grant_type",
                70003,
                f"The app requested an unsupported grant type '{_echo(grant)}'.",
            )
        client_id = form.get("client_id") or (basic[0] if basic else "")
        if not client_id:
            raise _missing("client_id")
        if client_id.lower() != self.config.client_id.lower():
            raise AadError(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{_echo(client_id)}' was not found in the "
                f"directory '{_echo(tenant)}'. This can happen if the application has not been "
                "installed by the administrator of the tenant.",
            )
        resource = self._requested_resource(version, form, tenant)
        method = self._authenticate_client(form, basic)
        return self._issue(resource, self.config.client_id, method, version)

    def _requested_resource(self, version: str, form: Mapping[str, str], tenant: str) -> str:
        if version == "v1.0":
            return self._known_resource(_required(form, "resource"), tenant)
        scopes = _required(form, "scope").split()
        defaults = [s for s in scopes if s.endswith("/.default")]
        if len(scopes) != 1 or not defaults:
            raise AadError(
                400,
                "invalid_scope",
                1002012,
                f"The provided value for scope {_echo(' '.join(scopes))} is not valid. Client "
                "credential flows must have a scope value with /.default suffixed to the "
                "resource identifier (application ID URI).",
            )
        return self._known_resource(defaults[0].removesuffix("/.default"), tenant)

    def _known_resource(self, resource: str, tenant: str) -> str:
        wanted = resource.rstrip("/")
        for known in (self.config.resource, *OTHER_RESOURCES):
            if wanted.lower() == known.rstrip("/").lower():
                return known
        raise AadError(
            400,
            "invalid_resource",
            500011,
            f"The resource principal named {_echo(resource)} was not found in the tenant named "
            f"{_echo(tenant)}. This can happen if the application has not been installed by the "
            "administrator of the tenant or consented to by any user in the tenant.",
        )

    def _authenticate_client(self, form: Mapping[str, str], basic: tuple[str, str] | None) -> str:
        """Checks the secret or the assertion; returns "1" (secret) or "2" (certificate)."""
        secret = form.get("client_secret") or (basic[1] if basic else None)
        assertion = form.get("client_assertion")
        if secret and assertion:
            raise AadError(
                400,
                "invalid_request",
                9002313,
                "Invalid request: send either client_secret or client_assertion, not both.",
            )
        if assertion:
            if form.get("client_assertion_type") != ASSERTION_TYPE:
                raise AadError(
                    400,
                    "invalid_request",
                    9002313,
                    f"Invalid request: client_assertion_type must be '{ASSERTION_TYPE}'.",
                )
            self._verify_assertion(assertion)
            return "2"
        if not secret:
            raise AadError(
                401,
                "invalid_client",
                7000218,
                "The request body must contain the following parameter: 'client_assertion' or "
                "'client_secret'.",
            )
        if not hmac.compare_digest(secret.encode(), self.config.client_secret.encode()):
            raise AadError(
                401,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request is "
                f"the client secret value, not the client secret ID, for a secret added to app "
                f"'{self.config.client_id}'.",
            )
        return "1"

    def _verify_assertion(self, assertion: str) -> None:
        try:
            header, claims, signed, signature = split_jwt(assertion)
        except ValueError:
            raise _bad_assertion(50027, "JWT token is invalid or malformed.") from None
        cert = self.config.client_certificate
        thumbprints = {
            header.get("x5t"): cert.sha1_thumbprint,
            header.get("x5t#S256"): cert.sha256_thumbprint,
        }
        if not any(
            isinstance(k, str) and _thumbprint_matches(k, v) for k, v in thumbprints.items()
        ):
            raise _bad_assertion(
                700027,
                "Client assertion failed signature validation. [Reason - The key was not found.]",
            )
        _verify_rsa_signature(header.get("alg"), cert.certificate, signed, signature)
        self._check_assertion_claims(claims)

    def _check_assertion_claims(self, claims: Mapping[str, Any]) -> None:
        client_id = self.config.client_id.lower()
        if str(claims.get("iss", "")).lower() != client_id or (
            str(claims.get("sub", "")).lower() != client_id
        ):
            raise _bad_assertion(
                700021,
                "Client assertion application identifier doesn't match 'client_id' parameter.",
            )
        if claims.get("aud") not in self._accepted_assertion_audiences():
            raise _bad_assertion(
                700212, "The client assertion's audience claim does not match the token endpoint."
            )
        now = time.time()
        exp, nbf = claims.get("exp"), claims.get("nbf", claims.get("iat", now))
        if not isinstance(exp, (int, float)) or not isinstance(nbf, (int, float)):
            raise _bad_assertion(50027, "JWT token is invalid or malformed: no valid exp claim.")
        if exp + CLOCK_SKEW < now or nbf - CLOCK_SKEW > now:
            raise _bad_assertion(700024, "Client assertion is not within its valid time range.")

    # ---- the managed identity endpoint (App Service protocol) -----------------------------

    def managed_identity(self, query: Mapping[str, str], identity_header: str | None) -> AadReply:
        """``GET /msi/token?api-version=2019-08-01&resource=...`` with ``X-IDENTITY-HEADER``."""
        if identity_header is None or not hmac.compare_digest(
            identity_header.encode(), self.config.managed_identity_header.encode()
        ):
            return _mi_error(401, "The X-IDENTITY-HEADER header is missing or does not match.")
        if query.get("api-version") != MANAGED_IDENTITY_API_VERSION:
            return _mi_error(
                400, f"api-version must be {MANAGED_IDENTITY_API_VERSION} for this endpoint."
            )
        for key in ("mi_res_id", "object_id"):
            if key in query:
                return _mi_error(400, f"No managed identity found for the specified {key}.")
        client_id = query.get("client_id")
        if client_id and client_id.lower() != self.config.managed_identity_client_id.lower():
            return _mi_error(400, "No managed identity found for the specified ClientId.")
        try:
            resource = self._known_resource(query.get("resource", ""), self.config.tenant)
        except AadError as exc:
            return _mi_error(400, str(exc))
        issued = self._issue(resource, self.config.managed_identity_client_id, "2", "v1.0")
        return AadReply(
            200,
            {
                "access_token": issued["access_token"],
                "expires_on": issued["expires_on"],
                "resource": resource,
                "token_type": "Bearer",
                "client_id": self.config.managed_identity_client_id,
            },
        )

    # ---- issuing and checking access tokens ------------------------------------------------

    def _issue(self, resource: str, app_id: str, acr: str, version: str) -> dict[str, Any]:
        now = time.time()
        lifetime = self.config.token_lifetime
        with self._lock:
            generation = self._revocation.generation
        claims = {
            "aud": resource,
            "iss": f"{self.authority_host}/{self.config.tenant_id}/",
            "iat": int(now),
            "nbf": int(now),
            "exp": now + lifetime,
            "appid": app_id,
            "appidacr": acr,
            "idtyp": "app",
            "oid": self.config.service_principal_id,
            "sub": self.config.service_principal_id,
            "tid": self.config.tenant_id,
            "ver": "1.0",
            "jti": str(uuid.uuid4()),
            "xms_emu_gen": generation,
        }
        token = self._sign(claims)
        announced = self.announced_expires_in
        expires_in = max(1, round(lifetime)) if announced is None else announced
        if version == "v1.0":  # the v1 endpoint writes its numbers as strings
            return {
                "token_type": "Bearer",
                "expires_in": str(expires_in),
                "ext_expires_in": str(expires_in),
                "expires_on": str(int(now + lifetime)),
                "not_before": str(int(now)),
                "resource": resource,
                "access_token": token,
            }
        return {
            "token_type": "Bearer",
            "expires_in": expires_in,
            "ext_expires_in": expires_in,
            "access_token": token,
        }

    def _sign(self, claims: Mapping[str, Any]) -> str:
        header = {"typ": "JWT", "alg": "HS256", "kid": self._kid}
        signed = ".".join(
            _b64url(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims)
        )
        mac = hmac.new(self._key, signed.encode("ascii"), hashlib.sha256).digest()
        return f"{signed}.{_b64url(mac)}"

    def check_access_token(self, token: str) -> str | None:
        """None when AMS should accept the token, else why not (never quoting the token)."""
        try:
            header, claims, signed, signature = split_jwt(token)
        except ValueError:
            return "The access token is malformed."
        expected = hmac.new(self._key, signed, hashlib.sha256).digest()
        if header.get("alg") != "HS256" or not hmac.compare_digest(expected, signature):
            return "The access token signature is invalid."
        if str(claims.get("aud", "")).rstrip("/") != self.config.resource.rstrip("/"):
            return "The access token audience is invalid for this resource."
        if claims.get("tid") != self.config.tenant_id:
            return "The access token was issued by another tenant."
        generation = claims.get("xms_emu_gen", -1)
        with self._lock:
            state = self._revocation
            revoked = generation < state.revoked_below
            expired_early = generation < state.expired_below
        if revoked:
            return "The access token has been revoked."
        exp = claims.get("exp")
        if expired_early or not isinstance(exp, (int, float)) or exp <= time.time():
            return "The access token is expired."
        return None

    def revoke_tokens(self) -> None:
        """Every token issued so far is rejected from now on as revoked."""
        with self._lock:
            self._revocation.generation += 1
            self._revocation.revoked_below = self._revocation.generation

    def announce_expires_in(self, seconds: int | None) -> None:
        """Token responses say ``expires_in: seconds`` (``None``: the real lifetime) from now on.

        The tokens themselves stay valid for the configured lifetime: this is how a service that
        announces a nonsensical lifetime (0, negative) looks to a client.
        """
        self.announced_expires_in = seconds

    def expire_tokens(self) -> None:
        """Every token issued so far is rejected from now on as expired."""
        with self._lock:
            self._revocation.generation += 1
            self._revocation.expired_below = self._revocation.generation

    # ---- errors ----------------------------------------------------------------------------

    def _unknown_tenant(self, tenant: str) -> AadError:
        return AadError(
            400,
            "invalid_request",
            90002,
            f"Tenant '{_echo(tenant)}' not found. Check to make sure you have the correct tenant "
            "ID and are signing into the correct cloud.",
        )

    def error_reply(self, error: AadError, correlation_id: str | None) -> AadReply:
        """Azure AD's error JSON for ``error``."""
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
        trace_id = str(uuid.uuid4())
        correlation = correlation_id if _is_guid(correlation_id) else str(uuid.uuid4())
        description = (
            f"AADSTS{error.code}: {error.description} Trace ID: {trace_id} "
            f"Correlation ID: {correlation} Timestamp: {stamp}"
        )
        body = {
            "error": error.error,
            "error_description": description,
            "error_codes": [error.code],
            "timestamp": stamp,
            "trace_id": trace_id,
            "correlation_id": correlation,
            "error_uri": f"{self.authority_host}/error?code={error.code}",
        }
        return AadReply(error.status, body)

    def unavailable_reply(self, status: int, message: str) -> AadReply:
        """Azure AD's answer to an injected status fault."""
        error = "temporarily_unavailable" if status >= 500 or status == 429 else "invalid_request"
        return self.error_reply(AadError(status, error, 90033, message), None)


def _required(form: Mapping[str, str], name: str) -> str:
    value = form.get(name)
    if not value:
        raise _missing(name)
    return value


def _missing(name: str) -> AadError:
    return AadError(
        400,
        "invalid_request",
        900144,
        f"The request body must contain the following parameter: '{name}'.",
    )


def _bad_assertion(code: int, description: str) -> AadError:
    return AadError(401, "invalid_client", code, description)


def _mi_error(status: int, message: str) -> AadReply:
    return AadReply(status, {"statusCode": status, "message": message})


def _is_guid(value: str | None) -> bool:
    try:
        uuid.UUID(value or "")
    except ValueError:
        return False
    return True


def _thumbprint_matches(header_value: str, hex_thumbprint: str) -> bool:
    """``x5t`` values are base64url of the digest; accept hex too, as some clients send it."""
    if header_value.upper() == hex_thumbprint:
        return True
    try:
        return _b64url_decode(header_value) == bytes.fromhex(hex_thumbprint)
    except (binascii.Error, ValueError):
        return False


def _verify_rsa_signature(
    alg: object, certificate: x509.Certificate, signed: bytes, signature: bytes
) -> None:
    key = certificate.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise _bad_assertion(700027, "Client assertion failed signature validation.")
    if alg == "RS256":
        pad: padding.AsymmetricPadding = padding.PKCS1v15()
    elif alg == "PS256":
        pad = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.AUTO)
    else:
        raise _bad_assertion(
            5002738,
            f"Invalid JWT token. '{_echo(str(alg))}' is not a supported signature algorithm.",
        )
    try:
        key.verify(signature, signed, pad, hashes.SHA256())
    except InvalidSignature:
        raise _bad_assertion(
            700027,
            "Client assertion failed signature validation. [Reason - The signature is invalid.]",
        ) from None
