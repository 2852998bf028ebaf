#!/usr/bin/env bash
# PostgreSQL and MariaDB from Debian's packages, each run as the project's own
# instance (own data directory, port and socket), with a test database and a
# password-authenticated user `delenda`.
# Usage: sql.sh build|up|down|status
source "$(dirname "$0")/../lib.sh"

PG_DIR=$RUN_DIR/postgres
MY_DIR=$RUN_DIR/mariadb
DB_PASSWORD=delenda

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

build() {
  local want=()
  [ -n "$(pg_bin)" ] || want+=(postgresql)
  command -v mariadbd >/dev/null || [ -x /usr/sbin/mariadbd ] || want+=(mariadb-server mariadb-client)
  if [ ${#want[@]} -gt 0 ]; then
    log "installing ${want[*]} from Debian's packages"
    apt_install "${want[@]}"
  fi
}

pg_up() {
  local bin; bin=$(pg_bin)
  if [ ! -f "$PG_DIR/data/PG_VERSION" ]; then
    mkdir -p "$PG_DIR"; chown postgres: "$PG_DIR"
    printf '%s\n' "$DB_PASSWORD" >"$PG_DIR/pw"; chown postgres: "$PG_DIR/pw"
    runuser -u postgres -- "$bin/initdb" -D "$PG_DIR/data" -U delenda --pwfile="$PG_DIR/pw" \
      --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >"$DELENDA_STATE/logs/postgres-initdb.log"
  fi
  if ! pid_alive postgres; then
    port_free "$POSTGRES_PORT" PostgreSQL
    # Tests create and drop many tables; fsync buys nothing here.
    start_bg postgres runuser -u postgres -- "$bin/postgres" -D "$PG_DIR/data" \
      -c listen_addresses=127.0.0.1 -c port="$POSTGRES_PORT" -c unix_socket_directories="$PG_DIR" \
      -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200
    wait_for postgres 60 "$bin/pg_isready" -h 127.0.0.1 -p "$POSTGRES_PORT"
    log "PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$POSTGRES_PORT"
  fi
  runuser -u postgres -- "$bin/psql" -h "$PG_DIR" -p "$POSTGRES_PORT" -U delenda -d postgres -tAc \
    "SELECT 1 FROM pg_database WHERE datname = 'delenda_test'" | grep -q 1 ||
    runuser -u postgres -- "$bin/createdb" -h "$PG_DIR" -p "$POSTGRES_PORT" -U delenda delenda_test
}

my_up() {
  if [ ! -d "$MY_DIR/data/mysql" ]; then
    mkdir -p "$MY_DIR"
    mariadb-install-db --no-defaults --datadir="$MY_DIR/data" --user=root \
      --auth-root-authentication-method=socket --skip-test-db >"$DELENDA_STATE/logs/mariadb-install.log" 2>&1
  fi
  if ! pid_alive mariadb; then
    port_free "$MARIADB_PORT" MariaDB
    # userstat: tests read INFORMATION_SCHEMA.INDEX_STATISTICS to show how
    # much of an index a purge reads.
    start_bg mariadb /usr/sbin/mariadbd --no-defaults --user=root --datadir="$MY_DIR/data" \
      --bind-address=127.0.0.1 --port="$MARIADB_PORT" --socket="$MY_DIR/mysqld.sock" \
      --pid-file="$MY_DIR/mysqld.pid" --skip-log-bin --innodb-flush-log-at-trx-commit=0 \
      --innodb-buffer-pool-size=256M --max-connections=200 --character-set-server=utf8mb4 \
      --userstat=1
    wait_for mariadb 60 mariadb-admin --no-defaults --socket="$MY_DIR/mysqld.sock" -uroot ping
    log "MariaDB $(mariadb --no-defaults --socket="$MY_DIR/mysqld.sock" -uroot -Nse 'SELECT VERSION()') on 127.0.0.1:$MARIADB_PORT"
  fi
  mariadb --no-defaults --socket="$MY_DIR/mysqld.sock" -uroot <<SQL
CREATE DATABASE IF NOT EXISTS delenda_test CHARACTER SET utf8mb4;
CREATE USER IF NOT EXISTS 'delenda'@'127.0.0.1' IDENTIFIED BY '$DB_PASSWORD';
CREATE USER IF NOT EXISTS 'delenda'@'localhost' IDENTIFIED BY '$DB_PASSWORD';
GRANT ALL PRIVILEGES ON *.* TO 'delenda'@'127.0.0.1';
GRANT ALL PRIVILEGES ON *.* TO 'delenda'@'localhost';
SQL
}

up() {
  build
  pg_up
  my_up
  write_env sql <<ENV
POSTGRES_URL=postgres://delenda:$DB_PASSWORD@127.0.0.1:$POSTGRES_PORT/delenda_test
MYSQL_URL=mysql://delenda:$DB_PASSWORD@127.0.0.1:$MARIADB_PORT/delenda_test
ENV
}

down() { stop_pid postgres; stop_pid mariadb; rm -f "$DELENDA_STATE/env.d/sql.env"; }

status() {
  for p in postgres mariadb; do
    if pid_alive $p; then echo "$p: running (pid $(cat "$DELENDA_STATE/pids/$p.pid"))"; else echo "$p: stopped"; fi
  done
}

"${1:?usage: sql.sh build|up|down|status}"
