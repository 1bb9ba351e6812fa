"""Who may do what at the hub: API keys (hashed at rest), JWT bearer tokens, roles, ship scopes.

Roles are ordered viewer < operator < approver < admin; an endpoint names the least role it
needs. A key may be scoped to some ships; everything it reads is filtered to them. Keys are
random 256-bit secrets, so a SHA-256 of the key is a sound way to store them (a slow
password hash buys nothing for secrets that cannot be guessed). Keys live in a small
SQLite file beside the hub's data because they change one at a time and must be
consistent immediately; ClickHouse is for the fleet's history.
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
import time
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

import jwt
import orjson

TOKEN_TTL_S = 3600
_ALGORITHM = "HS256"


class Role(IntEnum):
    VIEWER = 1
    OPERATOR = 2
    APPROVER = 3
    ADMIN = 4

    @classmethod
    def parse(cls, name: str) -> Role:
        try:
            return cls[name.upper()]
        except KeyError:
            raise ValueError(
                f"unknown role {name!r}: viewer, operator, approver or admin"
            ) from None


@dataclass(frozen=True)
class Principal:
    """The authenticated caller: `ships` None means every ship."""

    name: str
    role: Role
    ships: tuple[str, ...] | None
    key_id: str

    def may_see(self, ship: str) -> bool:
        return self.ships is None or ship in self.ships

    def scope(self) -> list[str] | None:
        return list(self.ships) if self.ships is not None else None


class AuthError(Exception):
    pass


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class KeyStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS api_keys (id TEXT PRIMARY KEY, name TEXT, role TEXT,"
            " ships TEXT, hash TEXT UNIQUE, created REAL, revoked REAL)"
        )
        self._db.execute("CREATE TABLE IF NOT EXISTS secrets (name TEXT PRIMARY KEY, value TEXT)")

    def create(self, name: str, role: Role, ships: list[str] | None = None) -> str:
        """Returns the key once; only its hash is kept."""
        key_id = secrets.token_hex(4)
        key = f"sw_{key_id}_{secrets.token_urlsafe(32)}"
        self._db.execute(
            "INSERT INTO api_keys VALUES (?,?,?,?,?,?,NULL)",
            (
                key_id,
                name,
                role.name.lower(),
                orjson.dumps(ships).decode(),
                _hash(key),
                time.time(),
            ),
        )
        return key

    def revoke(self, key_id: str) -> bool:
        cur = self._db.execute(
            "UPDATE api_keys SET revoked=? WHERE id=? AND revoked IS NULL", (time.time(), key_id)
        )
        return cur.rowcount == 1

    def verify(self, key: str) -> Principal:
        row = self._db.execute(
            "SELECT id, name, role, ships FROM api_keys WHERE hash=? AND revoked IS NULL",
            (_hash(key),),
        ).fetchone()
        if row is None:
            raise AuthError("unknown or revoked API key")
        ships = orjson.loads(row[3])
        return Principal(
            row[1], Role.parse(row[2]), tuple(ships) if ships is not None else None, row[0]
        )

    def is_active(self, key_id: str) -> bool:
        row = self._db.execute("SELECT revoked FROM api_keys WHERE id=?", (key_id,)).fetchone()
        return row is not None and row[0] is None

    def signing_secret(self) -> str:
        """Made once per hub and kept with the keys (never in the repository)."""
        row = self._db.execute("SELECT value FROM secrets WHERE name='jwt'").fetchone()
        if row is not None:
            return str(row[0])
        value = secrets.token_urlsafe(48)
        self._db.execute("INSERT OR IGNORE INTO secrets VALUES ('jwt', ?)", (value,))
        return self.signing_secret()

    def close(self) -> None:
        self._db.close()


def open_keys(data_dir: Path) -> KeyStore:
    return KeyStore(data_dir / "auth.db")


class Authenticator:
    def __init__(self, keys: KeyStore, secret: str | None = None) -> None:
        self.keys = keys
        self._secret = secret or keys.signing_secret()

    def issue_token(self, p: Principal, ttl_s: float = TOKEN_TTL_S) -> str:
        now = int(time.time())
        claims = {
            "sub": p.name,
            "role": p.role.name.lower(),
            "ships": p.scope(),
            "kid": p.key_id,
            "iat": now,
            "exp": now + int(ttl_s),
        }
        return jwt.encode(claims, self._secret, algorithm=_ALGORITHM)

    def from_headers(self, authorization: str | None, api_key: str | None) -> Principal:
        if api_key:
            return self.keys.verify(api_key)
        if authorization and authorization.lower().startswith("bearer "):
            return self._from_token(authorization[7:].strip())
        raise AuthError("missing credentials: send X-API-Key or Authorization: Bearer <token>")

    def _from_token(self, token: str) -> Principal:
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[_ALGORITHM],
                options={"require": ["exp", "sub", "role", "kid"]},
            )
        except jwt.PyJWTError as exc:
            raise AuthError(f"invalid token: {exc}") from None
        if not self.keys.is_active(claims["kid"]):
            raise AuthError("the key behind this token was revoked")
        ships = claims.get("ships")
        return Principal(
            claims["sub"],
            Role.parse(claims["role"]),
            tuple(ships) if ships is not None else None,
            claims["kid"],
        )
