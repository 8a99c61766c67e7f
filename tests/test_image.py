"""The generated Dockerfile, built into a real image and run in a real Docker engine.

No image registry is reachable from CI, so the tests first make a stand-in for the official
`python:<version>-slim` base: Debian's own python3 installed by mmdebstrap from the Debian
mirror apt already uses, plus the host's CA certificates (pip inside the build goes through
the same TLS setup as the host's). The Dockerfile takes it through its PYTHON_IMAGE build
argument. Then, for each db_driver, the image is built, and run the way the Kubernetes
manifests run it: read-only root with a tmpfs at /tmp, no capabilities, no new privileges,
as the image's own non-root user, against the tests' PostgreSQL on the host network.

The Docker engine is the one DOCKER_HOST (or the default socket) names when it answers;
otherwise, as root with Debian's docker.io installed, the tests start their own dockerd in a
temporary folder and stop it at the end. Without either (or without mmdebstrap) they are
skipped, and fail under CI, where .ci/run installs both.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from packaging.requirements import Requirement

from tests.support.answers import DRIVERS
from tests.support.generation import generate
from tests.support.processes import NotReadyError, answers_200, free_port, stop, wait_until, wait_until_ready

pytestmark = pytest.mark.boot

ANSWERS = {"project_name": "Image Check", "deployment_target": "kubernetes"}
ANSWERS_SLUG = "image_check"  # the slug copier derives from that name
BUILD_TIMEOUT = 900  # seconds for one image build (uv downloads every dependency)
READY_TIMEOUT = 60  # seconds for a container to answer /readyz 200
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
# The official slim images are debian:<suite>-slim (Debian's minbase: apt, and so libstdc++,
# which greenlet's wheel needs; passwd, for the Dockerfile's useradd) plus Python; so is the
# stand-in. ca-certificates and the host's bundle give pip a working TLS.
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates")


def unavailable(reason: str) -> None:
    """Skip on a developer's machine that lacks the engine; fail in CI, which must have it."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (.ci/run installs it)", pytrace=False)
    pytest.skip(reason)


@dataclass(frozen=True)
class Docker:
    client: str
    env: dict[str, str]

    def run(self, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [self.client, *args], env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check:
            assert result.returncode == 0, f"docker {shlex.join(args)} exited {result.returncode}:\n{result.stderr}"
        return result

    def answers(self) -> bool:
        try:
            return self.run("info", "--format", "{{.ServerVersion}}", timeout=20, check=False).returncode == 0
        except subprocess.TimeoutExpired:
            return False

    def inspect(self, container: str) -> dict[str, Any]:
        return json.loads(self.run("inspect", container).stdout)[0]


def buildkit_client(dockerd: str | None) -> str | None:
    """A docker client that builds with BuildKit (the Dockerfile's cache mounts need it).

    A client with the buildx plugin does; so does the client packaged with the engine
    (Debian's docker.io), whose release still has BuildKit built in. A newer client without
    buildx, found first on PATH, does not.
    """
    candidates = [shutil.which("docker")]
    if dockerd is not None:
        candidates.append(str(Path(dockerd).resolve().parent.parent / "bin" / "docker"))
    for client in filter(None, candidates):
        if not Path(client).is_file():
            continue
        buildx = subprocess.run([client, "buildx", "version"], capture_output=True, text=True, check=False)
        version = subprocess.run([client, "version", "--format", "{{.Client.Version}}"], capture_output=True, text=True)
        if buildx.returncode == 0 or version.stdout.strip().startswith("20."):
            return client
    return None


@pytest.fixture(scope="module")
def docker() -> Iterator[Docker]:
    dockerd = shutil.which("dockerd")
    client = buildkit_client(dockerd)
    if client is None:
        unavailable("no docker client that builds with BuildKit (Debian: apt-get install docker.io)")
    assert client is not None
    env = {**os.environ, "DOCKER_BUILDKIT": "1"}
    existing = Docker(client, env)
    if existing.answers():
        yield existing
        return
    if dockerd is None or os.geteuid() != 0:
        unavailable("no Docker engine answers, and none can be started here (needs root and dockerd)")
    assert dockerd is not None
    yield from _own_dockerd(client, dockerd, env)


def _own_dockerd(client: str, dockerd: str, env: dict[str, str]) -> Iterator[Docker]:
    """A private engine: its own data, state and socket in a temporary folder; no bridge, no
    iptables (containers use the host's network, as builds must to reach PyPI)."""
    root = Path(tempfile.mkdtemp(prefix="headroom-dockerd-"))
    socket_path = root / "docker.sock"
    log = root / "dockerd.log"
    command = [
        dockerd,
        "--iptables=false",
        "--ip6tables=false",
        "--bridge=none",
        f"--data-root={root / 'data'}",
        f"--exec-root={root / 'exec'}",
        f"--pidfile={root / 'dockerd.pid'}",
        f"--host=unix://{socket_path}",
    ]
    with log.open("wb") as sink:
        daemon = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT)
    engine = Docker(client, {**env, "DOCKER_HOST": f"unix://{socket_path}"})
    try:
        try:
            wait_until_ready(
                daemon,
                lambda: socket_path.exists() and engine.answers(),
                60,
                name="dockerd",
                output=lambda: log.read_text(errors="replace")[-3000:],
                interval=0.5,
            )
        except NotReadyError as error:
            pytest.fail(str(error), pytrace=False)
        yield engine
    finally:
        stop(daemon, timeout=60)
        # dockerd leaves its network namespace (exec-root/netns/default) mounted when it exits.
        for mount_point in sorted(mounts_under(root), reverse=True):
            subprocess.run(["umount", mount_point], capture_output=True, check=False)
        shutil.rmtree(root, ignore_errors=True)


