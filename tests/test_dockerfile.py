"""The Dockerfile builds what pyproject declares and runs it as the contract says.

Docker is not needed: the Dockerfile is parsed, and its HEALTHCHECK command is run for real
through /bin/sh against a loopback HTTP server.
"""

from __future__ import annotations

import fnmatch
import json
import os
import shlex
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[1]
DEV_TOOLS = ("pytest", "ruff", "mypy", "hypothesis", "cronsim", "[test]")


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str


def parse_dockerfile(text: str) -> list[list[Instruction]]:
    """Instructions grouped by stage (each list starts with its FROM)."""
    stages: list[list[Instruction]] = []
    logical: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # comments may sit between continuation lines
        if line.endswith("\\"):
            logical.append(line[:-1].strip())
            continue
        logical.append(line)
        keyword, _, args = " ".join(logical).partition(" ")
        logical = []
        instruction = Instruction(keyword.upper(), args.strip())
        if instruction.keyword == "FROM":
            stages.append([])
        assert stages, f"{instruction.keyword} before the first FROM"
        stages[-1].append(instruction)
    assert not logical, "the Dockerfile ends inside a line continuation"
    return stages


@pytest.fixture(scope="module")
def stages() -> list[list[Instruction]]:
    return parse_dockerfile((ROOT / "Dockerfile").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def pyproject() -> dict[str, Any]:
    with (ROOT / "pyproject.toml").open("rb") as fh:
        return tomllib.load(fh)


def _all(stage: list[Instruction], keyword: str) -> list[str]:
    return [i.args for i in stage if i.keyword == keyword]


def _one(stage: list[Instruction], keyword: str) -> str:
    found = _all(stage, keyword)
    assert len(found) == 1, f"expected one {keyword}, found {found}"
    return found[0]


def _pip_installs(stage: list[Instruction]) -> list[list[str]]:
    """The arguments of every `pip install` in the stage's RUN lines, options removed."""
    installs = []
    for run in _all(stage, "RUN"):
        for command in run.replace("&&", ";").split(";"):
            words = shlex.split(command)
            if "pip" in words and "install" in words:
                args = words[words.index("install") + 1 :]
                installs.append([a for a in args if not a.startswith("-")])
    return installs


def test_two_stages_on_python_311_slim(stages: list[list[Instruction]]) -> None:
    assert len(stages) == 2
    build, final = stages
    assert build[0].args.split()[0] == "python:3.11-slim"
    assert final[0].args.split()[0] == "python:3.11-slim"
    assert build[0].args.lower().endswith(" as build")
    copies = _all(final, "COPY")
    assert "--from=build /opt/venv /opt/venv" in copies


def test_build_stage_installs_the_project_without_the_test_extra(
    stages: list[list[Instruction]],
) -> None:
    build = stages[0]
    assert any("venv /opt/venv" in run for run in _all(build, "RUN"))
    assert _pip_installs(build) == [["."]]
    assert any("--no-cache-dir" in run for run in _all(build, "RUN") if "pip install" in run)


def test_build_stage_copies_everything_pip_needs(
    stages: list[list[Instruction]], pyproject: dict[str, Any]
) -> None:
    copied = {
        Path(src).as_posix().rstrip("/")
        for args in _all(stages[0], "COPY")
        for src in args.split()[:-1]
        if not src.startswith("--")
    }
    needed = {"pyproject.toml"}
    readme = pyproject["project"].get("readme")
    if isinstance(readme, str):
        needed.add(readme)
    needed |= {
        pattern.rstrip("*")
        for pattern in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    }
    assert needed <= copied, f"not copied into the build stage: {sorted(needed - copied)}"
    missing = sorted(src for src in copied if not (ROOT / src).exists())
    assert missing == [], f"COPY sources that do not exist (docker build fails): {missing}"


def test_dockerignore_keeps_secrets_out_and_sources_in(stages: list[list[Instruction]]) -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]

    def ignored(path: str) -> bool:
        result = False
        for pattern in patterns:
            negate = pattern.startswith("!")
            pattern = pattern.lstrip("!")
            if fnmatch.fnmatch(path, pattern) or fnmatch.fnmatch(path.split("/")[0], pattern):
                result = not negate
        return result

    for path in (".env", ".git", ".venv", "tests", "bench", ".env.production"):
        assert ignored(path), f"{path} would be sent to the Docker daemon"
    for args in _all(stages[0], "COPY"):
        for src in args.split()[:-1]:
            assert not ignored(src), f"{src} is copied but .dockerignore excludes it"


