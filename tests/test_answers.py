"""Which answers each tool accepts and refuses, declared as data.

Refused answers go through each tool's command line, as a user would type
them: the run must fail, say what is wrong (the field, the value and what
would be accepted) in the same words under both tools, and leave no project
behind.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from hooks.copier_rules import AnswerRefusedError, load_copier_config, validate
from tests.support.answers import REPO, TOOLS, default_answers
from tests.support.cli import run_cli
from tests.support.generation import generate


@dataclass(frozen=True)
class Refusal:
    answers: dict[str, object]
    # Every fragment must appear in the output of both tools.
    says: tuple[str, ...]
    # cookiecutter's command line prints a refusal by copier.yml's rules as one line. A choice
    # or yes/no answer it refuses itself, and a refusal by its pre_gen_project hook, come
    # with its traceback (as every refusal does from copier's command line).
    cookiecutter_traceback: bool = False


REFUSED: dict[str, Refusal] = {
    "empty-project-name": Refusal({"project_name": "  "}, ("project_name: must not be empty",)),
    "no-project-name": Refusal({"project_name": ""}, ("project_name: must not be empty",)),
    "slug-is-current-folder": Refusal({"project_slug": "."}, ('project_slug: "." is not a valid package name',)),
    "slug-is-parent-folder": Refusal({"project_slug": ".."}, ('project_slug: ".." is not a valid package name',)),
    "slug-is-absolute-path": Refusal({"project_slug": "/tmp"}, ('project_slug: "/tmp" is not a valid package name',)),
    "slug-is-empty": Refusal({"project_slug": ""}, ('project_slug: "" is not a valid package name',)),
    "slug-with-capitals": Refusal(
        {"project_slug": "MyService"},
        ('project_slug: "MyService" is not a valid package name; use lowercase letters, digits and underscores',),
    ),
    "slug-starting-with-digit": Refusal({"project_slug": "1service"}, ('project_slug: "1service" is not a valid',)),
    "slug-with-dash": Refusal({"project_slug": "my-service"}, ('project_slug: "my-service" is not a valid',)),
    "slug-is-keyword": Refusal({"project_slug": "class"}, ('project_slug: "class" is reserved',)),
    "unknown-python": Refusal(
        {"python_version": "3.9"}, ("python_version", "3.9", "3.11", "3.12", "3.13"), cookiecutter_traceback=True
    ),
    "unknown-driver": Refusal(
        {"db_driver": "trio"}, ("db_driver", "trio", "async", "sync"), cookiecutter_traceback=True
    ),
    "unknown-target": Refusal(
        {"deployment_target": "nomad"},
        ("deployment_target", "nomad", "docker-compose", "kubernetes", "systemd"),
        cookiecutter_traceback=True,
    ),
    "workers-zero": Refusal({"workers": 0}, ("workers: 0 is not accepted; use a whole number from 1 to 256",)),
    "workers-not-a-number": Refusal({"workers": "many"}, ("workers: many is not accepted; use a whole number",)),
    "workers-fraction": Refusal({"workers": 2.5}, ("workers: 2.5 is not accepted; use a whole number",)),
    "workers-decimal": Refusal({"workers": "2.0"}, ("workers: 2.0 is not accepted; use a whole number",)),
    "workers-exponent": Refusal({"workers": "1e3"}, ("workers: 1e3 is not accepted; use a whole number",)),
    "workers-boolean": Refusal({"workers": "true"}, ("workers: True is not accepted; use a whole number",)),
    # Both tools read numbers as YAML, where 0x10 is 16: accepted as a number, refused by the budget.
    "workers-hexadecimal-is-sixteen": Refusal({"workers": "0x10"}, ("(1 + 1) x 16 x (10 + 0) = 320 connections",)),
    # copier's own bool cast takes any text as true; cookiecutter takes only its yes/no words.
    "pgbouncer-maybe": Refusal({"pgbouncer": "maybe"}, ("pgbouncer", "maybe"), cookiecutter_traceback=True),
    "pgbouncer-two": Refusal({"pgbouncer": "2"}, ("pgbouncer", "2"), cookiecutter_traceback=True),
    "pgbouncer-empty": Refusal({"pgbouncer": ""}, ("pgbouncer",), cookiecutter_traceback=True),
    "driver-wrong-case": Refusal(
        {"db_driver": "ASYNC"}, ("db_driver", "ASYNC", "async", "sync"), cookiecutter_traceback=True
    ),
    "target-wrong-case": Refusal(
        {"deployment_target": "Kubernetes"}, ("deployment_target", "Kubernetes"), cookiecutter_traceback=True
    ),
    "python-as-number": Refusal(
        {"python_version": "3.1"}, ("python_version", "3.1", "3.12"), cookiecutter_traceback=True
    ),
    # cookiecutter renders text given on its command line as Jinja; copier takes it as typed.
    "name-with-template-markers": Refusal(
        {"project_name": "{{ 7*7 }}", "project_slug": "calc"},
        ('project_name: "{{ 7*7 }}" contains "{{", "{%" or "{#", which cookiecutter would render as a template',),
        cookiecutter_traceback=True,
    ),
    "description-with-template-block": Refusal(
        {"description": "{% if true %}yes{% endif %}"},
        ('description: "{% if true %}yes{% endif %}" contains "{{", "{%" or "{#"',),
        cookiecutter_traceback=True,
    ),
    "description-with-tab": Refusal(
        {"description": "one\ttwo"}, ("description: must be one line of text, without newlines, tabs",)
    ),
    "name-with-newline": Refusal(
        {"project_name": "one\ntwo", "project_slug": "one"}, ("project_name: must be one line of text",)
    ),
    "pool-size-zero": Refusal({"pool_size": 0}, ("pool_size: 0 is not accepted; use a whole number from 1 to 1000",)),
    "max-overflow-negative": Refusal(
        {"max_overflow": -1}, ("max_overflow: -1 is not accepted; use a whole number from 0 to 1000",)
    ),
    "pool-timeout-zero": Refusal(
        {"pool_timeout": 0}, ("pool_timeout: 0 is not accepted; use a whole number of seconds",)
    ),
    "max-connections-zero": Refusal({"db_max_connections": 0}, ("db_max_connections: 0 is not accepted",)),
    "reserved-negative": Refusal(
        {"db_reserved_connections": -1},
        ("db_reserved_connections: -1 is not accepted; use a whole number from 0 to 99",),
    ),
    "reserved-equals-max": Refusal(
        {"db_reserved_connections": 100},
        ("db_reserved_connections: 100 must be below db_max_connections (100); use at most 99",),
    ),
    "replicas-zero": Refusal({"replicas": 0}, ("replicas: 0 is not accepted; use a whole number from 1 to 1000",)),
    "max-surge-negative": Refusal({"max_surge": -1}, ("max_surge: -1 is not accepted; use a whole number from 0",)),
    "privileged-port": Refusal(
        {"http_port": 80}, ("http_port: 80 is not accepted; use a whole number from 1024 to 65535",)
    ),
    "graceful-timeout-zero": Refusal({"graceful_timeout": 0}, ("graceful_timeout: 0 is not accepted",)),
    # The service refuses to start when GRACEFUL_TIMEOUT is below REQUEST_TIMEOUT (15 s by default).
    "graceful-timeout-below-request-deadline": Refusal(
        {"graceful_timeout": 14},
        ("graceful_timeout: 14 is not accepted; use a whole number of seconds from 15 to 600",),
    ),
    "budget-exceeded": Refusal(
        {"workers": 4, "pool_size": 20, "max_overflow": 10},
        (
            "connection budget exceeded: (replicas + max_surge) x workers x (pool_size + max_overflow) = "
            "(1 + 1) x 4 x (20 + 10) = 240 connections, "
            "but db_max_connections - db_reserved_connections = 100 - 10 = 90 are available; "
            "the largest pool_size that fits is 1 (with max_overflow 10); the largest worker count that fits is 1",
        ),
    ),
    "budget-no-pool-fits": Refusal(
        {"workers": 50, "pool_size": 1, "max_overflow": 0},
        (
            "no pool_size fits with max_overflow 0 and 50 workers;",
            "the largest worker count that fits is 45",
        ),
    ),
    "budget-rolling-deploy": Refusal(
        {"replicas": 3, "max_surge": 2, "workers": 2},
        (
            "(3 + 2) x 2 x (10 + 0) = 100 connections",
            "the largest pool_size that fits is 9",
            "the largest worker count that fits is 1",
        ),
    ),
    "budget-small-server": Refusal(
        {"db_max_connections": 40, "db_reserved_connections": 3},
        ("= 40 connections", "= 40 - 3 = 37 are available", "the largest pool_size that fits is 9"),
    ),
    "pgbouncer-client-limit-zero": Refusal(
        {"pgbouncer": True, "pgbouncer_max_client_conn": 0},
        ("pgbouncer_max_client_conn: 0 is not accepted; use a whole number from 1 to 100000",),
    ),
    "pgbouncer-client-budget": Refusal(
        {"pgbouncer": True, "workers": 4, "pool_size": 20, "max_overflow": 10, "pgbouncer_max_client_conn": 200},
        (
            "connection budget exceeded at PgBouncer: (replicas + max_surge) x workers x (pool_size + max_overflow) = "
            "(1 + 1) x 4 x (20 + 10) = 240 client connections, but pgbouncer_max_client_conn is 200; "
            "the largest pool_size that fits is 15 (with max_overflow 10); the largest worker count that fits is 3; "
            "or raise pgbouncer_max_client_conn to 240",
        ),
    ),
    "pgbouncer-server-budget": Refusal(
        {"pgbouncer": True, "pgbouncer_pool_size": 95},
        (
            "connection budget exceeded behind PgBouncer: pgbouncer_pool_size = 95 server connections, "
            "but db_max_connections - db_reserved_connections = 100 - 10 = 90 are available; "
            "the largest pgbouncer_pool_size that fits is 90",
        ),
    ),
}

# Edges that must be accepted: the budget exactly full, no overflow, one worker, no reserve.
ACCEPTED: dict[str, dict[str, object]] = {
    "budget-exactly-full": {"replicas": 3, "max_surge": 0, "workers": 3, "pool_size": 5, "max_overflow": 5},
    "no-overflow-one-worker": {"workers": 1, "pool_size": 1, "max_overflow": 0},
    "no-surge": {"replicas": 4, "max_surge": 0},
    "graceful-timeout-equal-to-the-request-deadline": {"graceful_timeout": 15},
    "no-reserve": {"db_max_connections": 40, "db_reserved_connections": 0},
    # Behind PgBouncer the fleet may hold more connections than PostgreSQL allows: 480 > 90 here.
    "pgbouncer-fleet-beyond-postgres": {
        "pgbouncer": True,
        "replicas": 10,
        "max_surge": 2,
        "workers": 4,
        "pgbouncer_max_client_conn": 480,
        "pgbouncer_pool_size": 90,
    },
    # Without PgBouncer, its numbers play no part in the budget.
    "pgbouncer-numbers-unused-without-it": {"pgbouncer": False, "pgbouncer_pool_size": 500},
    # Every yes/no word cookiecutter takes, in any case and with spaces around, copier takes alike.
    **{
        f"pgbouncer-{word.strip()}": {"pgbouncer": word}
        for word in ("yes", "No", " TRUE ", "f", "on", "OFF", "1", "0", "y")
    },
    "workers-with-spaces": {"workers": " 3 "},
    "reserve-one-below-max": {
        "replicas": 1,
        "max_surge": 0,
        "workers": 1,
        "pool_size": 1,
        "max_overflow": 0,
        "db_reserved_connections": 99,
    },
}


def generated_files(workdir: Path) -> list[Path]:
    """What a run left in its folder, less cookiecutter's scratch files in TMPDIR."""
    outputs = [workdir / "project", workdir / "output"]
    return [path for folder in outputs if folder.exists() for path in folder.rglob("*")]