def mounts_under(root: Path) -> list[str]:
    points = (line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines())
    return [point for point in points if point.startswith(f"{root}/")]


def os_release() -> dict[str, str]:
    pairs = (line.split("=", 1) for line in Path("/etc/os-release").read_text().splitlines() if "=" in line)
    return {key: value.strip('"') for key, value in pairs}


def debian_mirror(suite: str) -> str:
    """The mirror apt on this machine fetches `suite` (main) from, as its sources say."""
    sources = Path("/etc/apt/sources.list.d")
    one_line = [Path("/etc/apt/sources.list"), *sorted(sources.glob("*.list"))]
    for path in filter(Path.is_file, one_line):
        for line in path.read_text().splitlines():
            words = re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()
            if len(words) >= 4 and words[0] == "deb" and words[2] == suite and "main" in words[3:]:
                return words[1]
    for path in sorted(sources.glob("*.sources")):
        for stanza in re.split(r"\n\s*\n", path.read_text()):
            fields: dict[str, list[str]] = {}
            for line in stanza.splitlines():
                if ":" in line and not line.startswith(("#", " ")):
                    key, _, value = line.partition(":")
                    fields[key.strip().lower()] = value.split()
            if (
                "deb" in fields.get("types", [])
                and suite in fields.get("suites", [])
                and "main" in fields.get("components", [])
                and fields.get("enabled", ["yes"]) != ["no"]
            ):
                return fields["uris"][0]
    unavailable(f"no apt source for {suite} main in /etc/apt: cannot make the Python base image")
    raise AssertionError  # unreachable


