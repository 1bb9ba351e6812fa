"""The deployment packaging (deploy/, seawatch.bundle, the cluster DDL) against the code it
deploys: command lines parse with the real CLI, variables are real settings, paths agree
across unit, installer and README, the NATS configs load in a real nats-server and form one
cluster, the leaf link's TLS works as documented, the manifests pass the Kubernetes schemas,
the bundle verifies and installs offline, and the cluster DDL builds the single-node
schema on the real ClickHouse engine."""

from __future__ import annotations

import argparse
import base64
import configparser
import hashlib
import re
import shlex
import shutil
import subprocess
import sys
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import httpx
import kubernetes_validate
import pytest
import yaml

from seawatch import bundle
from seawatch.cli import build_parser, main
from shared.policy import load_policy
from shared.settings import AgentSettings, HubSettings, load_settings
from shore_hub.fleetstore import FleetStore, default_retention
from shore_hub.fleetstore.cluster import cluster_ddl, local_database
from shore_hub.fleetstore.schema import migrations
from sync.natsserver import NatsServer, binary, free_port
from sync.registry import ShipRegistry
from sync.topology import HUB_DOMAIN, hub_config, ship_config
from tests.conftest import wait_for

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
VESSEL = DEPLOY / "vessel"
SHORE = DEPLOY / "shore"
K8S = SHORE / "k8s"
README = DEPLOY / "README.md"
NATS_CONFS = sorted((SHORE / "nats").glob("nats-*.conf"))
HUB_IMAGE = "seawatch-hub"


def k8s_docs() -> list[dict[str, Any]]:
    """Every resource in the manifests that kustomization.yaml lists."""
    listed = yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]
    return [d for f in listed for d in yaml.safe_load_all((K8S / f).read_text()) if d]


def k8s(kind: str, name: str) -> dict[str, Any]:
    return next(d for d in k8s_docs() if d["kind"] == kind and d["metadata"]["name"] == name)


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((SHORE / "compose.yaml").read_text())
    return loaded


def text_files() -> list[Path]:
    return [p for p in DEPLOY.rglob("*") if p.is_file() and p.suffix != ".json"]


# ------------------------------------------------------------------ command lines


_TOP = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
_COMMAND = re.compile(rf"(?:^|[\s`(/])seawatch\s+((?:{'|'.join(_TOP.choices)})\b[^`\n|;>)]*)")


def command_lines() -> list[tuple[str, list[str]]]:
    """(where, argv after `seawatch`) for every seawatch command the deploy files run."""
    lines = []
    for path in text_files():
        for match in _COMMAND.finditer(path.read_text(encoding="utf-8")):
            argv = shlex.split(match.group(1).split("#")[0])
            lines.append((f"{path.relative_to(ROOT)}: seawatch {match.group(1).strip()}", argv))
    for name, service in compose()["services"].items():
        if service.get("image", "").startswith(HUB_IMAGE):
            lines.append((f"compose service {name}", service["command"]))
    for doc in k8s_docs():
        for container in (
            doc.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [])
        ):
            if container["image"].startswith(HUB_IMAGE) and "command" not in container:
                lines.append((f"k8s {doc['metadata']['name']}", container["args"]))
    return lines


def test_every_seawatch_command_line_parses_with_the_real_cli() -> None:
    lines = command_lines()
    wheres = " ".join(w for w, _ in lines)
    for expected in ("seawatch-agent.service", "compose service hub-ingest", "k8s hub-api"):
        assert expected in wheres  # the scan finds what it must check
    assert any(argv[:2] == ["hub", "schema"] for _, argv in lines)
    parser = build_parser()
    for where, argv in lines:
        try:
            parser.parse_args(argv)
        except SystemExit:
            pytest.fail(f"does not parse: {where}")


def test_hub_schema_and_nats_auth_commands(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["hub", "schema", "--cluster", "fleet"]) == 0
    printed = capsys.readouterr().out.strip().removesuffix(";").split(";\n\n")
    assert printed == cluster_ddl("fleet", "seawatch", default_retention())
    data = tmp_path / "hub"
    assert main(["hub", "ships", "--data-dir", str(data), "add", "MV-AURORA"]) == 0
    capsys.readouterr()
    assert main(["hub", "ships", "--data-dir", str(data), "nats-auth"]) == 0
    registry = ShipRegistry(data / "ships")
    expected = hub_config("127.0.0.1", 7422, registry.hub_password, registry.hashes())
    assert capsys.readouterr().out == expected


