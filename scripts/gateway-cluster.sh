#!/usr/bin/env bash
# Several device gateways behind HAProxy in TCP mode, on one machine (docs/gateway.md, "Scaling out").
#
#   scripts/gateway-cluster.sh [GATEWAYS=2] [FRONTEND_PORT=7800]
#
# Starts GATEWAYS `manage.py rungateway` processes on FRONTEND_PORT+1 … and HAProxy (Debian's
# `haproxy`) on FRONTEND_PORT; devices connect to FRONTEND_PORT. Every gateway uses the same
# certificate (ENERGYBOX_GATEWAY_TLS_CERT/KEY, or the development one). Set REDIS_URL so the gateways
# share device ownership (takeover, presence) and the control bus. Ctrl-C stops them all.
set -euo pipefail
cd "$(dirname "$0")/.."
gateways=${1:-2}
frontend=${2:-7800}
python=${PYTHON:-.venv/bin/python}
command -v haproxy >/dev/null || { echo "haproxy is missing: apt-get install haproxy" >&2; exit 1; }
run_dir=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait; rm -rf "$run_dir"' EXIT INT TERM
ports=()
for n in $(seq 1 "$gateways"); do
  port=$((frontend + n))
  ports+=("$port")
  "$python" manage.py rungateway --port "$port" &
  pids+=($!)
done
"$python" -m gateway.haproxy "$frontend" "${ports[@]}" > "$run_dir/haproxy.cfg"
haproxy -db -f "$run_dir/haproxy.cfg" &
pids+=($!)
echo "gateway cluster: HAProxy on :$frontend → gateways on ${ports[*]}"
wait -n
