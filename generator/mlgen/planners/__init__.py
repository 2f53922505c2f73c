"""A *planner* answers the template's questions for a brief and its data: it returns a Plan.

Every planner satisfies :class:`Planner`. The heuristic planner works offline; others (an LLM
planner) plug in through :func:`get_planner`. Whatever a planner returns is checked against the
data by :func:`mlgen.plan.Plan.check_columns` before anything is rendered.
"""

from __future__ import annotations

from typing import Protocol

from mlgen.brief import Brief
from mlgen.plan import Plan
from mlgen.profile import Profile


class Planner(Protocol):
    """Turns a brief and the profile of its data into a Plan."""

    name: str

    def plan(self, brief: Brief, profile: Profile) -> Plan: ...


def get_planner(name: str = "heuristic") -> Planner:
    """The planner called ``name``."""
    from mlgen.planners.heuristic import HeuristicPlanner

    planners = {"heuristic": HeuristicPlanner}
    if name not in planners:
        from mlgen.errors import PlanError

        raise PlanError(f'Unknown planner "{name}": choose one of {", ".join(planners)}.')
    return planners[name]()
