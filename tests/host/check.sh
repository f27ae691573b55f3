#!/usr/bin/env bash
# The built wheel in a fresh virtual environment, driving this host project (its own e-mail user model, SQLite,
# DEBUG off): migrate, check, collectstatic, the command, and the API through gunicorn on 127.0.0.1.
# The dependencies come from the development venv (VENV, default .venv) through a .pth file, so nothing is
# downloaded; the app itself is the wheel's, never the editable checkout.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
venv="$(cd "$root" && realpath "${VENV:-.venv}")"
work="$(mktemp -d)"
server=""
cleanup() { [ -n "$server" ] && kill "$server" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

echo "building the wheel"
"$venv/bin/pip" wheel -q --no-deps -w "$work/dist" "$root" 2>&1 | grep -v '^WARNING: Location' || true
wheel="$(ls "$work"/dist/aspects_app-*.whl)"

echo "installing $(basename "$wheel") into a fresh venv"
"$venv/bin/python" -m venv --without-pip "$work/venv"
host_site="$("$work/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
dev_site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
# A plain path entry: the dev venv's own .pth files (the editable aspects_app among them) are not processed.
echo "$dev_site" > "$host_site/_dev_dependencies.pth"
"$venv/bin/pip" --python "$work/venv/bin/python" install -q --no-deps --no-index "$wheel"
py="$work/venv/bin/python"
installed="$(cd "$work" && "$py" -c 'import aspects_app; print(aspects_app.__file__)')"
case "$installed" in
    "$work/venv/"*) echo "aspects_app from the wheel: $installed" ;;
    *) echo "aspects_app came from $installed, not the wheel" >&2; exit 1 ;;
esac

cp -r "$root/tests/host/." "$work/project"
cd "$work/project"
export DJANGO_SETTINGS_MODULE=hostproject.settings HOST_WORK_DIR="$work" PYTHONPATH="$work/project"
manage() { "$py" manage.py "$@"; }
manage migrate --verbosity 0
manage check --fail-level WARNING
manage collectstatic --noinput --verbosity 0
[ -s "$work/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" ] || {
    echo "collectstatic did not collect Swagger UI" >&2; exit 1; }
manage seed_host ada@example.org 'a long host password' 6
manage compute_aspects --owner ada@example.org --mode natal --mode top-k -k 3 --no-progress
manage aspects_cache warm --owner ada@example.org

port="$("$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
"$py" -m gunicorn hostproject.wsgi -b "127.0.0.1:$port" -w 1 --log-level warning &
server=$!
base="http://127.0.0.1:$port/api/aspects"
for _ in $(seq 1 50); do curl -s -o /dev/null "$base/" && break; sleep 0.2; done
"$py" - "$base" <<'PY'
import base64, json, sys, urllib.error, urllib.request

base = sys.argv[1]
auth = "Basic " + base64.b64encode(b"ada@example.org:a long host password").decode()


def call(method, path, body=None, user=True):
    request = urllib.request.Request(base + path, method=method, data=None if body is None else json.dumps(body).encode())
    request.add_header("Content-Type", "application/json")
    if user:
        request.add_header("Authorization", auth)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


status, body = call("GET", "/charts/")
assert status == 200, (status, body)
listed = json.loads(body)
assert listed["count"] == 6 and listed["results"][0]["owner"] == "ada@example.org", listed
status, body = call("POST", "/charts/", {"name": "host", "birth_datetime": "1990-01-01T12:00:00+00:00",
                                         "latitude": 48.85, "longitude": 2.35})
assert status == 201, (status, body)
chart = json.loads(body)["id"]
status, body = call("GET", f"/charts/{chart}/natal/")
assert status == 200, (status, body)
status, body = call("POST", "/charts/", {"name": "anonymous"}, user=False)
assert status in (401, 403), (status, body[:200])
status, body = call("POST", "/charts/", {"name": "bad", "birth_datetime": "1990-01-01T12:00:00+00:00", "latitude": "north", "longitude": 2.35})
assert status == 400 and body.startswith(b"{"), (status, body)
status, body = call("GET", "/schema/")
assert status == 200 and b"Host astrology API" in body and b"2.3" in body, (status, body[:200])
print("API through gunicorn: charts by e-mail login, natal, anonymous writes refused, a JSON 400, the schema titled")
PY
echo "host check passed"