# ------------------------------------------------------------------ settings


_VAR = re.compile(r"\bSEAWATCH_[A-Z_]+\b")


def _is_field(name: str, cls: type[AgentSettings] | type[HubSettings]) -> bool:
    prefix = str(cls.model_config.get("env_prefix"))
    return name.startswith(prefix) and name[len(prefix) :].lower() in cls.model_fields


def test_every_seawatch_variable_is_a_setting() -> None:
    """Named anywhere in deploy/ (the hub's environments are checked whole below)."""
    checked = 0
    for path in text_files():
        if path.is_relative_to(DEPLOY / "observability"):
            continue  # Grafana's own variables, named SEAWATCH_* (observability/README.md)
        for name in _VAR.findall(path.read_text(encoding="utf-8")):
            assert _is_field(name, AgentSettings) or _is_field(name, HubSettings), (
                f"{path.name}: {name} is no setting"
            )
            checked += 1
    assert checked > 20


def test_shipped_settings_load() -> None:
    """The agent's settings file and the hub's environments validate as settings (which
    refuse unknown names)."""
    settings = load_settings(AgentSettings, VESSEL / "agent.yaml")
    assert settings.data_dir == Path("/var/lib/seawatch")
    services = compose()["services"].values()
    envs = [s["environment"] for s in services if s.get("image", "").startswith(HUB_IMAGE)]
    envs.append(k8s("ConfigMap", "seawatch-hub")["data"])
    assert len(envs) == 3
    for env in envs:
        hub = HubSettings.model_validate(
            {k.removeprefix("SEAWATCH_HUB_").lower(): v for k, v in env.items()}
        )
        assert hub.stream_replicas == len(NATS_CONFS) == 3


# ------------------------------------------------------------------ the vessel


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(VESSEL / "seawatch-agent.service")
    return parser


def test_unit_runs_the_installed_layout() -> None:
    service = unit()["Service"]
    install = (VESSEL / "install.sh").read_text()
    agent = load_settings(AgentSettings, VESSEL / "agent.yaml")
    assert service["User"] == "seawatch" and "useradd" in install
    assert service["Restart"] == "always" and service["KillSignal"] == "SIGINT"
    argv = shlex.split(service["ExecStart"])
    assert argv[0] == "/opt/seawatch/current/bin/seawatch"
    assert "PREFIX=/opt/seawatch" in install and '"$PREFIX/current"' in install
    assert argv[argv.index("--config") + 1] == "/etc/seawatch/agent.yaml"
    assert "ETC=/etc/seawatch" in install and '"$ETC/agent.yaml"' in install
    assert service["EnvironmentFile"] == "-/etc/seawatch/uplink.env"
    assert service["ReadWritePaths"] == str(agent.data_dir) == "/var/lib/seawatch"
    assert f"DATA={agent.data_dir}" in install
    assert service["ProtectSystem"] == "strict" and service["NoNewPrivileges"] == "true"
    logrotate = (VESSEL / "seawatch.logrotate").read_text()
    assert f"{agent.data_dir}/nats/nats-server.log" in logrotate
    readme = README.read_text()
    for path in ("/opt/seawatch/current", "/etc/seawatch/agent.yaml", "/etc/seawatch/uplink.env"):
        assert path in readme


def test_unit_limits_follow_the_llm_policy() -> None:
    """CPUQuota = 100% x (1 fast path + llm.n_threads) less half a core, as it says."""
    service = unit()["Service"]
    n_threads = load_policy().llm.n_threads
    assert service["CPUQuota"] == f"{100 * (1 + n_threads) - 50}%"
    assert service["MemoryMax"] == "1G" and service["MemoryHigh"] == "768M"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_unit_verifies_with_systemd(tmp_path: Path) -> None:
    path = shutil.copy(VESSEL / "seawatch-agent.service", tmp_path)
    done = subprocess.run(
        ["systemd-analyze", "verify", path], capture_output=True, text=True, check=False
    )
    complaints = [
        line
        for line in done.stderr.splitlines()
        if line and "/opt/seawatch/current/bin/seawatch is not executable" not in line
    ]
    assert complaints == []  # only that the venv is not installed on this machine


def test_installer_finds_what_the_bundle_carries() -> None:
    install = (VESSEL / "install.sh").read_text()
    for name in re.findall(r"vessel/([\w.\-]+)", install):
        assert name in bundle.VESSEL_FILES
    for name in bundle.VESSEL_FILES:
        assert (VESSEL / name).is_file()
    assert "--no-index" in install and "--find-links wheels" in install
    assert install.index("sha256sum --quiet") < install.index("-m venv")  # checked first
    assert subprocess.run(["bash", "-n", VESSEL / "install.sh"], check=False).returncode == 0


