"""Least privilege for the audit table on PostgreSQL: the app's role must not own it.

Triggers stop UPDATE, DELETE and TRUNCATE, but the owner of a table may disable or drop its
triggers. So production uses two roles (ADR 0008):

* the **owner role** runs ``vertebra manage migrate`` and owns every table;
* the **runtime role** (``DATABASE_URL`` of ``vertebra serve`` and ``vertebra worker``) gets
  SELECT/INSERT/UPDATE/DELETE on the other tables and only SELECT and INSERT on
  ``registry_auditevent``, so it can neither change audit rows nor touch the triggers.

:func:`grant_statements` is the SQL the owner runs once (``vertebra audit grants``);
:func:`role_warnings` says when the current connection is more privileged than that.
"""

from __future__ import annotations

import re

from django.db import connection

AUDIT_TABLE = "registry_auditevent"
_ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def grant_statements(runtime_role: str) -> list[str]:
    """The SQL giving ``runtime_role`` what the app needs and no more on the audit table.

    Run it as the owner role, after every migration that adds tables (the default privileges
    cover tables the owner creates later too). Raises ValueError for a role name that is not
    a plain lower-case identifier (it is pasted into SQL).
    """
    if not _ROLE_NAME.match(runtime_role):
        raise ValueError(
            f"{runtime_role!r} is not a plain role name (lower-case letters, digits, _)"
        )
    role = runtime_role
    return [
        f"GRANT USAGE ON SCHEMA public TO {role};",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role};",
        f"GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO {role};",
        f"REVOKE ALL ON {AUDIT_TABLE} FROM {role};",
        f"GRANT SELECT, INSERT ON {AUDIT_TABLE} TO {role};",
        "ALTER DEFAULT PRIVILEGES IN SCHEMA public "
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {role};",
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO {role};",
    ]


def role_warnings() -> list[str]:
    """Why the current database role could rewrite the trail (empty: least privilege holds).

    PostgreSQL only (SQLite has no roles: protect the file). Checks superuser, ownership of
    the audit table, and UPDATE/DELETE/TRUNCATE/TRIGGER privileges on it.
    """
    if connection.vendor != "postgresql":
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT current_user, r.rolsuper, pg_get_userbyid(c.relowner) = current_user, "
            "has_table_privilege(c.oid, 'UPDATE'), has_table_privilege(c.oid, 'DELETE'), "
            "has_table_privilege(c.oid, 'TRUNCATE'), has_table_privilege(c.oid, 'TRIGGER') "
            "FROM pg_class c, pg_roles r WHERE c.relname = %s AND r.rolname = current_user",
            [AUDIT_TABLE],
        )
        row = cursor.fetchone()
    if row is None:
        return []
    user, superuser, owner, *rights = row
    warnings = []
    if superuser:
        warnings.append(f"the database role {user} is a superuser")
    if owner:
        warnings.append(f"the database role {user} owns {AUDIT_TABLE} (it can disable triggers)")
    granted = [
        name
        for name, has in zip(("UPDATE", "DELETE", "TRUNCATE", "TRIGGER"), rights, strict=True)
        if has
    ]
    if granted and not superuser and not owner:
        warnings.append(f"the database role {user} holds {', '.join(granted)} on {AUDIT_TABLE}")
    return warnings