def test_entrypoint_is_the_console_script_and_cmd_is_run(
    stages: list[list[Instruction]], pyproject: dict[str, Any]
) -> None:
    final = stages[1]
    scripts = pyproject["project"]["scripts"]
    entrypoint = json.loads(_one(final, "ENTRYPOINT"))
    assert len(entrypoint) == 1
    assert scripts[entrypoint[0]] == "bot.cli:main"
    assert json.loads(_one(final, "CMD")) == ["run"]


def test_runs_as_a_non_root_user(stages: list[list[Instruction]]) -> None:
    user = _all(stages[1], "USER")[-1]
    name = user.split(":")[0]
    assert name not in {"root", "0"}
    assert name == "10001"
    assert any("--uid 10001" in run for run in _all(stages[1], "RUN"))


def test_port_environment_and_expose_match_the_default_port(
    stages: list[list[Instruction]],
) -> None:
    final = stages[1]
    default_port = Settings.model_fields["port"].default
    env = {}
    for args in _all(final, "ENV"):
        for pair in shlex.split(args):
            name, _, value = pair.partition("=")
            env[name] = value
    assert env["PORT"] == str(default_port)
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["PATH"].startswith("/opt/venv/bin:")
    assert _one(final, "EXPOSE").split() == [str(default_port)]


def test_final_stage_has_no_build_or_test_tools(stages: list[list[Instruction]]) -> None:
    final = stages[1]
    assert _pip_installs(final) == []
    text = "\n".join(i.args for i in final).lower()
    for tool in DEV_TOOLS:
        assert tool not in text, f"{tool} appears in the final stage"


def _healthcheck_command(stages: list[list[Instruction]]) -> str:
    args = _one(stages[1], "HEALTHCHECK")
    words = args.split(" ")
    index = words.index("CMD")
    assert all(w.startswith("--") for w in words[:index] if w)
    return " ".join(words[index + 1 :])


def test_healthcheck_uses_python_against_healthz(stages: list[list[Instruction]]) -> None:
    command = _healthcheck_command(stages)
    assert "http://127.0.0.1:${PORT}/healthz" in command
    assert command.startswith("python ")
    assert "curl" not in command and "wget" not in command


class _Health(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/healthz" else 404)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"status": "ok"}')

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def _run_healthcheck(command: str, port: int) -> int:
    # As Docker runs a shell-form HEALTHCHECK: `/bin/sh -c`, with the container's PORT.
    env = {"PATH": f"{Path(sys.executable).parent}{os.pathsep}/usr/bin:/bin", "PORT": str(port)}
    done = subprocess.run(["/bin/sh", "-c", command], env=env, capture_output=True, check=False)
    return done.returncode


@pytest.mark.skipif(not Path("/bin/sh").exists(), reason="needs /bin/sh, as the image has")
def test_healthcheck_passes_on_200_and_fails_otherwise(
    stages: list[list[Instruction]], health_server: ThreadingHTTPServer
) -> None:
    command = _healthcheck_command(stages)
    port = health_server.server_address[1]
    assert _run_healthcheck(command, port) == 0
    _Health.status = 503
    try:
        assert _run_healthcheck(command, port) == 1
    finally:
        _Health.status = 200
    health_server.shutdown()
    health_server.server_close()
    assert _run_healthcheck(command, port) == 1


# --- deploy/: docker compose and Kubernetes -------------------------------------------------


def _deploy_documents() -> list[tuple[Path, dict[str, Any]]]:
    documents = []
    for path in sorted((ROOT / "deploy").rglob("*.y*ml")):
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            assert isinstance(document, dict), f"{path}: a document that is not a mapping"
            documents.append((path, document))
    return documents


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "deploy" / "docker-compose.yml").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def k8s() -> dict[str, dict[str, Any]]:
    """Kubernetes objects by kind (one of each)."""
    objects: dict[str, dict[str, Any]] = {}
    for path, document in _deploy_documents():
        if "kubernetes" not in path.parts:
            continue
        for key in ("apiVersion", "kind", "metadata"):
            assert key in document, f"{path}: no {key}"
        assert document["kind"] not in objects, f"{path}: a second {document['kind']}"
        objects[document["kind"]] = document
    return objects


