# Production image: gunicorn serving the back-office; the same image runs the Celery worker and beat.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 DJANGO_ENV=production
WORKDIR /app

COPY pyproject.toml README.md ./
COPY backoffice ./backoffice
COPY payments ./payments
COPY ledger ./ledger
COPY reconciliation ./reconciliation
COPY cases ./cases
COPY approvals ./approvals
COPY audit ./audit
RUN pip install . && pip uninstall -y pgserver
COPY manage.py ./
COPY templates ./templates
COPY static ./static

# collectstatic needs settings to load; these build-time values are never used at run time.
RUN SECRET_KEY=build-only-$(python -c 'import secrets; print(secrets.token_urlsafe(48))') \
    ALLOWED_HOSTS=build DATABASE_URL=postgres://build@build/build REDIS_URL=redis://build:6379/0 \
    python manage.py collectstatic --noinput

RUN useradd --system --uid 10001 backoffice && chown -R backoffice /app
USER backoffice
EXPOSE 8000
CMD ["gunicorn", "backoffice.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "3", "--timeout", "60", "--access-logfile", "-"]
