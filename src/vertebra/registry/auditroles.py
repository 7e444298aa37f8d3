"""Least privilege for the audit table on PostgreSQL: the app's role must not own it.

Triggers stop UPDATE, DELETE and TRUNCATE, but the owner of a table may disable or drop its
triggers. So production uses two roles (ADR 0008):

* the **owner role** runs ``vertebra manage migrate`` and owns every table;
* the **runtime role** (``DATABASE_URL`` of ``vertebra serve`` and ``vertebra worker``) gets
  SELECT/INSERT/UPDATE/DELETE on the other tables and only SELECT and INSERT on the audit
  trail and its seal chain (``registry_auditevent``, ``registry_auditseal``, ADR 0021), so it
  can neither change audit rows or seals nor touch the triggers.

:func:`grant_statements` is the SQL the owner runs once (``vertebra audit grants``);
:func:`role_warnings` says when the current connection is more privileged than that.
"""

from __future__ import annotations

import re

from django.db import connection

AUDIT_TABLE = "registry_auditevent"
SEAL_TABLE = "registry_auditseal"
#: The append-only tables: the runtime role may only read and insert.
AUDIT_TABLES = (AUDIT_TABLE, SEAL_TABLE)
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
        *(f"REVOKE ALL ON {table} FROM {role};" for table in AUDIT_TABLES),
        *(f"GRANT SELECT, INSERT ON {table} TO {role};" for table in AUDIT_TABLES),
        "ALTER DEFAULT PRIVILEGES IN SCHEMA public "
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {role};",
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO {role};",
    ]


def role_warnings() -> list[str]:
    """Why the current database role could rewrite the trail (empty: least privilege holds).

    PostgreSQL only (SQLite has no roles: protect the file). Checks superuser, ownership of
    the audit tables, and UPDATE/DELETE/TRUNCATE/TRIGGER privileges on them.
    """
    if connection.vendor != "postgresql":
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, current_user, r.rolsuper, "
            "pg_get_userbyid(c.relowner) = current_user, "
            "has_table_privilege(c.oid, 'UPDATE'), has_table_privilege(c.oid, 'DELETE'), "
            "has_table_privilege(c.oid, 'TRUNCATE'), has_table_privilege(c.oid, 'TRIGGER') "
            "FROM pg_class c, pg_roles r WHERE c.relname = ANY(%s) AND c.relkind = 'r' "
            "AND r.rolname = current_user ORDER BY c.relname",
            [list(AUDIT_TABLES)],
        )
        rows = cursor.fetchall()
    warnings = []
    for table, user, superuser, owner, *rights in rows:
        if superuser:
            warning = f"the database role {user} is a superuser"
            if warning not in warnings:
                warnings.append(warning)
            continue
        if owner:
            warnings.append(f"the database role {user} owns {table} (it can disable triggers)")
            continue
        granted = [
            name
            for name, has in zip(("UPDATE", "DELETE", "TRUNCATE", "TRIGGER"), rights, strict=True)
            if has
        ]
        if granted:
            warnings.append(f"the database role {user} holds {', '.join(granted)} on {table}")
    return warnings
