"""`python -m seawatch.bundle` (or deploy/vessel/build-bundle): the offline install bundle
for vessels, built from a checkout in one command.

A vessel installs with no network, so the bundle carries everything: the wheels of seawatch
and of its whole dependency tree (llama-cpp-python compiled here, for the same portable CPU
baseline as ./run), the default model as one GGUF file, the default policies, the systemd
unit and its companions, and install.sh; SHA256SUMS lists every file and install.sh checks
it first. Wheels are built for the Python that runs the build (or --python): build on the
vessels' OS, architecture and Python version. Before the bundle is written, its wheels
alone are installed into a scratch venv (pip --no-index, as install.sh does), which proves
them complete, and the model is taken from that venv the way the agent finds it.

Standard library only, so any Python 3.11 can run it.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[1]
VESSEL = CHECKOUT / "deploy" / "vessel"
# What install.sh installs, from deploy/vessel/, into the bundle's vessel/ directory.
VESSEL_FILES = (
    "seawatch-agent.service",
    "journald.conf",
    "seawatch.logrotate",
    "agent.yaml",
    "uplink.env.example",
)
# The x86-64 baseline every vessel box has; the same as ./run (tests/test_deploy.py checks).
CMAKE_ARGS = (
    "-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON"
)
# The agent's own lookup of its default model (shared.llm), run in the scratch venv.
_FIND_MODEL = "from shared.llm import packaged_model; print(packaged_model())"


class BundleError(RuntimeError):
    pass


def _run(*command: str | Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [str(c) for c in command], env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise BundleError(f"{' '.join(map(str, command))} failed:\n{done.stderr[-4000:]}")
    return done.stdout


def build_wheels(python: str, dest: Path) -> None:
    """Every wheel seawatch needs; --no-cache-dir, so llama.cpp is compiled with CMAKE_ARGS
    and not taken from a wheel cached by an earlier build with other flags."""
    env = {**os.environ, "CMAKE_ARGS": os.environ.get("CMAKE_ARGS", CMAKE_ARGS)}
    env.setdefault("CMAKE_BUILD_PARALLEL_LEVEL", str(os.cpu_count() or 1))
    _run(python, "-m", "pip", "wheel", "--no-cache-dir", "--wheel-dir", dest, CHECKOUT, env=env)


def version_of(wheels: Path) -> str:
    found = sorted(wheels.glob("seawatch-*.whl"))
    if len(found) != 1:
        raise BundleError(f"{wheels}: expected one seawatch wheel, found {len(found)}")
    return found[0].name.split("-")[1]


def make_venv(python: str, venv: Path) -> Path:
    """A new venv, as install.sh makes one; its Python."""
    _run(python, "-m", "venv", venv)
    return venv / "bin" / "python"


def install_offline(venv_python: Path, wheels: Path, version: str) -> None:
    """seawatch==version from `wheels` alone, with pip's options in install.sh."""
    pip = ("-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-index")
    _run(venv_python, *pip, "--find-links", wheels, f"seawatch=={version}")


def find_model(venv_python: Path, home: Path) -> Path:
    """The GGUF file the agent would load, assembled by its model package under `home`."""
    env = {**os.environ, "HOME": str(home)}
    return Path(_run(venv_python, "-c", _FIND_MODEL, env=env).strip())


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def checksums(root: Path) -> str:
    """SHA256SUMS of every file under root, in the format `sha256sum -c` reads."""
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return "".join(f"{sha256(p)}  {p.relative_to(root).as_posix()}\n" for p in files)


def write_bundle(root: Path, version: str, wheels: Path, model: Path) -> None:
    """The bundle directory: wheels, model, policies, unit files, install.sh, SHA256SUMS."""
    if root.exists():
        raise BundleError(f"{root} exists: remove it or choose another --out")
    shutil.copytree(wheels, root / "wheels")
    (root / "model").mkdir()
    shutil.copy2(model, root / "model" / model.name)
    shutil.copytree(
        CHECKOUT / "policies", root / "policies", ignore=shutil.ignore_patterns("*.py", "__*")
    )
    (root / "vessel").mkdir()
    for name in VESSEL_FILES:
        shutil.copy2(VESSEL / name, root / "vessel" / name)
    shutil.copy2(VESSEL / "install.sh", root / "install.sh")
    (root / "VERSION").write_text(f"{version}\n", encoding="utf-8")
    (root / "SHA256SUMS").write_text(checksums(root), encoding="utf-8")


def platform_tag(python: str) -> str:
    """e.g. cp311-linux_x86_64: the bundle installs only on that Python and platform."""
    code = "import sys, sysconfig; print(sys.implementation.cache_tag, sysconfig.get_platform())"
    cache_tag, platform = _run(python, "-c", code).split()
    return f"{cache_tag.replace('cpython-', 'cp')}-{platform.replace('-', '_')}"


def build(out: Path, python: str, wheels: Path | None) -> Path:
    """Builds the bundle under `out`; returns the tar file."""
    with tempfile.TemporaryDirectory(prefix="seawatch-bundle-") as scratch:
        tmp = Path(scratch)
        if wheels is None:
            wheels = tmp / "wheels"
            build_wheels(python, wheels)
        version = version_of(wheels)
        venv_python = make_venv(python, tmp / "venv")
        install_offline(venv_python, wheels, version)
        model = find_model(venv_python, tmp / "home")
        root = out / f"seawatch-{version}-{platform_tag(python)}"
        write_bundle(root, version, wheels, model)
    tar = root.with_name(root.name + ".tar")
    with tarfile.open(tar, "w") as archive:
        archive.add(root, arcname=root.name)
    return tar


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="build-bundle", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=CHECKOUT / "dist", help="where it goes")
    parser.add_argument(
        "--python", default=sys.executable, help="the Python the vessels run (default: this one)"
    )
    parser.add_argument("--wheels", type=Path, help="use these wheels instead of building them")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        tar = build(args.out, args.python, args.wheels)
    except BundleError as exc:
        print(f"build-bundle: {exc}", file=sys.stderr)
        return 1
    print(f"{sha256(tar)}  {tar}")  # to check the copy that reaches the vessel
    return 0


if __name__ == "__main__":
    sys.exit(main())
