"""The emulator's Azure AD through real MSAL and raw HTTPS: secrets, certificates, managed identity,
tokens accepted and refused by AMS, and Azure AD's error shape."""

from __future__ import annotations

import hashlib
import time
import uuid
from typing import Any

import jwt
import msal
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from ams_emulator import Emulator
from tests.emulator.helpers import AmsClient, VerifyingSession, msal_app, post_token
from tests.support.pki import certificate, private_key_pem

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def _scope(emu: Emulator) -> list[str]:
    return [f"{emu.resource}/.default"]


def _msal_token(emu: Emulator, credential: Any, tenant: str | None = None) -> dict[str, Any]:
    """What a real MSAL confidential client with ``credential`` gets for the AMS scope."""
    result: dict[str, Any] = msal_app(emu, credential, tenant).acquire_token_for_client(
        scopes=_scope(emu)
    )
    return result


def _ams_status(emu: Emulator, token: str) -> int:
    ams = AmsClient(emu)
    try:
        return ams.get(
            "Jobs?$top=1", headers=ams.headers(Authorization=f"Bearer {token}")
        ).status_code
    finally:
        ams.close()


def _assert_aad_error(body: dict[str, Any], error: str, code: int) -> None:
    assert body["error"] == error
    assert body["error_description"].startswith(f"AADSTS{code}:")
    assert body["error_codes"] == [code]
    for key in ("timestamp", "trace_id", "correlation_id"):
        assert body[key]
    uuid.UUID(body["trace_id"])


