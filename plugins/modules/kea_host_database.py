#!/usr/bin/python
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: kea_host_database
short_description: Keep Kea's PostgreSQL host database equal to the boot plan's reservations
version_added: 0.12.0
description:
  - Makes the PostgreSQL role and database Kea connects to (peer authentication over the
    local socket, no password), loads Kea's schema (C(dhcpdb_create.pgsql) of C(kea-admin))
    into an empty database, then makes the hw-address reservations equal to O(hosts) in one
    transaction, touching only the rows that differ, and last writes O(digest) to
    O(digest_file) (the health check reads it, since the database serves that plan).
  - Kea reads the database on every packet, so a change is served at its commit, without
    a reload. Rows of other identifier types are left alone.
  - Check mode reads the database and reports what would change; diff mode names the
    hosts removed and added (the first 50 of each).
author:
  - centra.pxe engineers (@centra)
options:
  hosts:
    description:
      - The rows, as the filter M(centra.pxe.kea_host_rows) returns them - text, a header line and then
        one JSON object per line with C(identifier) (the MAC as hex), C(subnet_id) (0 for a global
        reservation), C(ipv4), C(hostname), C(classes), C(options) (C(code), C(space), C(value) as hex).
      - Text, not a list, because Ansible takes about 35 s to template and check a list of 100,000
        mappings as an argument, and about 4 s for one string.
    type: str
    required: true
  digest:
    description: The plan digest these rows come from.
    type: str
    required: true
  digest_file:
    description: Where the digest goes once the rows are committed.
    type: path
    required: true
  schema:
    description: Kea's schema script, loaded when the database has none.
    type: path
    default: /usr/share/kea/scripts/pgsql/dhcpdb_create.pgsql
  password_file:
    description:
      - When other Kea servers read this database over the network (C(pxe_dhcp_kea_host_database_server)),
        the file with the password of Kea's role, a JSON string (Kea's configuration on those servers includes
        the same file). The role's password is set to it when a login over TCP to 127.0.0.1 with it fails.
      - Unset, the role has no password (Kea on this server connects over the local socket).
    type: path
attributes:
  check_mode:
    description: Reads the database and reports the changes; writes nothing.
    support: full
  diff_mode:
    description: The hostnames of the rows removed and added.
    support: full
"""

EXAMPLES = r"""
- name: Write the reservations into Kea's host database
  centra.pxe.kea_host_database:
    hosts: "{{ centra_pxe_plan | centra.pxe.kea_host_rows(centra_pxe_server) }}"
    digest: "{{ (centra_pxe_plan | from_json).digest }}"
    digest_file: /var/lib/centra-pxe/kea-hosts.plan
"""

RETURN = r"""
deleted:
  description: Rows deleted (a changed row counts here and in RV(inserted)).
  returned: always
  type: int
inserted:
  description: Rows inserted.
  returned: always
  type: int
rows:
  description: Rows of the plan.
  returned: always
  type: int
created:
  description: What was missing or different and made (C(role), C(database), C(schema), C(password)).
  returned: always
  type: list
  elements: str
"""

import json
import os
import tempfile

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.centra.pxe.plugins.module_utils._kea_host_db import (
    CURRENT_QUERY,
    KEA_HOST_DATABASE,
    parse_current,
    parse_rows_text,
    plan_changes,
    sync_script,
    wanted_rows,
)

DIFF_NAMES = 50


class Database:
    """psql over the local socket, as the postgres superuser or as Kea's own user."""

    def __init__(self, module):
        self.module = module
        self.runuser = module.get_bin_path("runuser", required=True)
        self.psql = module.get_bin_path("psql")

    def _psql(self, user, database):
        return [self.runuser, "-u", user, "--", self.psql, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                "-h", KEA_HOST_DATABASE["host"], "-d", database]

    def password_works(self, user, database, password):
        """Whether user logs in to database over TCP on 127.0.0.1 with password (scram-sha-256 there:
        Debian's pg_hba.conf), which is how the role's password is compared without reading it."""
        if not self.psql:
            return False
        rc, _out, _err = self.module.run_command(
            [self.psql, "-X", "-q", "-A", "-t", "-h", "127.0.0.1", "-U", user, "-d", database, "-w", "-c", "SELECT 1"],
            environ_update={"PGPASSWORD": password, "PGCONNECT_TIMEOUT": "5"}, cwd="/")
        return rc == 0

    def reachable(self):
        """Whether PostgreSQL answers (in check mode on a fresh host it is not installed, or not started)."""
        if not self.psql:
            return False
        rc, _out, _err = self.module.run_command(self._psql("postgres", "postgres") + ["-c", "SELECT 1"], cwd="/")
        return rc == 0

    def run(self, user, sql=None, script=None, database="postgres", stdin=None):
        """One command (-c), a script file (-f) or a script on standard input, as user; fails the module on an error."""
        args = self._psql(user, database)
        if sql is not None:
            args += ["-c", sql]
        else:
            args += ["-f", script or "-"]
        rc, out, err = self.module.run_command(args, data=stdin, binary_data=True, cwd="/")
        if rc != 0:
            self.module.fail_json(msg="psql as %s on database %s: %s" % (user, database, (err or out).strip()[:2000]))
        return out