@pytest.fixture(scope="module")
def python_image(docker: Docker, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A local stand-in for python:X-slim, made once per engine and kept while it lives."""
    release = os_release()
    suite = release.get("VERSION_CODENAME", "")
    tag = f"headroom-python:{release.get('ID', 'debian')}-{suite}"
    if docker.run("image", "inspect", tag, check=False).returncode == 0:
        return tag
    mmdebstrap = shutil.which("mmdebstrap")
    if mmdebstrap is None or not suite or os.geteuid() != 0:
        unavailable("making the Python base image needs root and mmdebstrap (Debian: apt-get install mmdebstrap)")
    assert mmdebstrap is not None
    mirror = debian_mirror(suite)
    tarball = tmp_path_factory.mktemp("python-image") / "rootfs.tar"
    hooks = [
        # The host's CA bundle: TLS from inside the build works wherever it works on the host.
        f"copy-in {HOST_CA_BUNDLE} /etc/ssl/certs/",
        # Debian's pip reads its own certifi copy unless told otherwise.
        f"""printf '[global]\\ncert = {HOST_CA_BUNDLE}\\n' > "$1/etc/pip.conf" """,
        'rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*',
    ]
    command = [
        mmdebstrap,
        "--quiet",
        "--variant=minbase",
        f"--include={','.join(BASE_PACKAGES)}",
        *(f"--dpkgopt=path-exclude=/usr/share/{folder}/*" for folder in ("doc", "man", "locale", "info")),
        *(f"--customize-hook={hook}" for hook in hooks),
        suite,
        str(tarball),
        mirror,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
    assert result.returncode == 0, f"mmdebstrap failed:\n{result.stderr[-3000:]}"
    changes = ["--change", "ENV LANG=C.UTF-8", "--change", 'CMD ["python3"]']
    docker.run("import", *changes, str(tarball), tag, timeout=300)
    tarball.unlink()
    return tag


@dataclass(frozen=True)
class Image:
    tag: str
    driver: str
    project: Path

    def manifest(self, name: str) -> dict[str, Any]:
        return yaml.safe_load((self.project / "deploy" / "kubernetes" / name).read_text())

    @property
    def pod(self) -> dict[str, Any]:
        return self.manifest("deployment.yaml")["spec"]["template"]["spec"]


@pytest.fixture(scope="module")
def builds(
    docker: Docker, python_image: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, tuple[Image, subprocess.CompletedProcess[str]]]]:
    """Both variants' images, built side by side (most of a build is waiting on PyPI)."""

    def build(driver: str) -> tuple[Image, subprocess.CompletedProcess[str]]:
        answers = {**ANSWERS, "db_driver": driver}
        generated = generate("copier", answers, tmp_path_factory.mktemp(f"image-{driver}"))
        assert generated.project is not None, generated.error
        tag = f"headroom-image-check-{driver}:test"
        command = ["build", "--quiet", "--network=host", f"--build-arg=PYTHON_IMAGE={python_image}", "-t", tag, "."]
        result = subprocess.run(
            [docker.client, *command],
            cwd=generated.project,
            env=docker.env,
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT,
            check=False,
        )
        return Image(tag, driver, generated.project), result

    with ThreadPoolExecutor(max_workers=len(DRIVERS)) as pool:
        built = dict(zip(DRIVERS, pool.map(build, DRIVERS), strict=True))
    yield built
    for image, _ in built.values():
        docker.run("image", "rm", "--force", image.tag, check=False)


@pytest.fixture(scope="module", params=DRIVERS, ids=lambda driver: f"db_driver={driver}")
def image(request: pytest.FixtureRequest, builds: dict[str, tuple[Image, subprocess.CompletedProcess[str]]]) -> Image:
    image, result = builds[request.param]
    assert result.returncode == 0, f"docker build failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return image


def sandbox(image: Image) -> list[str]:
    """`docker run` options for what the pod spec asks: read-only root with a writable /tmp,
    no capabilities, no privilege escalation, the pod's user, the host's network (where the
    tests' PostgreSQL listens)."""
    context = image.pod["securityContext"]
    return [
        "--read-only",
        "--tmpfs=/tmp",
        "--cap-drop=ALL",
        "--security-opt=no-new-privileges",
        f"--user={context['runAsUser']}:{context['runAsGroup']}",
        "--network=host",
    ]


@dataclass
class Container:
    docker: Docker
    name: str
    url: str

    def logs(self) -> str:
        result = self.docker.run("logs", self.name, check=False)
        return result.stdout + result.stderr

    def wait_until_ready(self) -> None:
        def ready() -> bool:
            if answers_200(f"{self.url}/readyz", timeout=2):
                return True
            state = self.docker.inspect(self.name)["State"]
            assert state["Running"], f"the container exited {state['ExitCode']}:\n{self.logs()}"
            return False

        assert wait_until(ready, READY_TIMEOUT, interval=0.3), (
            f"no 200 from /readyz in {READY_TIMEOUT} s:\n{self.logs()}"
        )


def start(docker: Docker, image: Image, database_url: str, name: str) -> Container:
    port = free_port()
    docker.run("rm", "--force", name, check=False)
    environment = ["--env", f"DATABASE_URL={database_url}", "--env", f"PORT={port}"]
    docker.run("run", "--detach", "--name", name, *sandbox(image), *environment, image.tag)
    container = Container(docker, name, f"http://127.0.0.1:{port}")
    container.wait_until_ready()
    return container


def run_once(docker: Docker, image: Image, database_url: str, command: list[str], timeout: float = 120) -> Any:
    return docker.run(
        "run", "--rm", *sandbox(image), "--env", f"DATABASE_URL={database_url}", image.tag, *command,
        timeout=timeout, check=False,
    )  # fmt: skip


def migrate(docker: Docker, image: Image, database_url: str) -> None:
    """The migration Job's own command, in the image."""
    job = image.manifest("migration-job.yaml")["spec"]["template"]["spec"]["containers"][0]
    result = run_once(docker, image, database_url, job["command"])
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def service(docker: Docker, image: Image, postgres: Any) -> Iterator[Container]:
    database_url = postgres.create_database(f"image_{image.driver}")
    migrate(docker, image, database_url)
    container = start(docker, image, database_url, f"headroom-image-check-{image.driver}")
    yield container
    docker.run("rm", "--force", container.name, check=False)


def process_tree(pid: int) -> list[int]:
    """pid and all its descendants, from the host's /proc."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    found = [pid]
    if children.exists():
        for child in children.read_text().split():
            found += process_tree(int(child))
    return found


def status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {key: value.strip() for key, _, value in (line.partition(":") for line in lines)}


# The tests


def test_the_image_is_lean_and_runs_as_its_own_unprivileged_user(docker: Docker, image: Image) -> None:
    config = docker.run("image", "inspect", image.tag).stdout
    user = json.loads(config)[0]["Config"]["User"]
    context = image.pod["securityContext"]
    assert user == f"{context['runAsUser']}:{context['runAsGroup']}", "the Dockerfile's USER is the pods' user"
    # As root, to see into /root; nothing else runs as root.
    probe = (
        "import json, pathlib, shutil; print(json.dumps({"
        "'compilers': [c for c in ('gcc', 'cc', 'make') if shutil.which(c)],"
        "'leftovers': [p for p in ('/build', '/root/.cache', '/app/.env', '/app/requirements.txt')"
        " if pathlib.Path(p).exists()],"
        "}))"
    )
    result = docker.run("run", "--rm", "--network=none", "--user=0", "--entrypoint", "python", image.tag, "-c", probe)
    assert json.loads(result.stdout) == {"compilers": [], "leftovers": []}


def test_the_image_holds_exactly_the_packages_of_the_lock(docker: Docker, image: Image, uv: str) -> None:
    """Built from uv.lock: every package the lock names for production, at its version, and no other."""
    exported = subprocess.run(
        [uv, "export", "--locked", "--no-dev", "--no-emit-project", "--no-hashes", "--no-header",
         "--no-annotate", "--format", "requirements-txt"],
        cwd=image.project, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    # What applies on Linux: tzdata, say, is locked for Windows only.
    requirements = [Requirement(line) for line in exported.splitlines() if "==" in line]
    locked = {
        canonical(f"{req.name}{req.specifier}") for req in requirements if req.marker is None or req.marker.evaluate()
    }
    probe = (
        "import json, importlib.metadata as m; print(json.dumps(sorted("
        "d.metadata['Name'] + '==' + d.version for d in m.distributions())))"
    )
    result = docker.run("run", "--rm", "--network=none", "--entrypoint", "python", image.tag, "-c", probe)
    installed = {canonical(name) for name in json.loads(result.stdout)}
    project = canonical(f"{ANSWERS_SLUG}==0.1.0")
    assert installed - {project} == locked
    assert project in installed


def canonical(requirement: str) -> str:
    """name==version with the name normalised as package indexes do."""
    name, _, version = requirement.strip().partition("==")
    return re.sub(r"[-_.]+", "-", name).lower() + "==" + version


def test_new_pods_wait_for_the_migration_job_and_then_start(docker: Docker, image: Image, postgres: Any) -> None:
    """The Deployment's init container waits while the schema is behind; the Job's command
    brings it to head; the init container then lets the pod start."""
    database_url = postgres.create_database(f"image_waits_{image.driver}")
    wait = image.pod["initContainers"][0]["command"]
    name = f"headroom-image-waits-{image.driver}"
    docker.run("rm", "--force", name, check=False)
    environment = ["--env", f"DATABASE_URL={database_url}"]
    docker.run("run", "--detach", "--name", name, *sandbox(image), *environment, image.tag, *wait)
    try:
        # Until it says it waits (its first check can take seconds on a busy machine), then: still waiting.
        deadline = time.monotonic() + 60
        while "waiting for the migration Job" not in (said := docker.run("logs", name, check=False).stdout):
            assert time.monotonic() < deadline, f"it never said it waits:\n{said}"
            time.sleep(0.5)
        assert docker.inspect(name)["State"]["Running"], f"it did not wait:\n{said}"
    finally:
        docker.run("rm", "--force", name, check=False)
    migrate(docker, image, database_url)
    started = time.monotonic()
    ready = run_once(docker, image, database_url, ["timeout", "30", *wait])
    assert ready.returncode == 0, ready.stdout + ready.stderr
    assert time.monotonic() - started < 30


def test_the_service_answers_readyz_and_round_trips_an_item(service: Container) -> None:
    assert httpx.get(f"{service.url}/healthz", timeout=5).status_code == 200
    assert httpx.get(f"{service.url}/readyz", timeout=5).json() == {"status": "ok"}
    created = httpx.post(f"{service.url}/items", json={"name": "from the image"}, timeout=10)
    assert created.status_code == 201, created.text
    fetched = httpx.get(f"{service.url}/items/{created.json()['id']}", timeout=10)
    assert fetched.status_code == 200
    assert fetched.json() == created.json()


def test_no_process_of_the_service_is_root(docker: Docker, image: Image, service: Container) -> None:
    pid = docker.inspect(service.name)["State"]["Pid"]
    tree = process_tree(pid)
    workers = int(image.manifest("configmap.yaml")["data"]["WEB_CONCURRENCY"])
    assert len(tree) >= 1 + workers, f"expected gunicorn and {workers} workers, found {tree}"
    expected = str(image.pod["securityContext"]["runAsUser"])
    for process in tree:
        real, effective, saved, filesystem = status(process)["Uid"].split()
        assert real == effective == saved == filesystem == expected, f"process {process}: Uid {status(process)['Uid']}"
        assert status(process)["CapEff"] == "0000000000000000", f"process {process} keeps capabilities"


def test_the_root_filesystem_is_read_only_and_the_service_fits_its_memory_request(
    docker: Docker, image: Image, service: Container
) -> None:
    assert docker.inspect(service.name)["HostConfig"]["ReadonlyRootfs"] is True
    written = docker.run("exec", service.name, "sh", "-c", "touch /app/written", check=False)
    assert written.returncode != 0
    assert "Read-only file system" in written.stderr
    # The pod's memory request (a Kubernetes quantity in Mi) covers gunicorn and its workers.
    tree = process_tree(docker.inspect(service.name)["State"]["Pid"])
    resident_kib = sum(int(status(process)["VmRSS"].split()[0]) for process in tree)
    request = image.pod["containers"][0]["resources"]["requests"]["memory"]
    assert request.endswith("Mi")
    assert resident_kib / 1024 < int(request.removesuffix("Mi")), f"{resident_kib // 1024} MiB resident"


def test_docker_stop_ends_it_cleanly_within_the_grace_period(docker: Docker, image: Image, postgres: Any) -> None:
    database_url = postgres.create_database(f"image_stop_{image.driver}")
    migrate(docker, image, database_url)
    container = start(docker, image, database_url, f"headroom-image-stop-{image.driver}")
    grace = int(image.pod["terminationGracePeriodSeconds"])
    try:
        started = time.monotonic()
        docker.run("stop", "--time", str(grace), container.name, timeout=grace + 30)
        elapsed = time.monotonic() - started
        state = docker.inspect(container.name)["State"]
        assert state["ExitCode"] == 0, container.logs()
        assert elapsed < grace, f"took {elapsed:.1f} s of {grace} s: SIGKILL, not SIGTERM, ended it"
        assert "Traceback" not in container.logs()
    finally:
        docker.run("rm", "--force", container.name, check=False)
