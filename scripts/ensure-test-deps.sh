#!/usr/bin/env bash
# Everything the test suite needs beyond Python packages, installed or started
# here when missing, so a clean machine (and CI) gets a green run without
# manual steps. Each check is cheap when the thing is already there.
set -euo pipefail

need() { command -v "$1" >/dev/null 2>&1; }

# The embedded engine and every codec come from Python wheels (espeakng-loader,
# PyAV), so the foundation needs no system packages. Check the wheels load.
"${VENV:-.venv}/bin/python" - <<'PY'
import av, espeakng_loader, soxr  # noqa: F401
from pathlib import Path
assert Path(espeakng_loader.get_library_path()).exists(), "libespeak-ng missing from espeakng-loader"
for codec in ("libmp3lame", "libopus", "aac", "flac"):
    av.Codec(codec, "w")
PY

# The shared (distributed) mode is tested against the real Redis and
# PostgreSQL of the machine: start them when they are installed but down,
# install them from Debian's packages when they are missing.
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo -n "$@"; fi; }
apt_install() {
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null \
    || { as_root apt-get update -q >/dev/null && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null; }
}
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

if ! port_open 6379; then
  need redis-server || apt_install redis-server
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /tmp --logfile /tmp/voxgate-test-redis.log
  for _ in $(seq 50); do port_open 6379 && break; sleep 0.1; done
  port_open 6379 || { echo "Redis did not start on 127.0.0.1:6379" >&2; exit 1; }
fi

if ! port_open 5432; then
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    apt_install postgresql
  fi
  version=$(ls /etc/postgresql | sort -V | tail -1)
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  for _ in $(seq 100); do port_open 5432 && break; sleep 0.1; done
  port_open 5432 || { echo "PostgreSQL did not start on 127.0.0.1:5432" >&2; exit 1; }
fi
# The tests connect as postgres over TCP without a password (trust on
# loopback, as this machine kind is set up); say so clearly if that fails.
"${VENV:-.venv}/bin/python" - <<'PY' || { echo "cannot connect to PostgreSQL as postgres@127.0.0.1 (trust auth expected)" >&2; exit 1; }
import asyncio, asyncpg
async def check():
    conn = await asyncpg.connect(host="127.0.0.1", user="postgres", database="postgres", timeout=10)
    await conn.close()
asyncio.run(check())
PY

# The web playground's tests (tests/e2e/test_playground.py) drive Debian's
# chromium through Playwright (a Python package in the dev extra); Playwright's
# own browser downloads are never used. Check it starts headless.
if ! need chromium; then
  apt_install chromium
fi
chromium --headless --no-sandbox --disable-gpu --dump-dom about:blank >/dev/null 2>&1 \
  || { echo "chromium is installed but does not start headless" >&2; exit 1; }
"${VENV:-.venv}/bin/python" -c 'import playwright.sync_api' 2>/dev/null \
  || { echo "playwright is missing from ${VENV:-.venv}: pip install -e '.[dev]'" >&2; exit 1; }

# The Java client's tests (tests/e2e/test_java_client.py) compile clients/java
# with the JDK's javac (17 or newer) and run JUnit 5's console launcher from
# Debian's junit5 package: no Maven, nothing downloaded at test time.
jdk_ok() {
  need javac && need java && need jar \
    && [ "$(javac -version 2>&1 | sed -n 's/^javac \([0-9][0-9]*\).*/\1/p')" -ge 17 ] 2>/dev/null
}
jdk_ok || apt_install default-jdk-headless
jdk_ok || { echo "the Java client's tests need JDK 17+ (javac, java, jar) on PATH" >&2; exit 1; }
junit_jar=${JUNIT_CONSOLE_JAR:-/usr/share/java/junit-platform-console-standalone.jar}
[ -f "$junit_jar" ] || apt_install junit5
[ -f "$junit_jar" ] || { echo "JUnit 5 console launcher missing: $junit_jar (Debian package junit5)" >&2; exit 1; }

need git || { echo "git is required" >&2; exit 1; }
echo "test dependencies: ok"