def read_file(path):
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read().strip()
    except FileNotFoundError:
        return None


def write_file(path, text):
    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".centra-pxe.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text + "\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read_password(path):
    """The password in path, a JSON string as Kea includes it; ValueError saying what is wrong."""
    try:
        with open(path, encoding="utf-8") as handle:
            password = json.loads(handle.read())
    except FileNotFoundError:
        raise ValueError("password_file %s does not exist" % path) from None
    except ValueError:
        raise ValueError("password_file %s does not hold a JSON string" % path) from None
    if not isinstance(password, str) or len(password) < 16:
        raise ValueError("password_file %s must hold a JSON string of at least 16 characters" % path)
    return password


def names_diff(names):
    shown = names[:DIFF_NAMES]
    more = len(names) - len(shown)
    return "".join(name + "\n" for name in shown) + ("... and %d more\n" % more if more > 0 else "")


def main():
    module = AnsibleModule(
        argument_spec={
            "hosts": {"type": "str", "required": True},
            "digest": {"type": "str", "required": True},
            "digest_file": {"type": "path", "required": True},
            "schema": {"type": "path", "default": "/usr/share/kea/scripts/pgsql/dhcpdb_create.pgsql"},
            "password_file": {"type": "path"},
        },
        supports_check_mode=True,
    )
    params = module.params
    # Bad rows fail here, before anything is made or written.
    try:
        wanted = wanted_rows(parse_rows_text(params["hosts"]))
    except (KeyError, TypeError, ValueError) as exc:
        module.fail_json(msg="kea_host_database: hosts: %s" % exc)
    user, name = KEA_HOST_DATABASE["user"], KEA_HOST_DATABASE["name"]
    if not os.path.isdir(os.path.dirname(params["digest_file"])):
        module.fail_json(msg="digest_file %s: its directory does not exist" % params["digest_file"])
    if not os.path.isfile(params["schema"]):
        module.fail_json(msg="Kea's schema %s is missing (package kea-admin)" % params["schema"])
    password = None
    if params["password_file"] and not (module.check_mode and not os.path.exists(params["password_file"])):
        try:
            password = read_password(params["password_file"])
        except ValueError as exc:
            module.fail_json(msg="kea_host_database: %s" % exc)
    database = Database(module)
    if not database.reachable():
        if not module.check_mode:
            module.fail_json(msg="PostgreSQL does not answer on %s (the role installs and starts it first)"
                             % KEA_HOST_DATABASE["host"])
        # Check mode before the packages are installed: all of it would be made.
        _delete, insert, _removed, added = plan_changes({}, wanted)
        result = {"changed": True, "deleted": 0, "inserted": len(insert), "rows": len(wanted),
                  "created": ["role", "database", "schema"] + (["password"] if params["password_file"] else [])}
        if module._diff:
            result["diff"] = {"before": "", "after": names_diff(added)}
        module.exit_json(**result)
    changes = []
    sql_name = name.replace("'", "''")
    sql_user = user.replace("'", "''")
    role_exists = database.run("postgres", "SELECT 1 FROM pg_roles WHERE rolname = '%s'" % sql_user).strip() == "1"
    database_exists = database.run("postgres", "SELECT 1 FROM pg_database WHERE datname = '%s'" % sql_name).strip() == "1"
    schema_exists = database_exists and database.run(
        "postgres", "SELECT to_regclass('public.schema_version') IS NOT NULL", database=name).strip() == "t"
    if not role_exists:
        changes.append("role")
        if not module.check_mode:
            database.run("postgres", 'CREATE ROLE "%s" LOGIN' % user.replace('"', '""'))
    if not database_exists:
        changes.append("database")
        if not module.check_mode:
            database.run("postgres", 'CREATE DATABASE "%s" OWNER "%s"' % (name.replace('"', '""'), user.replace('"', '""')))
    if not schema_exists:
        changes.append("schema")
        if not module.check_mode:
            database.run(user, script=params["schema"], database=name)
    if params["password_file"] and (password is None or not database.password_works(user, name, password)):
        changes.append("password")
        if not module.check_mode:
            # On standard input, not the command line (which any local user can read).
            database.run("postgres", stdin=("ALTER ROLE \"%s\" PASSWORD '%s';\n"
                                            % (user.replace('"', '""'), password.replace("'", "''"))))
    current = {}
    if schema_exists or not module.check_mode:
        current = parse_current(database.run(user, database=name, stdin=CURRENT_QUERY + ";\n"))
    delete, insert, removed, added = plan_changes(current, wanted)
    if (delete or insert) and not module.check_mode:
        database.run(user, database=name, stdin=sync_script(delete, insert))
    digest_changed = read_file(params["digest_file"]) != params["digest"]
    if digest_changed and not module.check_mode:
        write_file(params["digest_file"], params["digest"])
    result = {"changed": bool(changes or delete or insert or digest_changed), "deleted": len(delete),
              "inserted": len(insert), "rows": len(wanted), "created": changes}
    if module._diff and (removed or added):
        result["diff"] = {"before_header": "hosts (%s)" % name, "after_header": "hosts (%s)" % name,
                          "before": names_diff(removed), "after": names_diff(added)}
    module.exit_json(**result)


if __name__ == "__main__":
    main()
