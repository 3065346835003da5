#!/usr/bin/env bash
# Make sure the services aiostack's tests and benchmarks need are installed, running and reachable:
#   PostgreSQL on 127.0.0.1:5432 (user "postgres", no password) and RabbitMQ on 127.0.0.1:5672
#   (guest/guest). Also installs python3-venv when `python3 -m venv` cannot work, and what the
#   console page's browser test needs: Chromium (driven by playwright) and npm (to fetch noVNC).
#
# Idempotent and fast (well under a second) when everything is already up. Needs no systemd.
# Installing or starting anything needs root (or sudo). Exits non-zero, loudly, if a service does not
# answer within ENSURE_SERVICES_TIMEOUT seconds (default 90).
set -euo pipefail

PG_HOST=127.0.0.1
PG_PORT=5432
AMQP_HOST=127.0.0.1
AMQP_PORT=5672
TIMEOUT_S=${ENSURE_SERVICES_TIMEOUT:-90}

SCRIPT_NAME=ensure-services
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# A TCP connect that gives up after 1 s.
tcp_open() { timeout 1 bash -c ": >/dev/tcp/$1/$2" 2>/dev/null; }

# Run "$@" (quietly) until it succeeds or the deadline passes. $1 = what we are waiting for.
wait_for() {
    local what=$1
    shift
    local deadline=$((SECONDS + TIMEOUT_S))
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS >= deadline)); then
            return 1
        fi
        sleep 0.2
    done
    log "$what is up"
}

# ---------------------------------------------------------------------------------------------------
# 1. Packages
# ---------------------------------------------------------------------------------------------------
missing=()
if ! compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null ||
    ! command -v pg_ctlcluster >/dev/null || ! command -v psql >/dev/null ||
    ! command -v pg_isready >/dev/null; then
    missing+=(postgresql postgresql-client)
fi
if [[ ! -x /usr/sbin/rabbitmq-server ]]; then
    missing+=(rabbitmq-server)
fi
if ! command -v python3 >/dev/null; then
    missing+=(python3 python3-venv)
elif ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
    missing+=(python3-venv)
fi
[[ -x /usr/bin/chromium ]] || missing+=(chromium)
# Any npm will do (NodeSource's nodejs bundles one and conflicts with Debian's npm package).
command -v npm >/dev/null || missing+=(npm)

