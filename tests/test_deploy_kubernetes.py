"""The kubernetes target's manifests: kubernetes-validate --strict passes each of them, kustomize
assembles a release whose references resolve, the pods run sandboxed, and the numbers the
manifests share agree with the answers and with each other.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.deploy import Case, Rendered, cases, documents, pgbouncer_cases, run, tool

MANIFEST_KINDS = {
    "ConfigMap",
    "Secret",
    "Service",
    "Deployment",
    "PodDisruptionBudget",
    "HorizontalPodAutoscaler",
    "Job",
}
# The ConfigMap's environment variable for each, as settings.py reads them.
PLAN_VARIABLES = {
    "workers": "WEB_CONCURRENCY",
    "pool_size": "DB_POOL_SIZE",
    "max_overflow": "DB_MAX_OVERFLOW",
    "db_max_connections": "DB_MAX_CONNECTIONS",
    "db_reserved_connections": "DB_RESERVED_CONNECTIONS",
    "pgbouncer_max_client_conn": "PGBOUNCER_MAX_CLIENT_CONN",
    "pgbouncer_pool_size": "PGBOUNCER_POOL_SIZE",
}


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
