#!/usr/bin/env bash
# Runs a conveyor worker against local Redis (127.0.0.1:6379) and MariaDB
# (127.0.0.1:3306): installs them with apt when missing, starts them on
# loopback when nothing answers there (data under $CONVEYOR_DEV_DIR), creates
# the `conveyor` database and user, then starts the worker in the foreground.
# Extra arguments go to `conveyor worker`; stop it with Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
DEV_DIR=${CONVEYOR_DEV_DIR:-/var/tmp/conveyor-dev}
mkdir -p "$DEV_DIR"
bash scripts/install-services.sh

if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  echo "starting redis-server on 127.0.0.1:6379 (data in $DEV_DIR/redis)" >&2
  mkdir -p "$DEV_DIR/redis"
  redis-server --bind 127.0.0.1 --port 6379 --dir "$DEV_DIR/redis" --appendonly yes \
    --appendfsync everysec --save '' --daemonize yes --logfile "$DEV_DIR/redis.log"
  for _ in $(seq 1 100); do redis-cli -p 6379 ping >/dev/null 2>&1 && break; sleep 0.1; done
fi

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
SOCKET="$DEV_DIR/mysqld.sock"
if ! (exec 3<>/dev/tcp/127.0.0.1/3306) 2>/dev/null; then
  echo "starting mariadbd on 127.0.0.1:3306 (data in $DEV_DIR/mysql)" >&2
  if [ ! -d "$DEV_DIR/mysql/mysql" ]; then
    as_root mariadb-install-db --no-defaults --datadir="$DEV_DIR/mysql" --user=root \
      --auth-root-authentication-method=socket --skip-test-db >/dev/null
  fi
  as_root setsid mariadbd --no-defaults --datadir="$DEV_DIR/mysql" --port=3306 \
    --bind-address=127.0.0.1 --socket="$SOCKET" --pid-file="$DEV_DIR/mysqld.pid" \
    --log-error="$DEV_DIR/mysql.err" --user=root --skip-name-resolve </dev/null >/dev/null 2>&1 &
  for _ in $(seq 1 300); do
    as_root mariadb --no-defaults --socket="$SOCKET" -uroot -e 'SELECT 1' >/dev/null 2>&1 && break
    sleep 0.1
  done
else
  SOCKET=""
fi
SQL="CREATE DATABASE IF NOT EXISTS conveyor;
CREATE USER IF NOT EXISTS 'conveyor'@'127.0.0.1' IDENTIFIED BY 'conveyor';
CREATE USER IF NOT EXISTS 'conveyor'@'localhost' IDENTIFIED BY 'conveyor';
GRANT ALL ON conveyor.* TO 'conveyor'@'127.0.0.1';
GRANT ALL ON conveyor.* TO 'conveyor'@'localhost';"
if [ -n "$SOCKET" ]; then
  as_root mariadb --no-defaults --socket="$SOCKET" -uroot -e "$SQL"
else
  as_root mariadb -uroot -e "$SQL" 2>/dev/null || echo "note: could not create the conveyor user on the running server; set CONVEYOR__MYSQL__URL" >&2
fi

export RUST_LOG=${RUST_LOG:-info}
exec cargo run --release --locked --bin conveyor -- worker "$@"
