"""Settings for the payment operations back-office.

Everything comes from environment variables (see README, "Configuration"). The defaults are safe:
DEBUG is off, cookies are HTTP-only, and production refuses to start without its secrets.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

from backoffice import beat, config

BASE_DIR = Path(__file__).resolve().parent.parent
ENV = os.environ

DJANGO_ENV = config.env_choice(ENV, "DJANGO_ENV", config.ENVIRONMENTS, "development")
PRODUCTION = DJANGO_ENV == "production"

SECRET_KEY = config.env_secret_key(
    ENV,
    "SECRET_KEY",
    production=PRODUCTION,
    # Development only: production refuses to start without its own key.
    fallback="development-only-key-not-for-production-use-0123456789abcdefghij",
)
DEBUG = config.env_bool(ENV, "DEBUG", False)
if PRODUCTION and DEBUG:
    raise config.ConfigError("DEBUG", "must be off when DJANGO_ENV=production")

if PRODUCTION and not (ENV.get("ALLOWED_HOSTS") or "").strip():
    raise config.ConfigError("ALLOWED_HOSTS", "must be set in production (comma-separated host names)")
ALLOWED_HOSTS = config.env_list(ENV, "ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = config.env_list(ENV, "CSRF_TRUSTED_ORIGINS", [])

# --- business calendar -------------------------------------------------------------------------
BUSINESS_TIMEZONE = config.env_timezone(ENV, "BUSINESS_TIMEZONE", "Asia/Manila")
BUSINESS_DAY_CUTOFF = config.env_cutoff(ENV, "BUSINESS_DAY_CUTOFF", "00:00")

# --- database ----------------------------------------------------------------------------------
_database = config.env_database(ENV, "DATABASE_URL")
if _database is None:
    if PRODUCTION:
        raise config.ConfigError("DATABASE_URL", "must be set in production (postgres://...)")
    from backoffice import embedded_postgres

    _database = embedded_postgres.ensure_running(BASE_DIR / "var")
    EMBEDDED_DATABASE = True
else:
    EMBEDDED_DATABASE = False
_database["ATOMIC_REQUESTS"] = False  # the outermost service owns the transaction
DATABASES = {"default": _database}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# Hot write paths prepare their statements per connection (backoffice/prepared.py); turn off behind
# a transaction-pooling proxy, which cannot keep a prepared statement between transactions.
DATABASE_PREPARED_STATEMENTS = config.env_bool(ENV, "DATABASE_PREPARED_STATEMENTS", True)
if DATABASE_PREPARED_STATEMENTS:
    # Prepared statements keep one generic plan (why: backoffice/prepared.py). A startup option, so
    # only where prepared statements are on: a transaction-pooling proxy may refuse startup options.
    _options = _database.setdefault("OPTIONS", {})
    _options["options"] = f"{_options.get('options', '')} -c plan_cache_mode=force_generic_plan".strip()

# --- case evidence -----------------------------------------------------------------------------
# Evidence files live outside any web-served directory, under names the server chooses; they are
# served only by the evidence download view, to users who may see the case.
CASE_EVIDENCE_ROOT = Path(ENV.get("CASE_EVIDENCE_ROOT") or BASE_DIR / "var" / "evidence")
CASE_EVIDENCE_MAX_BYTES = config.env_int(ENV, "CASE_EVIDENCE_MAX_BYTES", 10 * 1024 * 1024, minimum=1024)
# No request body with files may exceed this (form fields included); checked while reading.
UPLOAD_MAX_BYTES = config.env_int(ENV, "UPLOAD_MAX_BYTES", CASE_EVIDENCE_MAX_BYTES + 1024 * 1024, minimum=1024)
FILE_UPLOAD_HANDLERS = [
    "backoffice.uploads.RequestSizeLimitUploadHandler",
    "django.core.files.uploadhandler.MemoryFileUploadHandler",
    "django.core.files.uploadhandler.TemporaryFileUploadHandler",
]

# --- payment providers and webhooks ------------------------------------------------------------
# One provider adapter over HTTP; by default the built-in simulated provider on loopback (started
# by `make run` and by the tests). Timeouts are separate: a connect timeout means nothing was sent,
# a read timeout means the outcome is unknown (the attempt becomes UNKNOWN_OUTCOME, never resent).
PAYMENTS_PROVIDER_CODE = ENV.get("PROVIDER_CODE", "sim")
PAYMENTS_PROVIDER_BASE_URL = ENV.get("PROVIDER_BASE_URL") or ENV.get("PROVIDER_SIM_URL") or "http://127.0.0.1:8765"
PAYMENTS_PROVIDER_API_KEY = ENV.get("PROVIDER_API_KEY", "")
PAYMENTS_PROVIDER_CONNECT_TIMEOUT = config.env_int(ENV, "PROVIDER_CONNECT_TIMEOUT_MS", 3_000, minimum=1) / 1000
PAYMENTS_PROVIDER_READ_TIMEOUT = config.env_int(ENV, "PROVIDER_READ_TIMEOUT_MS", 10_000, minimum=1) / 1000
# Webhook signing secrets per provider, WEBHOOK_SECRET_<PROVIDER> (comma-separated while rotating).
# None configured: every webhook from that provider is stored and refused (fails closed). Outside
# production the simulator's development secret is the default for "sim".
PAYMENTS_WEBHOOK_SECRETS = {
    name[len("WEBHOOK_SECRET_") :].lower(): [v.strip() for v in value.split(",") if v.strip()]
    for name, value in ENV.items()
    if name.startswith("WEBHOOK_SECRET_") and value.strip()
}
if not PRODUCTION:
    PAYMENTS_WEBHOOK_SECRETS.setdefault("sim", ["whsec_simulator_development_only"])
# /metrics for a Prometheus scraper (no session): "Authorization: Bearer <token>". Empty turns token
# access off; signed-in users with the audit read permission may always read it.
METRICS_BEARER_TOKEN = ENV.get("METRICS_BEARER_TOKEN", "")
PAYMENTS_WEBHOOK_TOLERANCE_SECONDS = config.env_int(ENV, "WEBHOOK_TOLERANCE_SECONDS", 300, minimum=1)
PAYMENTS_SIMULATOR_WEBHOOK_URL = ENV.get("PROVIDER_SIM_WEBHOOK_URL") or None
# Attempts stuck in SENT_TO_PROVIDER or UNKNOWN_OUTCOME are asked about by the sweeper (beat, every
# 5 minutes) with exponential backoff, then escalated to a case after the last try.
PAYMENTS_INQUIRY_STALE_MINUTES = config.env_int(ENV, "INQUIRY_STALE_MINUTES", 15, minimum=1)
PAYMENTS_INQUIRY_MAX_TRIES = config.env_int(ENV, "INQUIRY_MAX_TRIES", 6, minimum=1)
PAYMENTS_INQUIRY_BACKOFF_SECONDS = config.env_int(ENV, "INQUIRY_BACKOFF_SECONDS", 300, minimum=1)
PAYMENTS_INQUIRY_MAX_BACKOFF_SECONDS = config.env_int(ENV, "INQUIRY_MAX_BACKOFF_SECONDS", 21_600, minimum=1)
PAYMENTS_INQUIRY_SWEEP_LIMIT = config.env_int(ENV, "INQUIRY_SWEEP_LIMIT", 200, minimum=1)
# Refunds still REQUESTED, payouts still APPROVED and provider events still RECEIVED this long after
# getting there had their task lost (a worker crash, a broker outage): the dispatch sweep (beat,
# every 5 minutes) queues it again, at most PAYMENTS_DISPATCH_SWEEP_LIMIT of each kind per run.
PAYMENTS_DISPATCH_STALE_MINUTES = config.env_int(ENV, "DISPATCH_STALE_MINUTES", 10, minimum=1)
PAYMENTS_DISPATCH_SWEEP_LIMIT = config.env_int(ENV, "DISPATCH_SWEEP_LIMIT", 200, minimum=1)
# How many payments `demo_seed` makes (through the services, against its own simulated provider).
DEMO_PAYMENT_COUNT = config.env_int(ENV, "DEMO_PAYMENT_COUNT", 2000, minimum=0)

# --- redis, celery, cache ----------------------------------------------------------------------
REDIS_URL = config.env_redis_url(ENV, "REDIS_URL")
if PRODUCTION and not REDIS_URL:
    raise config.ConfigError("REDIS_URL", "must be set in production (redis://host:6379/0)")

# Longest task we allow; the broker's visibility timeout must exceed it because tasks ack late.
CELERY_TASK_TIME_LIMIT = 30 * 60
CELERY_TASK_SOFT_TIME_LIMIT = 25 * 60
CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_RESULT_BACKEND = REDIS_URL or "cache+memory://"
CELERY_TASK_ALWAYS_EAGER = REDIS_URL is None
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 2 * CELERY_TASK_TIME_LIMIT}
CELERY_RESULT_EXPIRES = timedelta(days=1)
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_ENABLE_UTC = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Beat schedules live in code (backoffice/beat.py), in UTC.
CELERY_BEAT_SCHEDULE = beat.BEAT_SCHEDULE

if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- applications ------------------------------------------------------------------------------
INSTALLED_APPS = [
    "whitenoise.runserver_nostatic",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_fsm",
    "guardian",
    "simple_history",
    "axes",
    "csp",
    "audit",
    "ledger",
    "payments",
    "reconciliation",
    "cases",
    "approvals",
    # Last, so that role synchronisation after migrate sees every app's permissions.
    "backoffice",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "audit.middleware.AuditContextMiddleware",
    "simple_history.middleware.HistoryRequestMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "backoffice.middleware.NoStoreForAuthenticatedMiddleware",
    "backoffice.middleware.AuditPermissionDeniedMiddleware",
    # Axes documents that its middleware goes last.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "backoffice.urls"
WSGI_APPLICATION = "backoffice.wsgi.application"
ASGI_APPLICATION = "backoffice.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "backoffice.context_processors.backoffice",
            ],
            "string_if_invalid": "",
        },
    }
]

# --- authentication, sessions, lockout ---------------------------------------------------------
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # refuses locked-out usernames before anything else
    "django.contrib.auth.backends.ModelBackend",
    "guardian.backends.ObjectPermissionBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

# Idle timeout: every request pushes expiry 15 minutes ahead; 15 idle minutes end the session.
SESSION_IDLE_TIMEOUT_SECONDS = 15 * 60
SESSION_COOKIE_AGE = SESSION_IDLE_TIMEOUT_SECONDS
SESSION_SAVE_EVERY_REQUEST = True
SESSION_EXPIRE_AT_BROWSER_CLOSE = True
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_HTTPONLY = True

AXES_FAILURE_LIMIT = 10
AXES_COOLOFF_TIME = timedelta(minutes=30)
AXES_LOCKOUT_PARAMETERS = ["username"]  # a username is locked whichever address the guesses come from
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "auth/locked_out.html"
AXES_VERBOSE = False

ANONYMOUS_USER_NAME = None  # django-guardian: no anonymous object permissions
GUARDIAN_RAISE_403 = False

# --- security headers --------------------------------------------------------------------------
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}
SECURE_SSL_REDIRECT = config.env_bool(ENV, "SECURE_SSL_REDIRECT", PRODUCTION)
SESSION_COOKIE_SECURE = PRODUCTION
CSRF_COOKIE_SECURE = PRODUCTION
SECURE_HSTS_SECONDS = config.env_int(ENV, "SECURE_HSTS_SECONDS", 31_536_000 if PRODUCTION else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = PRODUCTION
SECURE_HSTS_PRELOAD = PRODUCTION
if config.env_bool(ENV, "TRUST_X_FORWARDED_PROTO", False):
    # Only behind a proxy that sets this header itself.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# --- i18n, time --------------------------------------------------------------------------------
LANGUAGE_CODE = "en"
USE_I18N = False
USE_TZ = True
TIME_ZONE = "UTC"

# --- static files ------------------------------------------------------------------------------
STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles" if PRODUCTION else BASE_DIR / "var" / "staticfiles"
if not PRODUCTION:
    STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # WhiteNoise warns about a missing root
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if PRODUCTION
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}
WHITENOISE_USE_FINDERS = not PRODUCTION  # development serves straight from static/

# --- logging -----------------------------------------------------------------------------------
LOG_LEVEL = config.env_choice(ENV, "LOG_LEVEL", ("debug", "info", "warning", "error"), "info").upper()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "audit.context.CorrelationIdLogFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(correlation_id)s] %(message)s"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["request_id"]},
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "pgserver": {"level": "WARNING"},
        "axes": {"level": "WARNING"},
    },
}

CSRF_FAILURE_VIEW = "backoffice.views.errors.csrf_failure"

# axes.W006 asks for IP-based lockout as well. Lockout here is per account by design: locking an
# address would lock out a whole office behind one NAT after ten typos. Guessing against one
# account from many addresses is still stopped, because the username locks whatever the address.
SILENCED_SYSTEM_CHECKS = ["axes.W006"]
