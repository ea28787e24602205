# Sourced by the other scripts: make sure .venv at the repository root holds
# xvirt (editable) and its test tools. Reinstalls only when pyproject.toml changes.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
stamp="$venv/.installed-$(sha256sum "$root/pyproject.toml" | cut -c1-16)"
if [ ! -x "$venv/bin/python" ]; then
    echo "xvirt: creating $venv" >&2
    python3 -m venv "$venv"
fi
if [ ! -f "$stamp" ]; then
    echo "xvirt: installing Python packages into $venv" >&2
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "$root[test]"
    rm -f "$venv"/.installed-*
    touch "$stamp"
fi