if ((${#missing[@]})); then
    command -v apt-get >/dev/null || die "missing packages (${missing[*]}) and no apt-get to install them"
    log "installing missing packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" </dev/null
    # A package's own start attempt may fail without systemd; we start things ourselves below.
fi

# ---------------------------------------------------------------------------------------------------
# 2. PostgreSQL
# ---------------------------------------------------------------------------------------------------
pg_ready() { pg_isready -q -h "$PG_HOST" -p "$PG_PORT"; }
pg_login() { psql -h "$PG_HOST" -p "$PG_PORT" -U postgres -d postgres -w -Atqc 'select 1' </dev/null; }

# The cluster configured on our port: "VERSION NAME STATUS", or nothing.
pg_cluster() { pg_lsclusters -h 2>/dev/null | awk -v p="$PG_PORT" '$3 == p { print $1, $2, $4; exit }'; }

pg_note="already running"
if ! pg_ready; then
    cluster=$(pg_cluster)
    if [[ -z $cluster ]]; then
        if [[ -n $(pg_lsclusters -h 2>/dev/null) ]]; then
            pg_lsclusters >&2
            die "no PostgreSQL cluster is configured on port $PG_PORT (see the list above)"
        fi
        ver=$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' | sort -V | tail -n1)
        log "creating PostgreSQL cluster $ver/main on port $PG_PORT"
        as_root pg_createcluster -p "$PG_PORT" "$ver" main >/dev/null
        cluster=$(pg_cluster)
    fi
    read -r pg_ver pg_name pg_status <<<"$cluster"
    if [[ $pg_status == online* ]]; then
        pg_note="was starting"
    else
        log "starting PostgreSQL $pg_ver/$pg_name"
        out=$(mktemp)
        # Redirect everything: a daemon holding our stdout open would hang `make test | tee`.
        if ! as_root pg_ctlcluster --skip-systemctl-redirect "$pg_ver" "$pg_name" start \
            </dev/null >"$out" 2>&1; then
            cat "$out" >&2
            rm -f "$out"
            die "could not start PostgreSQL $pg_ver/$pg_name (log: /var/log/postgresql/)"
        fi
        rm -f "$out"
        pg_note="started"
    fi
    if ! wait_for "PostgreSQL" pg_ready; then
        tail -n 20 /var/log/postgresql/*.log >&2 2>/dev/null || true
        die "PostgreSQL does not accept connections on $PG_HOST:$PG_PORT after ${TIMEOUT_S}s"
    fi
fi

# Tests connect as postgres over TCP without a password: make sure that is allowed.
if ! pg_login >/dev/null 2>&1; then
    cluster=$(pg_cluster)
    read -r pg_ver pg_name _ <<<"$cluster"
    hba=/etc/postgresql/$pg_ver/$pg_name/pg_hba.conf
    rule="host all all 127.0.0.1/32 trust"
    [[ -f $hba ]] || die "cannot log in to PostgreSQL as postgres and $hba does not exist"
    if ! grep -q "^$rule" "$hba"; then
        log "allowing password-less local TCP logins: adding '$rule' at the top of $hba"
        as_root sed -i "1i $rule  # added by aiostack scripts/ensure-services.sh" "$hba"
    fi
    as_root pg_ctlcluster --skip-systemctl-redirect "$pg_ver" "$pg_name" reload </dev/null >/dev/null
    if ! wait_for "PostgreSQL login" pg_login; then
        pg_login || true
        die "cannot log in to PostgreSQL at $PG_HOST:$PG_PORT as user postgres without a password"
    fi
fi
echo "postgresql: ok  postgresql://postgres@$PG_HOST:$PG_PORT/postgres  ($pg_note)"

# ---------------------------------------------------------------------------------------------------
# 3. RabbitMQ
# ---------------------------------------------------------------------------------------------------
amqp_ready() { tcp_open "$AMQP_HOST" "$AMQP_PORT"; }

rmq_note="already running"
if ! amqp_ready; then
    if pgrep -f 'beam\.smp.*rabbit' >/dev/null; then
        rmq_note="was starting"
    else
        # RabbitMQ's node name defaults to rabbit@$(hostname -s); if that name does not resolve the
        # node cannot start. Pin it to localhost then (only if nobody configured a node name).
        env_conf=/etc/rabbitmq/rabbitmq-env.conf
        if ! getent hosts "$(hostname -s)" >/dev/null 2>&1 &&
            ! grep -qs '^ *\(RABBITMQ_\)\?NODENAME=' "$env_conf"; then
            log "host name $(hostname -s) does not resolve: setting NODENAME=rabbit@localhost in $env_conf"
            as_root sh -c "echo NODENAME=rabbit@localhost >>'$env_conf'"
        fi
        log "starting RabbitMQ"
        out=$(mktemp)
        # -detached forks the broker (and epmd): keep them off our stdout/stderr.
        if ! as_root rabbitmq-server -detached </dev/null >"$out" 2>&1; then
            cat "$out" >&2
            rm -f "$out"
            die "could not start RabbitMQ (logs: /var/log/rabbitmq/)"
        fi
        rm -f "$out"
        rmq_note="started"
    fi
    if ! wait_for "RabbitMQ" amqp_ready; then
        tail -n 30 /var/log/rabbitmq/*.log /var/log/rabbitmq/startup_err >&2 2>/dev/null || true
        die "RabbitMQ does not accept connections on $AMQP_HOST:$AMQP_PORT after ${TIMEOUT_S}s"
    fi
fi
echo "rabbitmq:   ok  amqp://guest:guest@$AMQP_HOST:$AMQP_PORT/  ($rmq_note)"
