#!/usr/bin/env bash
# Redis and PostgreSQL for the scale-out tests (tests/scale): `tests/services.sh start|stop`.
#
# start: installs Debian's haproxy when missing (deploy/haproxy.cfg is tested). When ASP_TEST_REDIS_URL / ASP_TEST_DATABASE_URL are set, or the machine already answers on
#        127.0.0.1:6379 (Redis) and 127.0.0.1:5432 (PostgreSQL), nothing to do. Otherwise installs
#        redis-server and postgresql with apt when missing (as root) and starts private servers on free
#        ports with their own data directories, writing their URLs to .services/env, which
#        tests/support/services.py reads. ASP_TEST_PRIVATE_SERVICES=1 starts private ones regardless.
#        Exits 1 with the reason when it cannot: the tests fail rather than skip.
# stop:  stops the private servers this script started (none: nothing to do).
set -euo pipefail
cd "$(dirname "$0")/.."
STATE=.services
mkdir -p "$STATE"
# Seconds a private server may take to start: an upper bound for two CI runs on two cores (a quiet
# machine takes about one). A server that exits fails the start at once, whatever this says.
START_TIMEOUT_S=60

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
die() { echo "tests/services.sh: $*" >&2; exit 1; }

apt_install() {  # apt_install COMMAND PACKAGE
    command -v "$1" >/dev/null 2>&1 && return 0
    [ "$(id -u)" = 0 ] || die "$1 missing; run as root, or: sudo apt-get install $2"
    echo "installing Debian's $2 for the scale-out tests"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null \
        || die "apt-get install $2 failed"
}

pg_bin() {
    local found
    found=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
    [ -n "$found" ] && echo "$found" || dirname "$(command -v initdb 2>/dev/null || echo /nonexistent/x)"
}

start_redis() {
    apt_install redis-server redis-server
    local port dir
    port=$(free_port)
    dir=$(mktemp -d /tmp/asp-redis.XXXXXX)
    # In the background of its own session (as --daemonize would), so that its death is seen at once.
    setsid redis-server --bind 127.0.0.1 --port "$port" --dir "$dir" --save "" --appendonly no \
        --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" </dev/null >>"$dir/redis.log" 2>&1 &
    local pid=$! deadline=$((SECONDS + START_TIMEOUT_S))
    until listening "$port"; do
        kill -0 "$pid" 2>/dev/null || die "redis-server exited before it listened on $port:
$(tail -n 20 "$dir/redis.log")"
        if [ "$SECONDS" -ge "$deadline" ]; then
            kill "$pid" 2>/dev/null || true
            die "redis-server did not listen on $port within ${START_TIMEOUT_S} s:
$(tail -n 20 "$dir/redis.log")"
        fi
        sleep 0.1
    done
    echo "REDIS_DIR=$dir" >>"$STATE/private"
    echo "ASP_TEST_REDIS_URL=redis://127.0.0.1:$port/0" >>"$STATE/env"
}

start_postgres() {
    [ -x "$(pg_bin)/initdb" ] || { apt_install pg_ctlcluster postgresql; }
    local bin port dir run_as=()
    bin=$(pg_bin)
    [ -x "$bin/initdb" ] || die "PostgreSQL's initdb not found after installing postgresql"
    port=$(free_port)
    dir=$(mktemp -d /tmp/asp-pg.XXXXXX)
    if [ "$(id -u)" = 0 ]; then  # PostgreSQL refuses to run as root: as its own system user
        id postgres >/dev/null 2>&1 || die "no 'postgres' user to run PostgreSQL as"
        chown postgres "$dir"
        run_as=(runuser -u postgres --)
    fi
    "${run_as[@]}" "$bin/initdb" -D "$dir/data" -A trust -U postgres >"$dir/initdb.log" 2>&1 \
        || die "initdb failed (see $dir/initdb.log)"
    # -w -t: pg_ctl waits until it accepts connections, and fails at once if the server exits.
    "${run_as[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t "$START_TIMEOUT_S" \
        -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null \
        || die "PostgreSQL did not start:
$(tail -n 20 "$dir/postgres.log" 2>/dev/null)"
    "$bin/createdb" -h 127.0.0.1 -p "$port" -U postgres test || die "createdb test failed"
    echo "PG_DIR=$dir" >>"$STATE/private"
    echo "PG_BIN=$bin" >>"$STATE/private"
    echo "ASP_TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:$port/test" >>"$STATE/env"
}

stop() {
    [ -f "$STATE/private" ] || { rm -f "$STATE/env"; return 0; }
    # shellcheck disable=SC1091
    . "$STATE/private"
    if [ -n "${REDIS_DIR:-}" ] && [ -f "$REDIS_DIR/redis.pid" ]; then
        kill "$(cat "$REDIS_DIR/redis.pid")" 2>/dev/null || true
    fi
    if [ -n "${PG_DIR:-}" ]; then
        if [ "$(id -u)" = 0 ]; then
            runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast stop >/dev/null 2>&1 || true
        else
            "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast stop >/dev/null 2>&1 || true
        fi
    fi
    rm -rf "${REDIS_DIR:-/nonexistent}" "${PG_DIR:-/nonexistent}" "$STATE/private" "$STATE/env"
}

start() {
    stop
    apt_install haproxy haproxy  # the load balancer of deploy/, in front of two instances in a test
    local private="${ASP_TEST_PRIVATE_SERVICES:-}"
    if [ -z "${ASP_TEST_REDIS_URL:-}" ] && { [ -n "$private" ] || ! listening 6379; }; then start_redis; fi
    if [ -z "${ASP_TEST_DATABASE_URL:-}" ] && { [ -n "$private" ] || ! listening 5432; }; then start_postgres; fi
    return 0
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    *) echo "usage: tests/services.sh start|stop" >&2; exit 2 ;;
esac
