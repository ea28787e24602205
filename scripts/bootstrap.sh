# Sourced by the other scripts: make sure this Debian machine has libvirt (library,
# headers, daemon, virsh) and .venv at the repository root holds xvirt (editable), its
# test tools and libvirt-python built against the system's libvirt. Every step checks
# first and acts only when something is missing, so a set-up machine pays a few ms.
# XVIRT_VENV=DIR sets up another venv (to try this script without touching .venv).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${XVIRT_VENV:-$root/.venv}"

_xvirt_die() {
    echo "xvirt: $*" >&2
    exit 1
}

# Debian packages: pkg-config and libvirt-dev to build libvirt-python, libvirt-daemon and
# libvirt-clients (libvirtd, virsh) for the tests that run a real daemon.
_xvirt_debs=(pkg-config libvirt-dev libvirt-daemon libvirt-clients)

# Sets _xvirt_missing to the packages of "$@" that dpkg does not list as installed (one
# dpkg-query run, no other process: this runs every time).
_xvirt_find_missing() {
    local installed=" " pkg ok state
    while read -r pkg _ ok state; do
        if [ "$ok $state" = "ok installed" ]; then installed+="$pkg "; fi
    done < <(dpkg-query -W -f='${Package} ${Status}\n' "$@" 2>/dev/null || true)
    _xvirt_missing=()
    for pkg in "$@"; do
        [[ "$installed" == *" $pkg "* ]] || _xvirt_missing+=("$pkg")
    done
}

# apt-get install of the missing packages among "$@", via sudo when not root. Output is
# kept in a log and shown only on failure; apt-get update runs first when there are no
# package lists, or once after a failed install (stale lists give 404s or unknown names).
_xvirt_ensure_debs() {
    command -v dpkg-query >/dev/null || {
        pkg-config --exists libvirt 2>/dev/null && return 0
        _xvirt_die "not a Debian-like system: install libvirt's development files," \
            "its daemon, virsh and pkg-config, then run this again"
    }
    _xvirt_find_missing "$@"
    [ "${#_xvirt_missing[@]}" -eq 0 ] && return 0
    local -a pkgs=("${_xvirt_missing[@]}") as_root=()
    if [ "$EUID" -ne 0 ]; then
        command -v sudo >/dev/null || _xvirt_die "need root or sudo to install: ${pkgs[*]}"
        as_root=(sudo)
    fi
    local -a apt=("${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -q -y)
    local log
    log="$(mktemp)"
    echo "xvirt: installing Debian packages: ${pkgs[*]}" >&2
    if ! compgen -G "/var/lib/apt/lists/*_Packages*" >/dev/null \
            || ! "${apt[@]}" install --no-install-recommends "${pkgs[@]}" >"$log" 2>&1; then
        if ! { "${apt[@]}" update >>"$log" 2>&1 \
                && "${apt[@]}" install --no-install-recommends "${pkgs[@]}" >>"$log" 2>&1; }
        then
            tail -n 30 "$log" >&2
            rm -f "$log"
            _xvirt_die "could not install the Debian packages: ${pkgs[*]}"
        fi
    fi
    rm -f "$log"
}

if [ ! -x "$venv/bin/python" ] && ! python3 -c 'import ensurepip' 2>/dev/null; then
    _xvirt_debs+=(python3-venv)   # Debian's python3 makes venvs only with it
fi
_xvirt_ensure_debs "${_xvirt_debs[@]}"

if [ ! -x "$venv/bin/python" ]; then
    echo "xvirt: creating $venv" >&2
    python3 -m venv "$venv"
fi

stamp="$venv/.installed-$(sha256sum "$root/pyproject.toml" | cut -c1-16)"
if [ ! -f "$stamp" ]; then
    echo "xvirt: installing Python packages into $venv" >&2
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "$root[test,bench]"
    rm -f "$venv"/.installed-*
    touch "$stamp"
fi

# libvirt-python at the system libvirt's version: a newer one builds too, but offers API
# and constants the library answers with "not supported", and PyPI's newest changes over
# time. Its dist-info directory names the installed version, so a glob (no Python start)
# tells whether it is there at the right version.
_xvirt_libvirt_version="$(pkg-config --modversion libvirt)" \
    || _xvirt_die "pkg-config does not find libvirt"
if ! compgen -G "$venv/lib/python3*/site-packages/libvirt_python-$_xvirt_libvirt_version.dist-info" \
        >/dev/null; then
    # Building it needs a C compiler and the interpreter's headers; pyenv and most Pythons
    # bring the headers, Debian's own python3 needs python3-dev.
    _xvirt_build_debs=()
    command -v cc >/dev/null || _xvirt_build_debs+=(gcc)
    "$venv/bin/python" -c 'import os, sys, sysconfig
sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
        || _xvirt_build_debs+=(python3-dev)
    if [ "${#_xvirt_build_debs[@]}" -gt 0 ]; then
        _xvirt_ensure_debs "${_xvirt_build_debs[@]}"
    fi
    echo "xvirt: building libvirt-python $_xvirt_libvirt_version into $venv" >&2
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        "libvirt-python==$_xvirt_libvirt_version" \
        || _xvirt_die "could not install libvirt-python==$_xvirt_libvirt_version"
    "$venv/bin/python" -c 'import libvirt' \
        || _xvirt_die "libvirt-python $_xvirt_libvirt_version is installed but does not import"
fi
