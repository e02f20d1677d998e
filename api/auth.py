"""Authentication: OIDC/JWT bearer tokens (PyJWT), and the local issuer for the demo and tests.

Tokens are validated for signature (RS256 or ES256, keys from a JWKS), issuer,
audience and expiry. With ``Settings.jwks_url`` unset the API trusts its own
local issuer: an EC P-256 key pair generated once under ``Settings.state_dir``
and served as JWKS at ``/.well-known/jwks.json``; ``carechain token`` mints
tokens from it.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from api.access import Role
from carechain.settings import Settings

ALGORITHMS = ["RS256", "ES256"]
#: Roles that may call the API. Gateways (and anything unknown) have no API access.
API_ROLES = frozenset(r.value for r in Role)
DEFAULT_TTL_S = 3600
LEEWAY_S = 30
TOKEN_CACHE_MAX = 10_000


class AuthError(Exception):
    """The token is missing, invalid or not allowed; ``status`` is 401 or 403."""

    def __init__(self, detail: str, status: int = 401) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status


@dataclass(frozen=True, slots=True)
class Claims:
    sub: str
    org: str
    role: str
    unit: str | None
    org_kind: str | None
    client: str | None
    on_behalf_of: str | None
    exp: int


class LocalIssuer:
    """The demo/test identity provider: one EC key pair on disk, generated once."""

    KID = "carechain-local-1"

    def __init__(self, state_dir: Path, issuer: str, audience: str) -> None:
        self.issuer = issuer
        self.audience = audience
        self.key_path = state_dir / "api" / "jwt-signing-key.pem"
        self._key = self._load_or_create()

    def _load_or_create(self) -> ec.EllipticCurvePrivateKey:
        if not self.key_path.exists():
            self.key_path.parent.mkdir(parents=True, exist_ok=True)
            key = ec.generate_private_key(ec.SECP256R1())
            pem = key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
            # Atomic create so two processes starting together end up with one key.
            tmp = self.key_path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_bytes(pem)
            os.chmod(tmp, 0o600)
            try:
                os.link(tmp, self.key_path)
            except FileExistsError:
                pass
            finally:
                tmp.unlink(missing_ok=True)
        loaded = serialization.load_pem_private_key(self.key_path.read_bytes(), password=None)
        if not isinstance(loaded, ec.EllipticCurvePrivateKey):
            raise RuntimeError(f"{self.key_path} is not an EC private key")
        return loaded

    def jwks(self) -> dict[str, Any]:
        """The public key as a JSON Web Key Set."""
        jwk = json.loads(ECAlgorithm.to_jwk(self._key.public_key()))
        jwk.update({"kid": self.KID, "use": "sig", "alg": "ES256"})
        return {"keys": [jwk]}

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._key.public_key()

    def mint(
        self,
        user: str,
        org: str,
        role: str,
        unit: str | None = None,
        ttl_s: int = DEFAULT_TTL_S,
        org_kind: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> str:
        """A signed ES256 token for this user."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "sub": user,
            "org": org,
            "role": role,
            "iss": self.issuer,
            "aud": self.audience,
            "iat": now,
            "nbf": now - 5,
            "exp": now + ttl_s,
            "jti": uuid.uuid4().hex,
        }
        if unit is not None:
            claims["unit"] = unit
        if org_kind is not None:
            claims["org_kind"] = org_kind
        claims.update(extra or {})
        return jwt.encode(claims, self._key, algorithm="ES256", headers={"kid": self.KID})


def local_issuer(settings: Settings) -> LocalIssuer:
    return LocalIssuer(settings.state_dir, settings.jwt_issuer, settings.jwt_audience)


class TokenValidator:
    """Validates bearer tokens against the configured JWKS (or the local issuer's key)."""

    def __init__(self, settings: Settings, issuer: LocalIssuer | None = None) -> None:
        self.issuer = settings.jwt_issuer
        self.audience = settings.jwt_audience
        self._local = issuer
        self._jwks_client = jwt.PyJWKClient(settings.jwks_url, cache_keys=True) if settings.jwks_url else None
        if self._jwks_client is None and self._local is None:
            self._local = local_issuer(settings)
        self._cache: dict[str, Claims] = {}

    def _key_for(self, token: str) -> Any:
        if self._jwks_client is not None:
            return self._jwks_client.get_signing_key_from_jwt(token).key
        assert self._local is not None
        return self._local.public_key()

    @property
    def local(self) -> bool:
        """Keys from the local issuer (no I/O to validate)."""
        return self._jwks_client is None

    def cached(self, token: str) -> Claims | None:
        """The claims of a token validated before and not yet expired (no I/O, no signature check)."""
        hit = self._cache.get(token)
        return hit if hit is not None and hit.exp > time.time() else None

    def validate(self, token: str) -> Claims:
        """Decode and check the token; raises :class:`AuthError` (401 invalid, 403 no API access).

        A token already validated is taken from a small cache until it expires (the signature check is the
        costly part of a request)."""
        hit = self._cache.get(token)
        if hit is not None and hit.exp > time.time():
            return hit
        claims = self._validate(token)
        if len(self._cache) >= TOKEN_CACHE_MAX:
            self._cache.clear()
        self._cache[token] = claims
        return claims

    def _validate(self, token: str) -> Claims:
        try:
            key = self._key_for(token)
            payload = jwt.decode(
                token,
                key,
                algorithms=ALGORITHMS,
                audience=self.audience,
                issuer=self.issuer,
                leeway=LEEWAY_S,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError as e:
            raise AuthError("token expired") from e
        except (jwt.PyJWTError, ValueError) as e:
            raise AuthError(f"invalid token: {type(e).__name__}") from e
        role = payload.get("role")
        if role not in API_ROLES:
            # Gateways talk MQTT only; unknown roles get nothing.
            raise AuthError("this role has no API access", status=403)
        org = payload.get("org")
        if not isinstance(org, str) or not org:
            raise AuthError("token has no organisation (org claim): a call without context is refused", 403)
        unit = payload.get("unit")
        return Claims(
            sub=str(payload["sub"]),
            org=org,
            role=str(role),
            unit=str(unit) if unit is not None else None,
            org_kind=payload.get("org_kind"),
            client=payload.get("azp") or payload.get("client_id"),
            on_behalf_of=payload.get("act", {}).get("sub") if isinstance(payload.get("act"), dict) else None,
            exp=int(payload["exp"]),
        )
