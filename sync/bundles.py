"""Policy bundles sent from shore: staged, validated, then made active in one rename.

A bundle is a fleet policy directory as {relative file name: text} plus a version: YAML
segments, and optionally the runbooks the ship's insight path cites (runbooks/*.md).
It is written to a directory of its own, data_dir/policy/bundles/<version>/ (or, if a
bundle of that version was staged before, <version>~<n>/: staging never writes into an
existing bundle, least of all the active one), and becomes the policy only if it loads
for this ship; `active` is a symlink swapped atomically, so a crash leaves either the old
or the new bundle active, never half of one. A bundle that fails keeps the old one.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
from pathlib import Path, PurePosixPath

_VERSION = re.compile(r"^[A-Za-z0-9._\-]{1,64}$")
_MAX_BYTES = 1 << 20


class BundleError(ValueError):
    pass


def policy_root(data_dir: Path) -> Path:
    return data_dir / "policy"


def active_dir(data_dir: Path) -> Path | None:
    """The bundle the ship runs on, if shore ever sent one."""
    active = policy_root(data_dir) / "active"
    return active.resolve() if active.exists() else None


def stage(data_dir: Path, version: str, files: dict[str, str]) -> Path:
    """Write a bundle to a new directory; refuses names that could escape it."""
    if not _VERSION.match(version):
        raise BundleError(f"bundle version {version!r}: letters, digits, '.', '-', '_' only")
    if "policy.yaml" not in files:
        raise BundleError("bundle has no policy.yaml")
    if not all(isinstance(n, str) and isinstance(t, str) for n, t in files.items()):
        raise BundleError("bundle files must map file names to text")
    if sum(len(t) for t in files.values()) > _MAX_BYTES:
        raise BundleError(f"bundle larger than {_MAX_BYTES} bytes")
    parts: dict[str, tuple[str, ...]] = {}
    for name in files:
        rel = PurePosixPath(name)
        runbook = rel.suffix == ".md" and len(rel.parts) == 2 and rel.parts[0] == "runbooks"
        if rel.is_absolute() or ".." in rel.parts or not (rel.suffix == ".yaml" or runbook):
            raise BundleError(f"bundle file {name!r}: only relative *.yaml and runbooks/*.md")
        parts[name] = rel.parts
    target = _new_dir(policy_root(data_dir) / "bundles", version)
    try:
        for name, text in files.items():
            path = target.joinpath(*parts[name])
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    except (OSError, ValueError) as exc:  # a name the file system refuses (length, NUL)
        shutil.rmtree(target, ignore_errors=True)
        detail = exc.strerror if isinstance(exc, OSError) else str(exc)
        raise BundleError(f"bundle file names: {detail}") from exc
    return target


def _new_dir(parent: Path, version: str) -> Path:
    parent.mkdir(parents=True, exist_ok=True)
    for n in itertools.count():
        path = parent / (version if n == 0 else f"{version}~{n}")  # '~' is in no version
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return path
    raise AssertionError("unreachable")


def activate(data_dir: Path, bundle: Path) -> None:
    root = policy_root(data_dir)
    tmp = root / "active.tmp"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(bundle.relative_to(root))
    os.replace(tmp, root / "active")