@pytest.mark.parametrize("tool", TOOLS)
@pytest.mark.parametrize("case", REFUSED.values(), ids=REFUSED.keys())
def test_refused_answers_fail_with_a_clear_message_and_leave_nothing(case: Refusal, tool: str, tmp_path: Path) -> None:
    result = run_cli(tool, case.answers, tmp_path / "run")
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    for fragment in case.says:
        assert fragment in output
    assert generated_files(tmp_path / "run") == []
    if tool == "cookiecutter" and not case.cookiecutter_traceback:
        assert "Traceback" not in output, output


# Answers that name the project folder, or leave its name empty: cookiecutter makes that folder
# before its pre_gen_project hook runs, so these are refused before it, even where it exists.
FOLDER_NAMING = [
    "no-project-name",
    "empty-project-name",
    "slug-is-current-folder",
    "slug-is-parent-folder",
    "slug-is-empty",
]


@pytest.mark.parametrize("name", FOLDER_NAMING)
def test_cookiecutter_refuses_a_degenerate_folder_name_in_an_existing_output_folder(name: str, tmp_path: Path) -> None:
    workdir = tmp_path / "run"
    (workdir / "output" / "my_service").mkdir(parents=True)
    (workdir / "output" / "kept.txt").write_text("the user's own file\n")
    case = REFUSED[name]
    result = run_cli("cookiecutter", case.answers, workdir, exist_ok=True)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert len(output.strip().splitlines()) == 1, output
    assert output.startswith(f"ERROR: {case.says[0]}"), output
    assert sorted(path.name for path in (workdir / "output").rglob("*")) == ["kept.txt", "my_service"]