def test_llama_cpp_flags_are_the_same_everywhere() -> None:
    """The bundle, ./run and the hub's image build llama.cpp for one CPU baseline."""
    run = re.search(r'CMAKE_ARGS="\$\{CMAKE_ARGS:-([^}]*)\}"', (ROOT / "run").read_text())
    docker = re.search(r'ARG CMAKE_ARGS="([^"]*)"', (SHORE / "Dockerfile").read_text())
    assert run and docker
    assert run.group(1) == docker.group(1) == bundle.CMAKE_ARGS


# ------------------------------------------------------------------ the bundle


def make_wheel(folder: Path, name: str, version: str, requires: tuple[str, ...] = ()) -> Path:
    """A minimal pure-Python wheel with one module, `<name>_probe`."""
    dist = name.replace("-", "_")
    info = f"{dist}-{version}.dist-info"
    files = {
        f"{dist}_probe.py": "VALUE = 1\n",
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
        + "".join(f"Requires-Dist: {r}\n" for r in requires),
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
    }

    def digest(text: str) -> str:
        raw = hashlib.sha256(text.encode()).digest()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    record = "".join(f"{p},sha256={digest(t)},{len(t)}\n" for p, t in files.items())
    path = folder / f"{dist}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as whl:
        for p, t in {**files, f"{info}/RECORD": record + f"{info}/RECORD,,\n"}.items():
            whl.writestr(p, t)
    return path


