"""The capacity plan's two implementations agree: the capacity package at run time, hooks/plan.jinja at generation.

The capacity package (template/src/<slug>/capacity/) is plain Python in the
template tree, so it is imported from there and tested without generating a
project. hooks/plan.jinja's macros give copier.yml's rules and message, the
README and the deployment files their numbers: they are rendered here for
random answers and compared with the package's, and the rules in copier.yml
are evaluated the way the cookiecutter hook evaluates them.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from jinja2 import FileSystemLoader, StrictUndefined, nodes
from jinja2.sandbox import SandboxedEnvironment

from hooks.copier_rules import AnswerRefusedError, load_copier_config, validate
from tests.support.answers import REPO, TOOLS, default_answers
from tests.support.cli import run_cli
from tests.support.generation import capacity_package, generate, plan_inputs

capacity = capacity_package()
COPIER_CONFIG = load_copier_config(REPO)

BASE = capacity.PlanInputs(
    driver="sync",
    replicas=1,
    max_surge=1,
    workers=2,
    pool_size=5,
    max_overflow=5,
    db_max_connections=100,
    db_reserved_connections=10,
    queue_budget_ms=500,
    admission_queue=None,
    spare_threads=8,
    pgbouncer=False,
    pgbouncer_max_client_conn=100,
    pgbouncer_pool_size=20,
)


ONE_CONNECTION = {"workers": 1, "max_surge": 0, "pool_size": 1, "max_overflow": 0}
LARGE_FLEET = {"replicas": 500, "max_surge": 100}


def plan(**changes: Any) -> Any:
    return capacity.CapacityPlan(replace(BASE, **changes))


@pytest.mark.parametrize(
    ("changes", "peak", "fits"),
    [
        pytest.param({}, 40, True, id="defaults"),
        pytest.param({"max_overflow": 0}, 20, True, id="no-overflow"),
        pytest.param({"max_surge": 0}, 20, True, id="no-surge"),
        pytest.param(
            {"workers": 1, "max_surge": 0, "pool_size": 1, "max_overflow": 0, "db_reserved_connections": 99},
            1,
            True,
            id="reserved-one-below-max",
        ),
        pytest.param(
            {"workers": 1, "max_surge": 0, "pool_size": 2, "max_overflow": 0, "db_reserved_connections": 99},
            2,
            False,
            id="reserved-one-below-max-over",
        ),
        pytest.param({"replicas": 3, "max_surge": 0, "workers": 3}, 90, True, id="exactly-full"),
        pytest.param({"replicas": 3, "max_surge": 1, "workers": 3}, 120, False, id="surge-breaks-it"),
        pytest.param(
            {
                "replicas": 500,
                "max_surge": 100,
                "workers": 64,
                "pool_size": 20,
                "max_overflow": 10,
                "db_max_connections": 262143,
            },
            600 * 64 * 30,
            False,
            id="very-large-fleet",
        ),
        pytest.param(
            {
                "replicas": 100,
                "max_surge": 10,
                "workers": 8,
                "pool_size": 2,
                "max_overflow": 0,
                "db_max_connections": 5000,
            },
            1760,
            True,
            id="large-fleet-small-pools",
        ),
    ],
)
def test_peak_connections_and_whether_they_fit(changes: dict[str, int], peak: int, fits: bool) -> None:
    result = plan(**changes)
    assert result.peak_connections == peak
    assert result.fits is fits
    assert (result.headroom >= 0) is fits


def test_a_plan_that_does_not_fit_says_what_would() -> None:
    result = plan(workers=4, pool_size=20, max_overflow=10)
    assert result.problems() == [
        "connection budget exceeded: (replicas + max_surge) x workers x (pool_size + max_overflow) = "
        "(1 + 1) x 4 x (20 + 10) = 240 connections, but db_max_connections - db_reserved_connections = "
        "100 - 10 = 90 are available; the largest pool_size that fits is 1 (with max_overflow 10); "
        "the largest worker count that fits is 1"
    ]
    assert plan(workers=4, pool_size=1, max_overflow=10).fits
    assert plan(workers=1, pool_size=20, max_overflow=10).fits


def test_the_largest_suggestions_are_the_largest_that_fit() -> None:
    crowded = plan(replicas=3, max_surge=2, workers=4, pool_size=9, max_overflow=3)
    assert not crowded.fits
    assert plan(replicas=3, max_surge=2, workers=4, pool_size=crowded.largest_pool_size, max_overflow=3).fits is (
        crowded.largest_pool_size >= 1
    )
    assert not plan(replicas=3, max_surge=2, workers=4, pool_size=crowded.largest_pool_size + 1, max_overflow=3).fits
    assert plan(replicas=3, max_surge=2, workers=crowded.largest_workers, pool_size=9, max_overflow=3).fits
    assert not plan(replicas=3, max_surge=2, workers=crowded.largest_workers + 1, pool_size=9, max_overflow=3).fits


def test_admission_is_the_connections_plus_a_queue_capped_per_connection() -> None:
    assert plan().admission_limit == 10 + 10 * capacity.QUEUE_PER_CONNECTION  # pool 5 + overflow 5
    assert plan(pool_size=1, max_overflow=0).admission_limit == 1 + capacity.QUEUE_PER_CONNECTION
    assert plan(admission_queue=0).admission_limit == 10
    assert plan(queue_budget_ms=40).queue_budget == 0.04


def test_sync_threads_cover_the_connections_plus_spare_ones() -> None:
    sync = plan(driver="sync", spare_threads=4)
    assert sync.thread_limit == sync.connections_per_worker + 4
    assert plan(driver="async").thread_limit == capacity.ANYIO_DEFAULT_THREADS


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        pytest.param({"workers": 0}, "workers: 0 must be at least 1", id="no-workers"),
        pytest.param({"max_overflow": -1}, "max_overflow: -1 must not be negative", id="negative-overflow"),
        pytest.param(
            {"db_reserved_connections": 100}, "db_reserved_connections: 100 must be from 0 to 99", id="reserved-all"
        ),
        pytest.param({"admission_queue": -1}, "admission_queue: -1 must not be negative", id="negative-queue"),
        pytest.param({"spare_threads": 0}, "spare_threads: 0 must be at least 1", id="no-spare-threads"),
    ],
)
def test_impossible_inputs_are_named(changes: dict[str, int], says: str) -> None:
    assert says in plan(**changes).problems()


def test_behind_pgbouncer_the_fleet_meets_max_client_conn_and_postgres_meets_the_server_pool() -> None:
    # 12 instances x 4 workers x 10 = 480 connections: far past PostgreSQL's 90, within PgBouncer's 500.
    fleet = {"replicas": 10, "max_surge": 2, "workers": 4, "pgbouncer": True}
    behind = plan(**fleet, pgbouncer_max_client_conn=500, pgbouncer_pool_size=30)
    assert (behind.peak_connections, behind.client_limit, behind.headroom) == (480, 500, 20)
    assert (behind.server_connections, behind.available_connections, behind.server_headroom) == (30, 90, 60)
    assert behind.fits
    assert not plan(**{**fleet, "pgbouncer": False}).fits, "the same fleet without PgBouncer does not fit"

    too_many_clients = plan(**fleet, pgbouncer_max_client_conn=479, pgbouncer_pool_size=30)
    assert too_many_clients.problems() == [
        "connection budget exceeded at PgBouncer: (replicas + max_surge) x workers x (pool_size + max_overflow) = "
        "(10 + 2) x 4 x (5 + 5) = 480 client connections, but pgbouncer_max_client_conn is 479; "
        "the largest pool_size that fits is 4 (with max_overflow 5); the largest worker count that fits is 3; "
        "or raise pgbouncer_max_client_conn to 480"
    ]
    too_many_servers = plan(**fleet, pgbouncer_max_client_conn=500, pgbouncer_pool_size=91)
    assert too_many_servers.problems() == [
        "connection budget exceeded behind PgBouncer: pgbouncer_pool_size = 91 server connections, "
        "but db_max_connections - db_reserved_connections = 100 - 10 = 90 are available; "
        "the largest pgbouncer_pool_size that fits is 90"
    ]
    both = plan(**fleet, pgbouncer_max_client_conn=479, pgbouncer_pool_size=91).problems()
    assert [problem.split(":")[0] for problem in both] == [
        "connection budget exceeded at PgBouncer",
        "connection budget exceeded behind PgBouncer",
    ], "in the order generation asks: the service's side first"


def test_behind_pgbouncer_the_server_check_counts_the_server_pool() -> None:
    server = capacity.ServerLimits(
        max_connections=40, superuser_reserved_connections=3, reserved_connections=0, connections_in_use=30
    )
    behind = plan(
        replicas=10,
        workers=4,
        db_max_connections=40,
        db_reserved_connections=3,
        pgbouncer=True,
        pgbouncer_max_client_conn=1000,
        pgbouncer_pool_size=30,
    )
    assert capacity.server_problems(behind, server) == []
    assert capacity.server_notes(behind, server) == [
        "note: 30 connections are in use on the server now, leaving 7; PgBouncer's server pool of 30 connections"
        " needs them released first"
    ]
    too_big = replace(behind.inputs, pgbouncer_pool_size=38)
    assert capacity.server_problems(capacity.CapacityPlan(too_big), server) == [
        "PgBouncer's server pool of 38 connections exceeds the 37 the server opens to ordinary roles"
        " (max_connections 40 - superuser_reserved_connections 3 - reserved_connections 0)"
    ]


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        pytest.param({"pgbouncer_max_client_conn": 0}, "pgbouncer_max_client_conn: 0 must be at least 1", id="clients"),
        pytest.param({"pgbouncer_pool_size": 0}, "pgbouncer_pool_size: 0 must be at least 1", id="servers"),
    ],
)
def test_impossible_pgbouncer_numbers_are_named_only_with_pgbouncer(changes: dict[str, int], says: str) -> None:
    assert says in plan(pgbouncer=True, **changes).problems()
    assert plan(pgbouncer=False, **changes).fits


def test_the_table_shows_both_sides_of_pgbouncer() -> None:
    rows = {quantity: value for quantity, value, _ in capacity.rows(plan(pgbouncer=True, pgbouncer_pool_size=12))}
    assert rows["pgbouncer client limit"] == "100"
    assert rows["headroom at peak"] == str(100 - 40)
    assert rows["pgbouncer server connections"] == "12"
    assert rows["server headroom"] == str(90 - 12)
    assert "pgbouncer client limit" not in {quantity for quantity, _, _ in capacity.rows(plan())}


def test_the_table_shows_every_number() -> None:
    table = capacity.format_table(plan())
    for quantity, value, _ in capacity.rows(plan()):
        assert f"| {quantity}" in table
        assert f" {value} " in table


# The generation rule and the plan, given the same random inputs, accept and refuse alike, with
# PgBouncer and without.
budget_inputs = st.fixed_dictionaries(
    {
        "replicas": st.integers(1, 40),
        "max_surge": st.integers(0, 10),
        "workers": st.integers(1, 32),
        "pool_size": st.integers(1, 60),
        "max_overflow": st.integers(0, 60),
        "db_max_connections": st.integers(1, 3000),
        "db_reserved_connections": st.integers(0, 3000),
        "pgbouncer": st.booleans(),
        "pgbouncer_max_client_conn": st.integers(1, 20000),
        "pgbouncer_pool_size": st.integers(1, 3000),
    }
)


@settings(max_examples=400, deadline=None)
@given(numbers=budget_inputs)
def test_generation_rule_and_capacity_plan_agree(numbers: dict[str, Any]) -> None:
    answers = {**default_answers(), "project_slug": "my_service", **numbers}
    try:
        validate(COPIER_CONFIG, answers)
        generation_refusal = None
    except AnswerRefusedError as refusal:
        generation_refusal = str(refusal)
    problems = capacity.CapacityPlan(plan_inputs({"db_driver": "async", **numbers})).problems()
    assert (generation_refusal is None) == (problems == [])
    if generation_refusal and generation_refusal.startswith("connection budget exceeded"):
        # Generation stops at the first rule broken, in question order; the plan lists them in it.
        assert problems[0] == generation_refusal


@pytest.mark.parametrize(
    "numbers",
    [
        pytest.param({"pgbouncer": True, "pgbouncer_max_client_conn": 30}, id="pgbouncer-clients"),
        pytest.param(
            {"pgbouncer": True, "replicas": 30, "max_surge": 10, "pool_size": 10, "pgbouncer_max_client_conn": 50},
            id="pgbouncer-clients-nothing-fits",
        ),
        pytest.param({"pgbouncer": True, "pgbouncer_pool_size": 91}, id="pgbouncer-servers"),
        pytest.param({"pgbouncer": False, "workers": 50, "pool_size": 1, "max_overflow": 0}, id="direct-no-pool-fits"),
    ],
)
def test_generation_rule_and_capacity_plan_say_the_same_words(numbers: dict[str, Any]) -> None:
    """The branches of each message, chosen rather than found at random."""
    answers = {**default_answers(), "project_slug": "my_service", **numbers}
    with pytest.raises(AnswerRefusedError) as refusal:
        validate(COPIER_CONFIG, answers)
    problems = capacity.CapacityPlan(plan_inputs(answers)).problems()
    assert problems[0] == str(refusal.value)


# The generation-time plan: hooks/plan.jinja's macros, rendered as both tools render them (a
# sandbox whose loader starts at the repository's root).
PLAN_ENVIRONMENT = SandboxedEnvironment(loader=FileSystemLoader(REPO), undefined=StrictUndefined)
# The macros that mirror a CapacityPlan property, by the property's name.
PLAN_NUMBERS = (
    "connections_per_worker",
    "connections_per_instance",
    "instances_at_peak",
    "steady_connections",
    "peak_connections",
    "available_connections",
    "client_limit",
    "headroom",
    "server_connections",
    "server_headroom",
    "largest_pool_size",
    "largest_workers",
    "admission_queue",
    "admission_limit",
    "thread_limit",
)


def render_plan(expressions: list[str], answers: dict[str, Any]) -> list[str]:
    """Each expression over the imported macros (`plan`) and the answers (`a`), rendered."""
    source = '{%- import "hooks/plan.jinja" as plan -%}\n' + "\n".join(f"{{{{ {e} }}}}" for e in expressions)
    return PLAN_ENVIRONMENT.from_string(source).render(a=answers).split("\n")


def as_cookiecutter_gives_them(answers: dict[str, Any]) -> dict[str, Any]:
    """cookiecutter's answers: numbers as strings, booleans as booleans."""
    return {key: value if isinstance(value, bool) else str(value) for key, value in answers.items()}


