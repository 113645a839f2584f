#!/usr/bin/env bash
# Serve the back-office for development, with the simulated payment provider on loopback (its
# webhooks post back to this server). With REDIS_URL set, also a Celery worker and beat; all are
# stopped together with the web server.
set -euo pipefail
PY=${PY:-.venv/bin/python}
HOST=${HOST:-127.0.0.1}
PORT=${PORT:-8000}
pids=()
cleanup() {
  # SIGINT, not SIGTERM: Python then runs its exit handlers, which stop the embedded PostgreSQL.
  for pid in "${pids[@]:-}"; do [ -n "$pid" ] && kill -INT "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

SIM_PORT=${PROVIDER_SIM_PORT:-8765}
# The web server and workers talk to this simulator unless another provider is configured.
export PROVIDER_BASE_URL=${PROVIDER_BASE_URL:-http://127.0.0.1:$SIM_PORT}

if [ -n "${REDIS_URL:-}" ]; then
  mkdir -p var
  "$PY" -m celery -A backoffice worker --loglevel=INFO --concurrency=2 &
  pids+=($!)
  "$PY" -m celery -A backoffice beat --loglevel=INFO --schedule=var/celerybeat-schedule &
  pids+=($!)
  echo "Celery worker and beat started against $REDIS_URL"
else
  echo "REDIS_URL is unset: tasks run in-process; no worker or beat is started."
fi
"$PY" manage.py provider_simulator --host 127.0.0.1 --port "$SIM_PORT" \
  --webhook-url "http://$HOST:$PORT/webhooks/sim/" &
pids+=($!)
echo "Simulated payment provider on http://127.0.0.1:$SIM_PORT/ (webhooks to /webhooks/sim/)"
echo "Back-office on http://$HOST:$PORT/  (demo logins: see README)"
"$PY" manage.py runserver "$HOST:$PORT" --noreload &
pids+=($!)
wait -n
