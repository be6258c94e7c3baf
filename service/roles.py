"""The role table of the README, made from the routes themselves so the two cannot drift:
`python -m service.roles` prints it; tests/test_roles_table.py checks the README has it."""

from __future__ import annotations

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from service.keys import ROLES

BEGIN, END = "<!-- roles:begin (python -m service.roles) -->", "<!-- roles:end -->"


def _roles_of(dependant: Dependant) -> tuple[str, ...] | None:
    for dependency in dependant.dependencies:
        roles = getattr(dependency.call, "roles", None)
        if roles is not None:
            return tuple(roles)
        found = _roles_of(dependency)
        if found is not None:
            return found
    return None


def role_table() -> str:
    """A Markdown table: which role's key may call each endpoint of the service."""
    from service.app import API_ROUTERS

    lines = [BEGIN, "| Endpoint | " + " | ".join(ROLES) + " |", "|---|" + "---|" * len(ROLES)]
    routes = [r for module in API_ROUTERS for r in module.router.routes]
    for route in routes:
        if not isinstance(route, APIRoute):
            continue
        roles = _roles_of(route.dependant)
        cells = ["no key" if roles is None else ("yes" if role in roles else "") for role in ROLES]
        for method in sorted(route.methods - {"HEAD"}):
            lines.append(f"| `{method} {route.path}` | " + " | ".join(cells) + " |")
    lines.append(END)
    return "\n".join(lines)


if __name__ == "__main__":
    print(role_table())
