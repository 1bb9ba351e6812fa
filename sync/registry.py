"""The ships a hub accepts, with their leaf credentials.

Only bcrypt hashes are kept (nats-server checks a bcrypt password itself), so the file
never holds a usable secret; a ship's secret is printed once when the ship is added and
lives on that ship only. The hub's own client password is the one secret kept in clear,
in its own file readable by the hub's user only.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

import bcrypt

from sync.topology import check_ship_id

_ROUNDS = 10  # checked once per leaf (re)connect, not per message


def _write_private(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


class ShipRegistry:
    def __init__(self, data_dir: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self._path = data_dir / "ships.json"
        self._hashes: dict[str, str] = (
            json.loads(self._path.read_text(encoding="utf-8")) if self._path.exists() else {}
        )
        secret_file = data_dir / "hub-nats.secret"
        if not secret_file.exists():
            _write_private(secret_file, secrets.token_urlsafe(24))
        self.hub_password = secret_file.read_text(encoding="utf-8").strip()

    def ships(self) -> list[str]:
        return sorted(self._hashes)

    def hashes(self) -> dict[str, str]:
        return dict(self._hashes)

    def add(self, ship_id: str) -> str:
        """Register (or re-key) a ship; returns its new secret, which is not stored."""
        check_ship_id(ship_id)
        secret = secrets.token_urlsafe(24)
        self._hashes[ship_id] = bcrypt.hashpw(secret.encode(), bcrypt.gensalt(_ROUNDS)).decode()
        self._save()
        return secret

    def remove(self, ship_id: str) -> bool:
        if self._hashes.pop(ship_id, None) is None:
            return False
        self._save()
        return True

    def _save(self) -> None:
        _write_private(self._path, json.dumps(self._hashes, indent=1, sort_keys=True))