@settings(max_examples=300, deadline=None)
@given(numbers=budget_inputs, driver=st.sampled_from(["async", "sync"]), as_strings=st.booleans())
def test_the_generation_time_plan_is_the_run_time_plan(numbers: dict[str, Any], driver: str, as_strings: bool) -> None:
    """As copier gives the answers (numbers) and as cookiecutter does (strings)."""
    answers = {**numbers, "db_driver": driver}
    given_answers = as_cookiecutter_gives_them(answers) if as_strings else answers
    rendered = render_plan([f"plan.{name}(a)" for name in PLAN_NUMBERS], given_answers)
    expected = capacity.CapacityPlan(plan_inputs(answers))
    assert dict(zip(PLAN_NUMBERS, map(int, rendered), strict=True)) == {
        name: getattr(expected, name) for name in PLAN_NUMBERS
    }


def test_the_generation_time_constants_are_the_run_time_defaults() -> None:
    """The spare threads, the queue budget and per-connection cap, and AnyIO's pool, which the
    README also names in its prose."""
    names = ["spare_threads", "queue_budget_ms", "queue_per_connection", "anyio_default_threads"]
    rendered = render_plan([f"plan.{name}()" for name in names], {})
    assert rendered == [
        str(capacity.DEFAULT_SPARE_THREADS),
        str(capacity.DEFAULT_QUEUE_BUDGET_MS),
        str(capacity.QUEUE_PER_CONNECTION),
        str(capacity.ANYIO_DEFAULT_THREADS),
    ]


