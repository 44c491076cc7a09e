#!/usr/bin/env bash
# Makes PostgreSQL binaries available for the storage tests (test/support/postgres.ts starts a
# throwaway cluster from them). Installs Debian's postgresql when no usable initdb is found.
set -euo pipefail

have_initdb() {
  if command -v initdb >/dev/null 2>&1 && [ -x "$(readlink -f "$(command -v initdb)")" ]; then return 0; fi
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1
}

if have_initdb; then
  echo "postgres.sh: PostgreSQL binaries present"
  exit 0
fi

echo "postgres.sh: installing postgresql from Debian packages"
export DEBIAN_FRONTEND=noninteractive
SUDO=""
if [ "$(id -u)" != "0" ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq postgresql >/dev/null
# The package starts a default cluster on 5432; the tests never use it.
$SUDO service postgresql stop >/dev/null 2>&1 || true
have_initdb && echo "postgres.sh: installed $(ls -d /usr/lib/postgresql/*/bin | tail -1)"