def _other_certificate() -> tuple[str, str]:
    """A key and self-signed certificate Azure AD has never seen (PEM key, PEM certificate)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = certificate("stranger", key, None)
    return private_key_pem(key).decode(), cert.public_bytes(serialization.Encoding.PEM).decode()


def _assertion(emu: Emulator, **claims: Any) -> str:
    """A client assertion signed with the registered key; ``claims`` override the defaults."""
    now = int(time.time())
    payload = {
        "aud": f"{emu.authority_host}/{emu.tenant}/oauth2/v2.0/token",
        "iss": emu.client_id,
        "sub": emu.client_id,
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "jti": str(uuid.uuid4()),
        **claims,
    }
    der = x509.load_pem_x509_certificate(emu.client_certificate_pem.encode()).public_bytes(
        serialization.Encoding.DER
    )
    x5t = jwt.utils.base64url_encode(hashlib.sha1(der).digest()).decode()
    return jwt.encode(payload, emu.client_private_key_pem, algorithm="RS256", headers={"x5t": x5t})


def _post_assertion(emu: Emulator, **claims: Any) -> requests.Response:
    """A token request that authenticates with :func:`_assertion` (``claims`` passed on)."""
    return post_token(
        emu,
        {
            "grant_type": "client_credentials",
            "client_id": emu.client_id,
            "scope": _scope(emu)[0],
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": _assertion(emu, **claims),
        },
    )


def _managed_identity_token(
    emu: Emulator, monkeypatch: pytest.MonkeyPatch, header: str
) -> dict[str, Any]:
    """What MSAL's managed identity client gets from the emulator's App Service endpoint when
    ``IDENTITY_HEADER`` is ``header``."""
    monkeypatch.setenv("IDENTITY_ENDPOINT", emu.managed_identity_endpoint)
    monkeypatch.setenv("IDENTITY_HEADER", header)
    client = msal.ManagedIdentityClient(
        msal.SystemAssignedManagedIdentity(), http_client=VerifyingSession(str(emu.ca_file))
    )
    result: dict[str, Any] = client.acquire_token_for_client(resource=emu.resource)
    return result


# ---- discovery -----------------------------------------------------------------------------------


def test_openid_configuration_has_what_msal_reads(emu: Emulator) -> None:
    response = requests.get(
        f"{emu.authority_host}/{emu.tenant}/v2.0/.well-known/openid-configuration",
        verify=str(emu.ca_file),
        timeout=30,
    )
    assert response.status_code == 200
    config = response.json()
    assert config["token_endpoint"] == f"{emu.authority_host}/{emu.tenant_id}/oauth2/v2.0/token"
    assert config["authorization_endpoint"].startswith(emu.authority_host)
    assert config["issuer"] == f"{emu.authority_host}/{emu.tenant_id}/v2.0"
    assert "private_key_jwt" in config["token_endpoint_auth_methods_supported"]


def test_unknown_tenant_fails_discovery_and_token_requests(emu: Emulator) -> None:
    with pytest.raises(ValueError, match="authority configuration"):
        msal_app(emu, emu.client_secret, tenant="nobody.onmicrosoft.com")
    discovery = [r for r in emu.request_log if r.path.endswith("openid-configuration")]
    assert [r.status for r in discovery] == [400]
    response = post_token(
        emu, {"grant_type": "client_credentials"}, tenant="nobody.onmicrosoft.com"
    )
    assert response.status_code == 400
    _assert_aad_error(response.json(), "invalid_request", 90002)


# ---- client secret -------------------------------------------------------------------------------


def test_msal_client_secret_token_is_accepted_by_ams(emu: Emulator) -> None:
    result = _msal_token(emu, emu.client_secret)
    assert "access_token" in result, result
    assert result["token_type"] == "Bearer"
    assert result["expires_in"] == 3600
    assert _ams_status(emu, result["access_token"]) == 200


def test_tenant_id_works_as_the_authority_too(emu: Emulator) -> None:
    result = _msal_token(emu, emu.client_secret, tenant=emu.tenant_id)
    assert _ams_status(emu, result["access_token"]) == 200


def test_token_carries_the_documented_claims(emu: Emulator) -> None:
    token = _msal_token(emu, emu.client_secret)["access_token"]
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["aud"] == emu.resource
    assert claims["tid"] == emu.tenant_id
    assert claims["appid"] == emu.client_id
    assert claims["exp"] - claims["iat"] == pytest.approx(3600, abs=1)
    uuid.UUID(claims["jti"])


def test_token_lifetime_is_configurable() -> None:
    with Emulator(jobs=1, seed=1, speed=0, token_lifetime=120) as emulator:
        result = _msal_token(emulator, emulator.client_secret)
        assert result["expires_in"] == 120


def test_v1_endpoint_with_resource(emu: Emulator) -> None:
    response = post_token(
        emu,
        {
            "grant_type": "client_credentials",
            "client_id": emu.client_id,
            "client_secret": emu.client_secret,
            "resource": emu.resource,
        },
        path="oauth2/token",
    )
    assert response.status_code == 200
    body = response.json()
    assert body["expires_in"] == "3600"  # the v1 endpoint writes numbers as strings
    assert body["resource"] == emu.resource
    assert int(body["expires_on"]) > time.time()
    assert _ams_status(emu, body["access_token"]) == 200


def test_client_secret_in_http_basic(emu: Emulator) -> None:
    response = post_token(
        emu,
        {"grant_type": "client_credentials", "scope": _scope(emu)[0]},
        auth=(emu.client_id, emu.client_secret),
    )
    assert response.status_code == 200
    assert _ams_status(emu, response.json()["access_token"]) == 200


def test_wrong_secret_is_invalid_client_401(emu: Emulator) -> None:
    result = _msal_token(emu, "not-the-secret")
    assert "access_token" not in result
    _assert_aad_error(result, "invalid_client", 7000215)
    assert [r.status for r in emu.request_log if r.path.endswith("/token")] == [401]


def test_unknown_client_id_is_unauthorized_client_400(emu: Emulator) -> None:
    response = post_token(
        emu,
        {
            "grant_type": "client_credentials",
            "client_id": str(uuid.uuid4()),
            "client_secret": emu.client_secret,
            "scope": _scope(emu)[0],
        },
    )
    assert response.status_code == 400
    _assert_aad_error(response.json(), "unauthorized_client", 700016)


@pytest.mark.parametrize(
    ("scope", "error", "code"),
    [
        ("https://rest.media.azure.net", "invalid_scope", 1002012),
        ("https://rest.media.azure.net/user_impersonation", "invalid_scope", 1002012),
        ("https://nothing.example/.default", "invalid_resource", 500011),
    ],
)
def test_wrong_scope_is_refused(emu: Emulator, scope: str, error: str, code: int) -> None:
    result = msal_app(emu, emu.client_secret).acquire_token_for_client(scopes=[scope])
    assert "access_token" not in result
    _assert_aad_error(result, error, code)
    assert [r.status for r in emu.request_log if r.path.endswith("/token")] == [400]


def test_missing_grant_type_and_other_grants(emu: Emulator) -> None:
    missing = post_token(emu, {"client_id": emu.client_id})
    assert missing.status_code == 400
    _assert_aad_error(missing.json(), "invalid_request", 900144)
    other = post_token(emu, {"grant_type": "password", "client_id": emu.client_id})
    _assert_aad_error(other.json(), "unsupported_grant_type", 70003)


def test_token_endpoint_only_accepts_post(emu: Emulator) -> None:
    response = requests.get(
        f"{emu.authority_host}/{emu.tenant}/oauth2/v2.0/token", verify=str(emu.ca_file), timeout=30
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


def test_token_for_another_resource_is_refused_by_ams(emu: Emulator) -> None:
    result = msal_app(emu, emu.client_secret).acquire_token_for_client(
        scopes=["https://graph.microsoft.com/.default"]
    )
    assert "access_token" in result, result
    ams = AmsClient(emu)
    response = ams.get(
        "Jobs", headers=ams.headers(Authorization=f"Bearer {result['access_token']}")
    )
    ams.close()
    assert response.status_code == 401
    assert "audience" in response.json()["odata.error"]["message"]["value"]


# ---- certificate credentials ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "proof",
    ["public_certificate", "thumbprint"],
    ids=["ps256-with-the-certificate", "rs256-with-the-sha1-thumbprint"],
)
def test_msal_certificate_credential_token_is_accepted_by_ams(emu: Emulator, proof: str) -> None:
    """MSAL signs with PS256 when it has the certificate, with RS256 when it has a thumbprint."""
    shown = {
        "public_certificate": emu.client_certificate_pem,
        "thumbprint": emu.client_certificate_thumbprint,
    }[proof]
    result = _msal_token(emu, {"private_key": emu.client_private_key_pem, proof: shown})
    assert "access_token" in result, result
    assert _ams_status(emu, result["access_token"]) == 200
    claims = jwt.decode(result["access_token"], options={"verify_signature": False})
    assert claims["appidacr"] == "2"


def test_certificate_file_holds_the_registered_key_and_certificate(emu: Emulator) -> None:
    text = emu.client_certificate_file.read_text()
    assert "PRIVATE KEY" in text and "BEGIN CERTIFICATE" in text
    key_pem = text[: text.index("-----BEGIN CERTIFICATE-----")]
    cert_pem = text[text.index("-----BEGIN CERTIFICATE-----") :]
    result = _msal_token(emu, {"private_key": key_pem, "public_certificate": cert_pem})
    assert "access_token" in result, result


def test_unregistered_certificate_is_refused(emu: Emulator) -> None:
    key_pem, cert_pem = _other_certificate()
    result = _msal_token(emu, {"private_key": key_pem, "public_certificate": cert_pem})
    _assert_aad_error(result, "invalid_client", 700027)
    assert "key was not found" in result["error_description"]


def test_assertion_signed_by_another_key_fails_signature_validation(emu: Emulator) -> None:
    key_pem, _ = _other_certificate()
    credential = {"private_key": key_pem, "thumbprint": emu.client_certificate_thumbprint}
    result = _msal_token(emu, credential)
    _assert_aad_error(result, "invalid_client", 700027)
    assert "signature is invalid" in result["error_description"]


@pytest.mark.parametrize(
    ("claims", "code"),
    [
        ({"aud": "https://login.example/other/oauth2/v2.0/token"}, 700212),
        ({"iss": "someone-else", "sub": "someone-else"}, 700021),
        ({"exp": int(time.time()) - 3600, "nbf": int(time.time()) - 7200}, 700024),
    ],
    ids=["wrong-audience", "wrong-issuer", "expired"],
)
def test_assertion_claims_are_checked(emu: Emulator, claims: dict[str, Any], code: int) -> None:
    response = _post_assertion(emu, **claims)
    assert response.status_code == 401
    _assert_aad_error(response.json(), "invalid_client", code)


def test_valid_handmade_assertion_is_accepted(emu: Emulator) -> None:
    response = _post_assertion(emu)
    assert response.status_code == 200, response.text


def test_no_credential_at_all_is_invalid_client(emu: Emulator) -> None:
    response = post_token(
        emu,
        {"grant_type": "client_credentials", "client_id": emu.client_id, "scope": _scope(emu)[0]},
    )
    assert response.status_code == 401
    _assert_aad_error(response.json(), "invalid_client", 7000218)


# ---- managed identity ----------------------------------------------------------------------------


def test_msal_managed_identity_through_the_app_service_protocol(
    emu: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = _managed_identity_token(emu, monkeypatch, emu.managed_identity_header)
    assert "access_token" in result, result
    assert _ams_status(emu, result["access_token"]) == 200
    record = next(r for r in emu.request_log if r.path == "/msi/token")
    assert record.query["api-version"] == "2019-08-01"
    assert record.headers["x-identity-header"] == "<redacted>"


def test_managed_identity_with_a_wrong_header_is_refused(
    emu: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = _managed_identity_token(emu, monkeypatch, "wrong")
    assert "access_token" not in result
    assert [r.status for r in emu.request_log if r.path == "/msi/token"] == [401]


def test_managed_identity_for_an_unknown_resource_is_400(emu: Emulator) -> None:
    response = requests.get(
        emu.managed_identity_endpoint,
        params={"api-version": "2019-08-01", "resource": "https://nothing.example"},
        headers={"X-IDENTITY-HEADER": emu.managed_identity_header},
        verify=str(emu.ca_file),
        timeout=30,
    )
    assert response.status_code == 400
    assert response.json()["statusCode"] == 400


# ---- no secret leaks ---------------------------------------------------------------------------


def test_request_log_holds_no_secret_or_token(emu: Emulator) -> None:
    result = _msal_token(emu, emu.client_secret)
    token = result["access_token"]
    _ams_status(emu, token)
    post_token(emu, {"grant_type": "client_credentials"}, auth=(emu.client_id, emu.client_secret))
    text = repr(emu.request_log)
    assert emu.client_secret not in text
    assert token not in text and token.split(".")[2] not in text
    ams_records = [r for r in emu.request_log if r.api == "ams"]
    assert ams_records and all(r.headers["authorization"] == "Bearer" for r in ams_records)
