#!/usr/bin/env bash
# Start the local services the tests and benchmarks use, where this machine has them:
# PostgreSQL 15 (Debian's cluster, stopped by default) with a role and database for tests.
# Under CI (CI set) a missing service is an error; elsewhere it is reported and the tests that
# need it fail with that message.
set -uo pipefail

fail() {
    echo "services: $*" >&2
    if [[ -n "${CI:-}" ]]; then exit 1; fi
    exit 0
}

if ! command -v pg_ctlcluster >/dev/null 2>&1; then
    fail "PostgreSQL is not installed (apt-get install postgresql)"
fi
if [[ "$(id -u)" != "0" ]]; then
    fail "PostgreSQL set-up needs root (run as root or start the cluster yourself)"
fi
if ! pg_lsclusters -h 2>/dev/null | awk '$1=="15" && $2=="main" {print $4}' | grep -q online; then
    pg_ctlcluster 15 main start || fail "cannot start PostgreSQL 15/main"
fi
for _ in $(seq 1 30); do
    su postgres -c "psql -qtAc 'select 1'" >/dev/null 2>&1 && break
    sleep 0.5
done
su postgres -c "psql -qtAc \"SELECT 1 FROM pg_roles WHERE rolname='synmlops'\"" | grep -q 1 ||
    su postgres -c "psql -qc \"CREATE ROLE synmlops LOGIN SUPERUSER PASSWORD 'synmlops'\"" ||
    fail "cannot create the synmlops role"
echo "services: PostgreSQL 15 is up (role synmlops on 127.0.0.1:5432)"
