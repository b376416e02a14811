#!/usr/bin/env bash
# Make sure a MariaDB server answers on 127.0.0.1:3306 (root, empty password) and drop test
# databases left behind by earlier runs that were killed.
set -euo pipefail
if ! mariadb -uroot -h127.0.0.1 -e 'SELECT 1' >/dev/null 2>&1; then
  if ! command -v mariadbd >/dev/null 2>&1 && [ ! -x /usr/sbin/mariadbd ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mariadb-server >/dev/null
  fi
  mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld 2>/dev/null || true
  # Without --user=mysql the server refuses to run as root, and start-stop-daemon still says 0.
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- --user=mysql
  for _ in $(seq 60); do
    mariadb -uroot -h127.0.0.1 -e 'SELECT 1' >/dev/null 2>&1 && break
    sleep 0.5
  done
fi
mariadb -uroot -h127.0.0.1 -e 'SELECT 1' >/dev/null
for db in $(mariadb -uroot -h127.0.0.1 -N -e "SHOW DATABASES LIKE 'pa\\_t\\_%'"); do
  mariadb -uroot -h127.0.0.1 -e "DROP DATABASE \`$db\`"
done
echo "MariaDB ready on 127.0.0.1:3306"
