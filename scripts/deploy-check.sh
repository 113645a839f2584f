#!/usr/bin/env bash
# The production deploy check with production-shaped settings. No server is contacted: the URLs
# only have to be well-formed.
set -euo pipefail
PY=${1:-.venv/bin/python}
DJANGO_ENV=production \
SECRET_KEY=${DEPLOY_CHECK_SECRET_KEY:-$("$PY" -c 'import secrets; print(secrets.token_urlsafe(64))')} \
ALLOWED_HOSTS=backoffice.example.com \
DATABASE_URL=postgres://backoffice:secret@db.example.com:5432/backoffice \
REDIS_URL=redis://redis.example.com:6379/0 \
  "$PY" manage.py check --deploy --fail-level WARNING
