#!/bin/sh
# One-shot, before the Temporal server starts: create Temporal's two databases on the shared
# Postgres and bring their schemas to the version this admin-tools image ships. temporalio/server
# (unlike the deprecated auto-setup image) does none of this itself.
#
# Every step may run again on an existing volume: `create` of a database that exists fails and is
# let pass (a real connection problem fails the next step loudly), `setup-schema -v 0.0` leaves a
# newer version alone, and `update-schema` applies only the versions not yet applied.
set -eu

: "${POSTGRES_SEEDS:?}" "${DB_PORT:?}" "${POSTGRES_USER:?}" "${SQL_PASSWORD:?}"
DBNAME="${DBNAME:-temporal}"
VISIBILITY_DBNAME="${VISIBILITY_DBNAME:-temporal_visibility}"
SCHEMA_ROOT=/etc/temporal/schema/postgresql/v12

sql_tool() {
    temporal-sql-tool --plugin postgres12 --ep "$POSTGRES_SEEDS" -p "$DB_PORT" -u "$POSTGRES_USER" "$@"
}

setup() {
    db="$1"
    versioned="$2"
    echo "temporal schema: database $db"
    sql_tool --db "$db" create || echo "database $db exists already"
    sql_tool --db "$db" setup-schema -v 0.0
    sql_tool --db "$db" update-schema -d "$SCHEMA_ROOT/$versioned/versioned"
}

setup "$DBNAME" temporal
setup "$VISIBILITY_DBNAME" visibility
echo "temporal schema: up to date"