def test_every_deploy_yaml_parses() -> None:
    paths = {path.relative_to(ROOT).as_posix() for path, _ in _deploy_documents()}
    assert paths == {
        "deploy/docker-compose.yml",
        "deploy/kubernetes/configmap.yaml",
        "deploy/kubernetes/deployment.yaml",
        "deploy/kubernetes/pdb.yaml",
        "deploy/kubernetes/secret.yaml",
        "deploy/kubernetes/service.yaml",
    }


def test_compose_bot_builds_this_repository_and_uses_compose_redis(
    compose: dict[str, Any],
) -> None:
    compose_dir = ROOT / "deploy"
    bot = compose["services"]["bot"]
    assert (compose_dir / bot["build"]["context"]).resolve() == ROOT
    assert (compose_dir / bot["build"]["context"] / bot["build"]["dockerfile"]).is_file()
    assert bot["env_file"] == "../.env"
    assert bot["environment"]["REDIS_URL"] == "redis://redis:6379/0"
    port = Settings.model_fields["port"].default
    assert bot["environment"]["PORT"] == str(port)
    assert [p.split(":")[-1] for p in bot["ports"]] == [str(port)]
    assert bot["depends_on"]["redis"]["condition"] == "service_healthy"


def test_compose_redis_persists(compose: dict[str, Any]) -> None:
    redis = compose["services"]["redis"]
    assert redis["image"] == "redis:7"
    assert " ".join(redis["command"]).endswith("--appendonly yes")
    volume, _, target = redis["volumes"][0].partition(":")
    assert target == "/data"
    assert volume in compose["volumes"]
    assert "redis-cli" in redis["healthcheck"]["test"]


@pytest.mark.skipif(not Path("/bin/sh").exists(), reason="needs /bin/sh, as the image has")
def test_compose_bot_healthcheck_works(
    compose: dict[str, Any], health_server: ThreadingHTTPServer
) -> None:
    kind, command = compose["services"]["bot"]["healthcheck"]["test"]
    assert kind == "CMD-SHELL"
    command = command.replace("$$", "$")  # compose's escape, undone as compose does
    assert "/healthz" in command
    port = health_server.server_address[1]
    assert _run_healthcheck(command, port) == 0
    _Health.status = 500
    try:
        assert _run_healthcheck(command, port) == 1
    finally:
        _Health.status = 200


