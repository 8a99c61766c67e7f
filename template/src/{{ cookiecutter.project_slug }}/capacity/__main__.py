"""`python -m {{ cookiecutter.project_slug }}.capacity`: print the capacity plan and say whether it fits.

The plan is built from exactly the settings the service would use: the environment over the
defaults. It needs no DATABASE_URL. With --check-server it also reads what the PostgreSQL
server in DATABASE_URL really allows and checks the plan against that.

Exit status: 0 the plan fits; 1 it does not (the numbers are on stderr); 2 a setting or an
argument is bad (one line names it); 3 the server could not be checked (one line names the
server and why).
"""

from __future__ import annotations

import argparse
import sys

from ..db import query_server
from ..settings import (
    BAD_SETTINGS,
    PLAN_DOES_NOT_FIT,
    PlanSettings,
    Settings,
    SettingsError,
    load_settings,
)
from . import (
    ServerNotCheckedError,
    format_table,
    read_server_limits,
    server_notes,
    server_problems,
    wording,
)

SERVER_NOT_CHECKED = 3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m {{ cookiecutter.project_slug }}.capacity",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--check-server",
        action="store_true",
        help="also check the plan against the limits of the server in DATABASE_URL",
    )
    arguments = parser.parse_args(argv)  # exits 2 on a bad argument, as BAD_SETTINGS

    try:
        settings = load_settings(Settings if arguments.check_server else PlanSettings)
    except SettingsError as error:
        print(error, file=sys.stderr)
        return BAD_SETTINGS
    plan = settings.capacity_plan()
    print(format_table(plan))
    problems = settings.plan_problems()
    if isinstance(settings, Settings) and not problems:
        try:
            server = read_server_limits(settings, query_server)
        except ServerNotCheckedError as error:
            print(error, file=sys.stderr)
            return SERVER_NOT_CHECKED
        print("\n" + server.describe(settings.safe_database_url))
        problems = server_problems(plan, server)
        for note in server_notes(plan, server):
            print(note)
    if problems:
        print("\nThe plan does not fit:", *problems, sep="\n  ", file=sys.stderr)
        return PLAN_DOES_NOT_FIT
    print("\n" + wording.plan_fits(plan))
    return 0


# `python -m <package>.capacity` runs this file as __main__, after importing the package: the
# package's own modules never import it, so every module runs once.
if __name__ == "__main__":
    raise SystemExit(main())