@pytest.mark.parametrize("tool", TOOLS)
@pytest.mark.parametrize("answers", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_edge_answers_are_accepted(answers: dict[str, object], tool: str, tmp_path: Path) -> None:
    result = generate(tool, answers, tmp_path)
    assert result.ok, result.error


# The range rules of PgBouncer's numbers, applied in process (the same Jinja both tools render):
# cheaper than a command line per value.
@pytest.mark.parametrize(
    ("answers", "says"),
    [
        ({"pgbouncer_pool_size": 0}, "pgbouncer_pool_size: 0 is not accepted; use a whole number from 1 to 10000"),
        ({"pgbouncer_pool_size": 10001}, "pgbouncer_pool_size: 10001 is not accepted"),
        ({"pgbouncer_max_client_conn": 100001}, "pgbouncer_max_client_conn: 100001 is not accepted"),
        ({"pgbouncer_max_client_conn": "lots"}, "pgbouncer_max_client_conn: lots is not accepted; use a whole number"),
        ({"pgbouncer_max_client_conn": 2.5}, "pgbouncer_max_client_conn: 2.5 is not accepted; use a whole number"),
    ],
)
def test_pgbouncer_numbers_out_of_range_are_refused(answers: dict[str, object], says: str) -> None:
    config = load_copier_config(REPO)
    with pytest.raises(AnswerRefusedError, match=re.escape(says)):
        validate(config, {**default_answers(), "project_slug": "my_service", "pgbouncer": True, **answers})
