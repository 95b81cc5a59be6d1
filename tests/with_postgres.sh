#!/usr/bin/env bash
# Run a command against a throwaway PostgreSQL server: `tests/with_postgres.sh pytest ...`.
#
# The server lives in a fresh temporary directory, listens only on a unix socket inside it (no port
# to collide with, nothing reachable from the network), runs with durability off because its data
# is disposable, and is stopped and deleted when the command ends, whatever its outcome.
# The command sees TEST_DATABASE_URL; tests/conftest.py makes one database per xdist worker there.
# PostgreSQL refuses to run as root, so as root the server runs as PG_USER (default: postgres, or
# nobody when that account does not exist).
set -euo pipefail

if [ "$#" -eq 0 ]; then
    echo "usage: $0 COMMAND [ARGS...]" >&2
    exit 2
fi

find_pg_bin() {
    if [ -n "${PG_BIN:-}" ]; then
        echo "$PG_BIN"
        return
    fi
    if command -v initdb >/dev/null && command -v pg_ctl >/dev/null; then
        dirname "$(command -v initdb)"
        return
    fi
    # Debian keeps the server binaries off PATH, one directory per major version.
    local dir
    for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then
            echo "$dir"
            return
        fi
    done
    echo "error: PostgreSQL's initdb/pg_ctl not found; install it (Debian: apt-get install -y" \
        "postgresql) or set PG_BIN to the directory holding them" >&2
    exit 1
}

PG_BIN_DIR="$(find_pg_bin)"
WORK_DIR="$(mktemp -d "${TMPDIR:-/tmp}/campus-pg.XXXXXX")"
DATA_DIR="$WORK_DIR/data"
LOG_FILE="$WORK_DIR/server.log"

as_server_user=()
if [ "$(id -u)" -eq 0 ]; then
    PG_USER="${PG_USER:-$(id -u postgres >/dev/null 2>&1 && echo postgres || echo nobody)}"
    chown "$PG_USER" "$WORK_DIR"
    as_server_user=(runuser -u "$PG_USER" --)
fi

stop_server() {
    local status=$?
    if [ -f "$DATA_DIR/postmaster.pid" ]; then
        "${as_server_user[@]}" "$PG_BIN_DIR/pg_ctl" -D "$DATA_DIR" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$WORK_DIR"
    exit "$status"
}
trap stop_server EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# -U campus: the superuser's name; trust is safe because only the socket's owner can reach it.
"${as_server_user[@]}" "$PG_BIN_DIR/initdb" -D "$DATA_DIR" -U campus --auth=trust \
    --encoding=UTF8 --locale=C.UTF-8 >"$WORK_DIR/initdb.log" 2>&1 \
    || { cat "$WORK_DIR/initdb.log" >&2; exit 1; }
"${as_server_user[@]}" "$PG_BIN_DIR/pg_ctl" -D "$DATA_DIR" -l "$LOG_FILE" -w -t 60 start \
    -o "-c listen_addresses='' -c unix_socket_directories='$WORK_DIR' -c unix_socket_permissions=0700" \
    -o "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
    >/dev/null || { cat "$LOG_FILE" >&2; exit 1; }

export TEST_DATABASE_URL="postgresql+psycopg://campus@/campus?host=$WORK_DIR"
echo "$("$PG_BIN_DIR/postgres" --version) running in $WORK_DIR"
"$@"