ARITHMETIC = (nodes.Add, nodes.Sub, nodes.Mul, nodes.Div, nodes.FloorDiv, nodes.Mod, nodes.Pow)


def arithmetic_in(source: str) -> list[str]:
    """The arithmetic a Jinja source does itself, as the expressions it writes."""
    tree = PLAN_ENVIRONMENT.parse(source)
    return [str(node) for kind in ARITHMETIC for node in tree.find_all(kind)]


def test_generated_files_and_the_message_take_every_derived_number_from_the_plan() -> None:
    """No second copy of the arithmetic: a template file that computes a number itself (a peak,
    a stop timeout, a name) would drift from the plan when the formula changes."""
    template_files = [path for path in (REPO / "template").rglob("*") if path.is_file()]
    computing = {
        str(path.relative_to(REPO)): found for path in template_files if (found := arithmetic_in(path.read_text()))
    }
    message = yaml.safe_load((REPO / "copier.yml").read_text().split("\n--- ")[0])["_message_after_copy"]
    assert computing == {}
    assert arithmetic_in(message) == []


@pytest.mark.parametrize(
    ("slug", "name"),
    [
        pytest.param("my_service", "my-service", id="underscores"),
        pytest.param("odd__slug_", "odd--slug", id="trailing-underscore"),
        pytest.param("api2", "api2", id="plain"),
    ],
)
def test_kubernetes_names_are_dns_labels(slug: str, name: str) -> None:
    assert render_plan(["plan.kubernetes_name(a)"], {"project_slug": slug}) == [name]


