#!/bin/sh
# Runs once, when the Postgres volume is first initialised (docker-entrypoint-initdb.d).
# The application's own login: not a superuser, owns nothing, may create nothing. The migrations
# (run as the owner, POSTGRES_USER) grant it what it needs: SELECT and INSERT on the event log,
# never UPDATE, DELETE or TRUNCATE. Both Earpiece logins must use TLS (pg_hba below).
set -e

psql -v ON_ERROR_STOP=1 -v app_password="$EARPIECE_APP_DB_PASSWORD" \
    --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<'SQL'
CREATE ROLE earpiece_app LOGIN PASSWORD :'app_password'
    NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS;
SQL

# First match wins: Earpiece's logins over the network only with TLS; the rest as the image sets.
hba="$PGDATA/pg_hba.conf"
{
    echo "hostssl $POSTGRES_DB $POSTGRES_USER,earpiece_app all scram-sha-256"
    echo "host    $POSTGRES_DB $POSTGRES_USER,earpiece_app all reject"
    cat "$hba"
} > "$hba.new"
mv "$hba.new" "$hba"
