#!/usr/bin/env bash
# Entry point with the env contract of the official `postgres` image:
#   POSTGRES_PASSWORD (required unless POSTGRES_HOST_AUTH_METHOD=trust)
#   POSTGRES_USER (default postgres), POSTGRES_DB (default $POSTGRES_USER)
#   PGDATA (default /var/lib/postgresql/data), POSTGRES_INITDB_ARGS,
#   POSTGRES_HOST_AUTH_METHOD (default scram-sha-256), *_FILE variants of the
#   three POSTGRES_* secrets, scripts in /docker-entrypoint-initdb.d.
# initdb runs only when $PGDATA holds no cluster. Runs as the postgres user.
set -Eeo pipefail

log() { echo "docker-entrypoint: $*"; }
die() { echo "docker-entrypoint: error: $*" >&2; exit 1; }

# VAR_FILE=/path reads VAR from a file (docker secrets), as the official image does.
file_env() {
    local var=$1 def=${2:-} fvar="${1}_FILE" val
    if [ -n "${!var:-}" ] && [ -n "${!fvar:-}" ]; then
        die "both $var and $fvar are set (they are exclusive)"
    fi
    val=$def
    if [ -n "${!var:-}" ]; then
        val=${!var}
    elif [ -n "${!fvar:-}" ]; then
        val=$(<"${!fvar}")
    fi
    export "$var"="$val"
    unset "$fvar"
}

# `docker run IMAGE -c foo=bar` means `postgres -c foo=bar`.
if [ "${1:0:1}" = '-' ]; then
    set -- postgres "$@"
fi

if [ "$1" != 'postgres' ]; then
    exec "$@"
fi

export PGDATA=${PGDATA:-/var/lib/postgresql/data}

if [ "$(id -u)" = 0 ]; then
    # Create/own the data dir and socket dir, then drop to the postgres user.
    mkdir -p "$PGDATA" /var/run/postgresql
    chown postgres:postgres "$PGDATA" /var/run/postgresql
    chmod 700 "$PGDATA" 2>/dev/null || true
    chmod 3777 /var/run/postgresql
    exec setpriv --reuid=postgres --regid=postgres --init-groups -- "${BASH_SOURCE[0]}" "$@"
fi

file_env POSTGRES_PASSWORD
file_env POSTGRES_USER postgres
file_env POSTGRES_DB "$POSTGRES_USER"
file_env POSTGRES_INITDB_ARGS
POSTGRES_HOST_AUTH_METHOD=${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    if [ -z "$POSTGRES_PASSWORD" ] && [ "$POSTGRES_HOST_AUTH_METHOD" != trust ]; then
        cat >&2 <<'EOM'
docker-entrypoint: error: the database is uninitialized and no superuser password is set.
  Pass -e POSTGRES_PASSWORD=... (or POSTGRES_PASSWORD_FILE), or
  -e POSTGRES_HOST_AUTH_METHOD=trust to allow every connection without a password.
EOM
        exit 1
    fi

    log "initializing a new cluster in $PGDATA (user $POSTGRES_USER, database $POSTGRES_DB)"
    pwfile=$(mktemp)
    printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
    # shellcheck disable=SC2086
    initdb --username="$POSTGRES_USER" --pwfile="$pwfile" --auth-local=trust \
        --auth-host="$POSTGRES_HOST_AUTH_METHOD" $POSTGRES_INITDB_ARGS -D "$PGDATA" >/dev/null
    rm -f "$pwfile"

    # Host connections from anywhere, with the chosen method (scram-sha-256 by default).
    printf '\nhost all all all %s\n' "$POSTGRES_HOST_AUTH_METHOD" >>"$PGDATA/pg_hba.conf"

    # Temporary server on the unix socket only: clients on TCP never see it.
    pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -p 5432" -w start >/dev/null

    psql_cmd=(psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --no-password --no-psqlrc)
    if [ "$POSTGRES_DB" != postgres ]; then
        db_exists=$("${psql_cmd[@]}" --dbname postgres -tA \
            -v db="$POSTGRES_DB" <<<"SELECT 1 FROM pg_database WHERE datname = :'db'")
        if [ -z "$db_exists" ]; then
            "${psql_cmd[@]}" --dbname postgres -q -v db="$POSTGRES_DB" \
                <<<'CREATE DATABASE :"db";'
        fi
    fi

    for f in /docker-entrypoint-initdb.d/*; do
        [ -e "$f" ] || continue
        case "$f" in
            *.sh)
                # shellcheck disable=SC1090
                if [ -x "$f" ]; then log "running $f"; "$f"; else log "sourcing $f"; . "$f"; fi ;;
            *.sql) log "running $f"; "${psql_cmd[@]}" --dbname "$POSTGRES_DB" -f "$f" ;;
            *.sql.gz) log "running $f"; gunzip -c "$f" | "${psql_cmd[@]}" --dbname "$POSTGRES_DB" ;;
            *.sql.xz) log "running $f"; xzcat "$f" | "${psql_cmd[@]}" --dbname "$POSTGRES_DB" ;;
            *) log "ignoring $f" ;;
        esac
    done

    pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
    log "initialization complete; starting PostgreSQL"
else
    log "existing cluster in $PGDATA (PG_VERSION $(cat "$PGDATA/PG_VERSION")); skipping initdb"
fi

exec "$@"