# The plan as users see it: the generated docs/capacity.md's table and the summary after generation.
SHOWN_PLANS = {
    "defaults-async": {"db_driver": "async"},
    "defaults-sync": {"db_driver": "sync"},
    "fleet-sync": {"db_driver": "sync", "replicas": 4, "max_surge": 2, "workers": 3, "pool_size": 2, "max_overflow": 1},
    "odd-pool-async": {"db_driver": "async", "pool_size": 7, "max_overflow": 0, "db_max_connections": 500},
    # 12 x 4 x 10 = 480 client connections, more than PostgreSQL's 90: PgBouncer's 30 carry them.
    "pgbouncer-fleet-sync": {
        "db_driver": "sync",
        "pgbouncer": True,
        "replicas": 10,
        "max_surge": 2,
        "workers": 4,
        "pgbouncer_pool_size": 30,
    },
}


@pytest.mark.parametrize("answers", SHOWN_PLANS.values(), ids=SHOWN_PLANS.keys())
def test_the_generated_capacity_page_shows_the_run_time_plan(answers: dict[str, Any], tmp_path: Path) -> None:
    generated = generate("copier", answers, tmp_path)
    assert generated.project is not None, generated.error
    page = (generated.project / "docs" / "capacity.md").read_text()  # linked from README.md
    for quantity, value, derivation in capacity.rows(capacity.CapacityPlan(plan_inputs(answers))):
        assert f"| {quantity} | {value} | {derivation} |" in page