def _container(k8s: dict[str, dict[str, Any]]) -> dict[str, Any]:
    containers = k8s["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    container: dict[str, Any] = containers[0]
    return container


def _container_port(container: dict[str, Any], port: int | str) -> int:
    """A probe's or Service's port (number or name) as the container port number."""
    for declared in container["ports"]:
        if port in (declared["containerPort"], declared.get("name")):
            number: int = declared["containerPort"]
            return number
    raise AssertionError(f"port {port!r} is not declared by the container")


def test_k8s_probes_hit_readyz_and_healthz_on_the_bot_port(
    k8s: dict[str, dict[str, Any]],
) -> None:
    container = _container(k8s)
    port = int(k8s["ConfigMap"]["data"]["PORT"])
    assert port == Settings.model_fields["port"].default
    readiness = container["readinessProbe"]["httpGet"]
    liveness = container["livenessProbe"]["httpGet"]
    assert readiness["path"] == "/readyz"
    assert liveness["path"] == "/healthz"
    assert _container_port(container, readiness["port"]) == port
    assert _container_port(container, liveness["port"]) == port
    if "startupProbe" in container:
        assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    annotations = k8s["Deployment"]["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(port)
    assert annotations["prometheus.io/path"] == "/metrics"


def test_k8s_service_maps_80_to_the_bot_port(k8s: dict[str, dict[str, Any]]) -> None:
    service = k8s["Service"]["spec"]
    [port] = service["ports"]
    assert port["port"] == 80
    assert _container_port(_container(k8s), port["targetPort"]) == int(
        k8s["ConfigMap"]["data"]["PORT"]
    )


def test_k8s_selectors_match_the_pods(k8s: dict[str, dict[str, Any]]) -> None:
    deployment = k8s["Deployment"]["spec"]
    labels = deployment["template"]["metadata"]["labels"]
    assert deployment["replicas"] == 2
    for selector in (
        deployment["selector"]["matchLabels"],
        k8s["Service"]["spec"]["selector"],
        k8s["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"],
    ):
        assert selector.items() <= labels.items()
    assert k8s["PodDisruptionBudget"]["apiVersion"] == "policy/v1"
    assert k8s["PodDisruptionBudget"]["spec"]["minAvailable"] == 1


def test_k8s_pod_is_non_root_with_resources(k8s: dict[str, dict[str, Any]]) -> None:
    pod = k8s["Deployment"]["spec"]["template"]["spec"]
    container = _container(k8s)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert {"cpu", "memory"} <= container["resources"]["requests"].keys()
    assert "memory" in container["resources"]["limits"]
    assert container["args"] == ["run"]


def test_k8s_env_comes_from_the_configmap_and_secret(k8s: dict[str, dict[str, Any]]) -> None:
    refs = {
        (kind, source[key]["name"])
        for source in _container(k8s)["envFrom"]
        for kind, key in (("ConfigMap", "configMapRef"), ("Secret", "secretRef"))
        if key in source
    }
    assert refs == {
        ("ConfigMap", k8s["ConfigMap"]["metadata"]["name"]),
        ("Secret", k8s["Secret"]["metadata"]["name"]),
    }


def test_k8s_settings_are_known_and_load(
    k8s: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    values = {**k8s["ConfigMap"]["data"], **k8s["Secret"]["stringData"]}
    assert all(isinstance(v, str) for v in values.values()), "env values must be strings"
    unknown = {name for name in values if name.lower() not in Settings.model_fields}
    assert unknown == set()
    secret_names = {
        name
        for name, field in Settings.model_fields.items()
        if "SecretStr" in str(field.annotation)
    }
    leaked = {name for name in k8s["ConfigMap"]["data"] if name.lower() in secret_names}
    assert leaked == set(), "secrets belong in the Secret, not the ConfigMap"
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    settings = load_settings(_env_file=None)
    settings.require_for_run()
    assert settings.socket_mode
    assert settings.uses_iam
    assert settings.redis_url is not None


def _drain_bound() -> float:
    """How long `run` may take after SIGTERM: CSE calls under way finish (bounded)."""
    from bot.runtime import SHUTDOWN_GRACE

    cse_timeout = Settings.model_fields["cse_timeout"].default
    return float(cse_timeout) + SHUTDOWN_GRACE


def test_k8s_grace_period_outlasts_the_drain(k8s: dict[str, dict[str, Any]]) -> None:
    pod = k8s["Deployment"]["spec"]["template"]["spec"]
    pause = 0.0
    pre_stop = _container(k8s).get("lifecycle", {}).get("preStop")
    if pre_stop is not None:
        command = " ".join(pre_stop["exec"]["command"])
        assert command.startswith("python ")  # the slim image has python, no curl, no shell tools
        pause = float(command.rsplit("sleep(", 1)[1].split(")")[0])
    assert pod["terminationGracePeriodSeconds"] > pause + _drain_bound()


def test_compose_grace_period_outlasts_the_drain(compose: dict[str, Any]) -> None:
    grace = compose["services"]["bot"]["stop_grace_period"]
    assert grace.endswith("s")
    assert float(grace[:-1]) > _drain_bound()
