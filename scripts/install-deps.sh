#!/usr/bin/env bash
# Installs what building and testing Sluice needs on a Debian 12 machine, and nothing more.
#
#   bash scripts/install-deps.sh        (run as root; `make deps` runs it)
#
# Idempotent and fast when everything is present: apt is only touched (and `apt-get update`
# only run) when a tool is missing, and pip only runs when tests/python/requirements.txt
# changed since the last install (its sha256 is kept in .cache/venv/.requirements.sha256).
#
# Provides:
#   * cmake, pkg-config, a C/C++ compiler, make   (native parts of the Rust build)
#   * wrk                                         (HTTP load generator for benches/load.sh)
#   * redis-server, redis-cli                     (shared-state tests: a real Redis on loopback)
#   * python3 with a working `venv`               (python3-venv when `python3 -m venv` fails)
#   * .cache/venv with the pinned packages of tests/python/requirements.txt (openai SDK)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.cache/venv"
REQS="$ROOT/tests/python/requirements.txt"
STAMP="$VENV/.requirements.sha256"

log() { printf 'install-deps: %s\n' "$*"; }
die() { printf 'install-deps: error: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------------------------------------
# Debian packages
# ---------------------------------------------------------------------------------------------
APT_UPDATED=0
apt_install() {
    command -v apt-get >/dev/null 2>&1 || die "apt-get not found; install manually: $*"
    if [ "$(id -u)" -ne 0 ]; then
        die "must run as root to install: $* (or install them yourself)"
    fi
    if [ "$APT_UPDATED" -eq 0 ]; then
        log "apt-get update"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq || die "apt-get update failed"
        APT_UPDATED=1
    fi
    log "apt-get install $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" \
        || die "apt-get install $* failed"
}

missing=()
need_cmd() { # need_cmd COMMAND PACKAGE
    if command -v "$1" >/dev/null 2>&1; then
        return 0
    fi
    log "missing: $1 (package $2)"
    missing+=("$2")
}
need_cmd cmake cmake
need_cmd pkg-config pkg-config
need_cmd make make
need_cmd cc gcc
need_cmd c++ g++
need_cmd wrk wrk
need_cmd redis-server redis-server
need_cmd redis-cli redis-tools
need_cmd python3 python3
if [ "${#missing[@]}" -gt 0 ]; then
    apt_install "${missing[@]}"
else
    log "system tools present (cmake, pkg-config, make, cc, c++, wrk, redis-server, redis-cli, python3)"
fi

command -v cargo >/dev/null 2>&1 \
    || log "warning: cargo not found on PATH; install a Rust toolchain (rust-version in Cargo.toml)"

PYTHON="$(command -v python3)" || die "python3 not found"

# Does `python3 -m venv` work (Debian splits ensurepip into python3-venv)?
venv_works() {
    local tmp rc
    tmp="$(mktemp -d)"
    "$PYTHON" -m venv "$tmp/v" >/dev/null 2>&1 && rc=0 || rc=$?
    rm -rf "$tmp"
    return "$rc"
}

# ---------------------------------------------------------------------------------------------
# Python virtualenv with the pinned test requirements
# ---------------------------------------------------------------------------------------------
[ -f "$REQS" ] || die "$REQS not found"
want_sha="$(sha256sum "$REQS" | cut -d' ' -f1)"

# A venv whose interpreter no longer runs (base python removed or moved) is rebuilt.
if [ -d "$VENV" ] && ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
    log "existing $VENV is broken; recreating it"
    rm -rf "$VENV"
fi

if [ ! -x "$VENV/bin/python" ]; then
    if ! venv_works; then
        log "'$PYTHON -m venv' does not work"
        apt_install python3-venv
        venv_works || die "'$PYTHON -m venv' still fails after installing python3-venv"
    fi
    log "creating virtualenv $VENV ($("$PYTHON" --version 2>&1))"
    mkdir -p "$(dirname "$VENV")"
    "$PYTHON" -m venv "$VENV" || { rm -rf "$VENV"; die "cannot create $VENV"; }
fi

have_sha="$(cat "$STAMP" 2>/dev/null || true)"
if [ "$have_sha" = "$want_sha" ]; then
    log "python requirements up to date in $VENV"
else
    log "installing python requirements from tests/python/requirements.txt into $VENV"
    rm -f "$STAMP"
    export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
    "$VENV/bin/python" -m pip install --quiet --require-virtualenv -r "$REQS" \
        || die "pip install -r $REQS failed"
    "$VENV/bin/python" -c 'import openai' \
        || die "openai not importable after pip install"
    printf '%s\n' "$want_sha" > "$STAMP"
    log "installed: $("$VENV/bin/python" -c 'import openai; print("openai", openai.__version__)')"
fi

log "done"
