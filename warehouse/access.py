"""Who is asking, and what their role lets them see.

Roles come from ``$TESSERA_HOME/tessera.toml``::

    [users]
    alice = "analyst"
    bob = "auditor"
    root = "admin"

The current user is ``--user`` (CLI) / ``user=`` (API), else ``$TESSERA_USER``, else
the OS user. A user the file does not name gets the **analyst** role (least
privilege: masked identifiers, active list entries only), so a fresh home works
without configuration and nobody sees more than an analyst unless the file says
so. A role the file names that is not one of :data:`ROLES` is refused
(:class:`AccessError`): a typo must not grant or silently drop rights.

What each role may do (:data:`PERMISSIONS`):

- ``analyst``: search, read entity files, masked; list entries only while active;
- ``auditor``: as analyst, plus read the audit log and export a subject-access file;
- ``admin``: everything, unmasked: full identifiers, expired lists, corrections and
  the analyst export.
"""

from __future__ import annotations

import getpass
import os
import tomllib
from dataclasses import dataclass
from typing import Any

from tessera.config import Home

ROLES = ("analyst", "auditor", "admin")
DEFAULT_ROLE = "analyst"
PERMISSIONS: dict[str, frozenset[str]] = {
    "analyst": frozenset({"search", "file"}),
    "auditor": frozenset({"search", "file", "audit", "subject_access"}),
    "admin": frozenset(
        {"search", "file", "audit", "subject_access", "export", "correct", "unmasked"}
    ),
}


class AccessError(PermissionError):
    """A role that does not allow the action, or a configuration that names an unknown role."""


def config_path(home: Home) -> Any:
    return home.root / "tessera.toml"


def users(home: Home) -> dict[str, str]:
    """``[users]`` of ``tessera.toml``: user name → role (empty when there is no file)."""
    path = config_path(home)
    if not path.exists():
        return {}
    with path.open("rb") as fh:
        table = tomllib.load(fh).get("users", {})
    bad = {u: r for u, r in table.items() if r not in ROLES}
    if bad:
        raise AccessError(f"{path}: unknown role(s) {bad}; roles are {', '.join(ROLES)}")
    return {str(u): str(r) for u, r in table.items()}


def current_user(user: str | None = None) -> str:
    """``user`` if given, else ``$TESSERA_USER``, else the OS user."""
    return user or os.environ.get("TESSERA_USER") or getpass.getuser()


@dataclass(frozen=True)
class Principal:
    """A user and their role."""

    user: str
    role: str

    @property
    def masked(self) -> bool:
        """Identifiers masked and expired list entries hidden (every role but admin)."""
        return not self.may("unmasked")

    def may(self, action: str) -> bool:
        return action in PERMISSIONS[self.role]

    def require(self, action: str) -> None:
        if not self.may(action):
            raise AccessError(f"user {self.user!r} (role {self.role}) may not {action}")


def principal(home: Home, user: str | None = None) -> Principal:
    """The current user and their role from ``tessera.toml`` (default :data:`DEFAULT_ROLE`)."""
    name = current_user(user)
    return Principal(name, users(home).get(name, DEFAULT_ROLE))