def test_bundle_checksums_verify_and_catch_a_change(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    make_wheel(wheels, "seawatch", "9.9.9")
    model = tmp_path / "gemma-3-270m-q4_k_m.gguf"
    model.write_bytes(b"GGUF" + bytes(range(256)) * 4)
    root = tmp_path / "seawatch-9.9.9"
    bundle.write_bundle(root, bundle.version_of(wheels), wheels, model)

    listed = {line.split("  ", 1)[1] for line in (root / "SHA256SUMS").read_text().splitlines()}
    on_disk = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    assert listed == on_disk - {"SHA256SUMS"}
    for name in (
        "install.sh",
        "VERSION",
        "model/" + model.name,
        "wheels/seawatch-9.9.9-py3-none-any.whl",
    ):
        assert name in listed
    assert "vessel/seawatch-agent.service" in listed and "policies/policy.yaml" in listed
    assert (root / "VERSION").read_text() == "9.9.9\n"
    assert (root / "install.sh").stat().st_mode & 0o111

    def check() -> int:
        command = ["sha256sum", "--quiet", "--strict", "-c", "SHA256SUMS"]
        return subprocess.run(command, cwd=root, capture_output=True, check=False).returncode

    assert check() == 0
    with (root / "model" / model.name).open("r+b") as f:
        f.write(b"X")
    assert check() != 0


def test_offline_install_needs_every_wheel_and_nothing_else(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    make_wheel(wheels, "seawatch", "9.9.9", requires=("seawatch-probe-dep>=1",))
    python = bundle.make_venv(sys.executable, tmp_path / "venv")
    with pytest.raises(bundle.BundleError, match="seawatch-probe-dep"):
        bundle.install_offline(python, wheels, "9.9.9")
    make_wheel(wheels, "seawatch-probe-dep", "1.0")
    bundle.install_offline(python, wheels, "9.9.9")
    probe = "import seawatch_probe, seawatch_probe_dep_probe"
    assert subprocess.run([python, "-c", probe], check=False).returncode == 0


# ------------------------------------------------------------------ NATS


def found(pattern: str, text: str) -> str:
    """The first group of `pattern`'s first match in `text`, which must have one."""
    match = re.search(pattern, text, re.M)
    assert match is not None, pattern
    return match.group(1)


def nats_conf(text: str) -> dict[str, Any]:
    """The parts of a nats-server config the cluster depends on."""
    routes = re.search(r"routes:\s*\[([^\]]*)\]", text)
    return {
        "server_name": found(r"^server_name:\s*(\S+)", text),
        "cluster": found(r'cluster \{\s*name:\s*"([^"]+)"', text),
        "domain": found(r'jetstream \{[^}]*domain:\s*"([^"]+)"', text),
        "routes": re.findall(r"nats-route://([\w.\-]+):6222", routes.group(1) if routes else ""),
        "leaf_after_include": text.index('include "auth/seawatch.conf"')
        < text.index("leafnodes {"),
    }


def test_compose_nats_configs_form_one_three_node_cluster() -> None:
    confs = [nats_conf(p.read_text()) for p in NATS_CONFS]
    names = [c["server_name"] for c in confs]
    assert names == ["nats-1", "nats-2", "nats-3"]
    for conf in confs:
        assert sorted(conf["routes"]) == sorted(set(names) - {conf["server_name"]})
        assert conf["cluster"] == confs[0]["cluster"] and conf["domain"] == HUB_DOMAIN
        assert conf["leaf_after_include"]  # its TLS block replaces the generated one
    services = compose()["services"]
    for name in names:
        assert services[name]["command"] == ["-c", f"/etc/nats/{name}.conf"]
    hub_env = services["hub-api"]["environment"]
    urls = HubSettings(nats_url=hub_env["SEAWATCH_HUB_NATS_URL"]).nats_servers
    assert [u.rsplit("@", 1)[1] for u in urls] == [f"{n}:4222" for n in names]
    nginx = (SHORE / "nginx.conf").read_text()
    assert re.findall(r"server (nats-\d):7422;", nginx) == names


def test_k8s_nats_is_a_three_member_cluster() -> None:
    stateful = k8s("StatefulSet", "nats")
    conf = nats_conf(k8s("ConfigMap", "nats-config")["data"]["nats.conf"])
    members = [f"nats-{i}.nats" for i in range(stateful["spec"]["replicas"])]
    assert stateful["spec"]["replicas"] == 3 and conf["routes"] == members
    assert conf["domain"] == HUB_DOMAIN and conf["leaf_after_include"]
    hub_env = {
        e["name"]: e.get("value")
        for e in k8s("Deployment", "hub-api")["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    urls = HubSettings(nats_url=hub_env["SEAWATCH_HUB_NATS_URL"]).nats_servers
    assert [u.rsplit("@", 1)[1] for u in urls] == [f"{m}:4222" for m in members]


@pytest.fixture
def certs(tmp_path: Path) -> Path:
    """A private CA and a certificate for localhost signed by it (tls.crt, tls.key)."""
    if shutil.which("openssl") is None:
        pytest.skip("needs openssl to make certificates")
    d = tmp_path / "tls"
    d.mkdir()
    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    openssl(
        "req",
        "-x509",
        *key,
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=test CA",
    )
    openssl("req", *key, "-keyout", "tls.key", "-out", "hub.csr", "-subj", "/CN=localhost")
    (d / "san").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    openssl(
        "x509",
        "-req",
        "-in",
        "hub.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-out",
        "tls.crt",
        "-extfile",
        "san",
    )
    return d


def runnable_conf(
    text: str, at: Path, certs: Path, ports: dict[str, int], registry: ShipRegistry
) -> Path:
    """A shipped NATS config with its listen addresses, store and certificates moved to this
    machine, and the include it names made by the hub's code from `registry`."""
    for old, new in {
        **{f'"0.0.0.0:{p}"': f'"127.0.0.1:{ports[str(p)]}"' for p in (4222, 8222, 6222, 7422)},
        '"/data"': f'"{at / "js"}"',
        '"/etc/nats/tls/': f'"{certs}/',
    }.items():
        assert old in text
        text = text.replace(old, new)
    (at / "auth").mkdir(parents=True)
    auth = hub_config("127.0.0.1", free_port(), registry.hub_password, registry.hashes())
    (at / "auth" / "seawatch.conf").write_text(auth)
    (at / "nats.conf").write_text(text)
    return at / "nats.conf"


def test_every_nats_config_loads_in_nats_server(tmp_path: Path, certs: Path) -> None:
    texts = {p.name: p.read_text() for p in NATS_CONFS}
    texts["k8s"] = k8s("ConfigMap", "nats-config")["data"]["nats.conf"]
    ports = {str(p): free_port() for p in (4222, 8222, 6222, 7422)}
    registry = ShipRegistry(tmp_path / "ships")
    registry.add("MV-AURORA")
    for name, text in texts.items():
        conf = runnable_conf(text, tmp_path / name, certs, ports, registry)
        done = subprocess.run(
            [binary(), "-t", "-c", str(conf)],
            capture_output=True,
            text=True,
            check=False,
            env={"POD_NAME": "nats-0"},
        )
        assert done.returncode == 0, f"{name}: {done.stderr}"


def test_leaf_link_tls_as_documented(
    tmp_path: Path, certs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hub's leafnodes TLS block from the shipped config; a ship leaf configured as the
    agent configures it connects over TLS when SSL_CERT_FILE names the CA, and is refused
    without it (the system's CAs do not know a private CA)."""
    ports = {str(p): free_port() for p in (4222, 8222, 6222, 7422)}
    registry = ShipRegistry(tmp_path / "ships")
    secret = registry.add("MV-TLS")
    conf = runnable_conf(NATS_CONFS[0].read_text(), tmp_path / "hub", certs, ports, registry)
    log = (tmp_path / "hub.log").open("wb")
    hub = subprocess.Popen([binary(), "-c", str(conf)], stdout=log, stderr=log)
    leafz = f"http://127.0.0.1:{ports['8222']}/leafz"

    def leafs() -> int:
        try:
            return int(httpx.get(leafz, timeout=1.0).json()["leafnodes"])
        except (httpx.HTTPError, ValueError):
            return -1

    url = f"nats-leaf://localhost:{ports['7422']}"
    leaf = ship_config("MV-TLS", url, secret)  # what the agent gives its leaf server
    ship = NatsServer("MV-TLS", tmp_path / "ship", "MV-TLS", extra_config=leaf)
    try:
        wait_for(lambda: leafs() == 0)
        monkeypatch.delenv("SSL_CERT_FILE", raising=False)
        monkeypatch.delenv("SSL_CERT_DIR", raising=False)
        ship.start()
        ship_log = tmp_path / "ship" / "nats-server.log"
        wait_for(lambda: "certificate signed by unknown authority" in ship_log.read_text())
        assert leafs() == 0
        ship.stop()
        monkeypatch.setenv("SSL_CERT_FILE", str(certs / "ca.pem"))
        ship.start()
        wait_for(lambda: leafs() == 1)
    finally:
        ship.stop()
        hub.terminate()
        hub.wait(10)
        log.close()


# ------------------------------------------------------------------ Kubernetes


def test_manifests_pass_the_kubernetes_schemas() -> None:
    docs = k8s_docs()
    assert {d["kind"] for d in docs} >= {
        "StatefulSet",
        "Deployment",
        "HorizontalPodAutoscaler",
        "Ingress",
    }
    version = kubernetes_validate.latest_version()
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)
    listed = yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == sorted(
        p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml"
    )


def _secret_names(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("secretName", "secretKeyRef"):
                yield value if isinstance(value, str) else value["name"]
            else:
                yield from _secret_names(value)
    elif isinstance(node, list):
        for item in node:
            yield from _secret_names(item)


def test_secrets_are_referenced_never_kept() -> None:
    docs = k8s_docs()
    assert "Secret" not in {d["kind"] for d in docs}
    names = set(_secret_names(docs))
    assert names == {
        "seawatch-clickhouse",
        "seawatch-hub-nats",
        "seawatch-hub-tls",
        "seawatch-nats-auth",
        "seawatch-nats-leaf-tls",
    }
    readme = README.read_text()
    for name in names:  # each one's creation is documented
        assert re.search(rf"create secret \w+ {name}\b", readme), name
    ingress = k8s("Ingress", "hub-api")["spec"]
    assert ingress["tls"][0]["secretName"] == "seawatch-hub-tls"


def test_hub_deployments_run_the_same_pod_and_ingest_scales() -> None:
    api = k8s("Deployment", "hub-api")["spec"]["template"]["spec"]
    ingest = k8s("Deployment", "hub-ingest")["spec"]["template"]["spec"]
    assert api == ingest
    hpa = k8s("HorizontalPodAutoscaler", "hub-ingest")["spec"]
    assert hpa["scaleTargetRef"]["name"] == "hub-ingest" and hpa["maxReplicas"] > hpa["minReplicas"]
    assert api["containers"][0]["resources"]["requests"]["cpu"]  # HPA needs a request


def test_clickhouse_cluster_matches_the_documented_schema_command() -> None:
    config = ElementTree.fromstring(k8s("ConfigMap", "clickhouse-config")["data"]["seawatch.xml"])
    replicas = k8s("StatefulSet", "clickhouse")["spec"]["replicas"]
    cluster = re.search(r"seawatch hub schema --cluster (\w+)", README.read_text())
    assert cluster is not None
    shards = config.findall(f"remote_servers/{cluster.group(1)}/shard")
    assert [len(s.findall("replica")) for s in shards] == [replicas]
    assert len(config.findall("keeper_server/raft_configuration/server")) == replicas
    assert config.find("macros/shard") is not None and config.find("macros/replica") is not None
    profile = ElementTree.fromstring(k8s("ConfigMap", "clickhouse-config")["data"]["profile.xml"])
    assert profile.findtext("profiles/default/distributed_foreground_insert") == "1"


# ------------------------------------------------------------------ the cluster DDL


def test_cluster_ddl_replicates_and_distributes_every_table() -> None:
    ddl = cluster_ddl("fleet", "sw", default_retention())
    local = local_database("sw")
    tables = [
        found(r"CREATE TABLE IF NOT EXISTS \w+\.(\w+)", s)
        for m in migrations(local)
        for s in m.statements
        if "CREATE TABLE" in s
    ]
    assert len(tables) >= 15
    for table in tables:
        [created] = [s for s in ddl if f"EXISTS {local}.{table} ON CLUSTER fleet " in s]
        engine = found(r"ENGINE = (\w+)", created)
        assert engine == "Null" or engine.startswith("Replicated"), table
        assert (
            f"'/clickhouse/tables/{{shard}}/{local}/{table}', '{{replica}}'" in created
            or engine == "Null"
        )
        front = [s for s in ddl if s.startswith(f"CREATE TABLE IF NOT EXISTS sw.{table} ")]
        assert front == [
            f"CREATE TABLE IF NOT EXISTS sw.{table} ON CLUSTER fleet AS {local}.{table}"
            f" ENGINE = Distributed('fleet', '{local}', '{table}', "
            + ("cityHash64(ship_id))" if "ship_id" in created.split("ENGINE")[0] else "rand())")
        ]
    assert all(" ON CLUSTER fleet" in s for s in ddl if not s.startswith("INSERT"))
    assert ddl[-1].startswith("INSERT INTO sw.schema_migrations")


def single_node(statement: str) -> str:
    """A cluster statement as it runs on one node: no ON CLUSTER, plain MergeTree engines."""
    statement = statement.replace(" ON CLUSTER fleet", "")
    return re.sub(r"Replicated(\w*MergeTree)\('[^']*', '\{replica\}'(?:, )?", r"\1(", statement)


def test_cluster_ddl_builds_the_single_node_schema_on_chdb(chdb_path: Path) -> None:
    """The local tables, views and TTLs made from the cluster DDL are the tables the
    migrations make on one node; with the Distributed tables stood in for by Merge tables
    (their one-node counterpart for reads), the hub finds nothing to migrate and no TTL to
    set on them."""
    single_db, cluster_db = (f"deploy_{uuid.uuid4().hex[:10]}" for _ in range(2))
    retention = default_retention()
    single = FleetStore.open(None, chdb_path, database=single_db, retention=retention)
    local = local_database(cluster_db)
    try:
        assert single.migrate() == [m.version for m in migrations(single_db)]
        backend = single.backend
        for statement in cluster_ddl("fleet", cluster_db, retention):
            distributed = re.search(r"ENGINE = Distributed\('fleet', '(\w+)', '(\w+)'", statement)
            if distributed:
                statement = statement[: distributed.start()] + (
                    f"ENGINE = Merge('{distributed.group(1)}', '^{distributed.group(2)}$')"
                )
            backend.command(single_node(statement))

        def schema(db: str) -> list[tuple[Any, ...]]:
            rows = backend.query(
                "SELECT t.name AS t, t.engine_full AS e, replaceAll(t.as_select, {db:String}, '')"
                " AS s, arraySort(groupArray((c.position, c.name, c.type, c.compression_codec)))"
                " AS cols"
                " FROM system.tables AS t LEFT JOIN system.columns AS c"
                " ON c.database = t.database AND c.table = t.name"
                " WHERE t.database = {db:String} AND t.name != 'schema_migrations'"
                " GROUP BY t.name, t.engine_full, t.as_select ORDER BY t.name",
                {"db": db},
            )
            return [tuple(map(str, r.values())) for r in rows]

        assert schema(local) == schema(single_db)
        hub_view = FleetStore.open(None, chdb_path, database=cluster_db, retention=retention)
        try:
            assert hub_view.migrate() == []
        finally:
            hub_view.close()
    finally:
        for db in (single_db, cluster_db, local):
            single.backend.command(f"DROP DATABASE IF EXISTS {db}")
        single.close()