@pytest.mark.parametrize("tool", TOOLS)
@pytest.mark.parametrize("answers", SHOWN_PLANS.values(), ids=SHOWN_PLANS.keys())
def test_both_tools_summarise_the_plan_after_generation(answers: dict[str, Any], tool: str, tmp_path: Path) -> None:
    result = run_cli(tool, answers, tmp_path / "run")
    assert result.returncode == 0, result.stderr
    plan = capacity.CapacityPlan(plan_inputs(answers))
    shown = result.stdout + result.stderr
    if plan.inputs.pgbouncer:
        assert (
            f"= {plan.peak_connections} connections at peak to PgBouncer, of the {plan.client_limit} it accepts"
            f" (max_client_conn): {plan.headroom} to spare."
        ) in shown
        assert (
            f"PgBouncer runs their transactions over {plan.server_connections} server connections,"
            f" of {plan.available_connections} available"
        ) in shown
        assert f"{plan.server_headroom} to spare." in shown
    else:
        assert f"= {plan.peak_connections} connections at peak, of {plan.available_connections} available" in shown
        assert f"{plan.headroom} to spare" in shown
    assert (
        f"Each worker serves database requests on {plan.connections_per_worker} connections, queues one only"
        f" while it can expect a connection within {plan.inputs.queue_budget_ms} ms"
        f" (at most {plan.admission_queue} queued) and answers 503 beyond that"
    ) in shown
    assert (f"it runs {plan.thread_limit} threads" in shown) is (answers["db_driver"] == "sync")
