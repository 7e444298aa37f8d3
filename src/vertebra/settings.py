"""Django settings for Vertebra, read from the environment (see README "Configuration").

VERTEBRA_ENV selects the profile: ``development`` (default), ``demo``, ``test`` or
``production``. Production refuses to start with DEBUG on or without a real SECRET_KEY.
"""

from __future__ import annotations

from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from vertebra.config import (
    DEFAULT_DATABASE_TIMEOUT,
    INSECURE_DEFAULT_SECRET,
    ConfigurationError,
    check_trusted_proxies,
    current_env,
    database_from_url,
    default_data_dir,
    environment_name,
    read_bool,
    read_int,
    read_list,
    read_rate,
)

_env = current_env()
PACKAGE_DIR = Path(__file__).resolve().parent

try:
    VERTEBRA_ENV = environment_name(_env)
    PRODUCTION = VERTEBRA_ENV == "production"
    DEBUG = read_bool(_env, "DEBUG", default=VERTEBRA_ENV == "development")
    DATA_DIR = default_data_dir(_env)
    _default_db_url = f"sqlite:///{DATA_DIR / 'vertebra.sqlite3'}"
    DATABASE_TIMEOUT = read_int(_env, "DATABASE_TIMEOUT", DEFAULT_DATABASE_TIMEOUT)
    if not 1 <= DATABASE_TIMEOUT <= 60:
        raise ConfigurationError(
            f"DATABASE_TIMEOUT={DATABASE_TIMEOUT} is out of range; use 1 to 60 seconds"
        )
    _database = database_from_url(
        _env.get("DATABASE_URL") or _default_db_url, timeout=DATABASE_TIMEOUT
    )
    SESSION_COOKIE_AGE = read_int(_env, "SESSION_COOKIE_AGE", 30 * 60)
    # The analysis snapshot (ADR 0022): the dashboards, reports and the decision aid answer
    # from Parquet files the worker refreshes; pages state "as of" and the interval.
    SNAPSHOT_DIR = _env.get("SNAPSHOT_DIR", "") or str(DATA_DIR / "snapshot")
    SNAPSHOT_REFRESH_SECONDS = read_int(_env, "SNAPSHOT_REFRESH_SECONDS", 60)
    if not 1 <= SNAPSHOT_REFRESH_SECONDS <= 86_400:
        raise ConfigurationError(
            f"SNAPSHOT_REFRESH_SECONDS={SNAPSHOT_REFRESH_SECONDS} is out of range; "
            "use 1 to 86400 seconds"
        )
    # Build (or refresh) the snapshot during the request when the data changed: only for
    # tests and development, where no worker runs (a full read in a request otherwise).
    SNAPSHOT_BUILD_INLINE = read_bool(
        _env, "SNAPSHOT_BUILD_INLINE", default=VERTEBRA_ENV in ("development", "test")
    )
    # The worker builds the default-filter report of every scope a page can have right after
    # each new snapshot and stores it beside the snapshot (ADR 0022, amendment 8).
    SNAPSHOT_PREPARE_REPORTS = read_bool(_env, "SNAPSHOT_PREPARE_REPORTS", default=True)
    # A report of a scope of at most this many patients (one clinic) is built in the request
    # when it is not stored (at 1,000,000 patients ~0.7 s for 3,000 patients with the frames
    # loaded); a wider scope's filter is built by the worker and the page says so.
    SNAPSHOT_INLINE_MAX_PATIENTS = read_int(_env, "SNAPSHOT_INLINE_MAX_PATIENTS", 20_000)
    # How many asked-for reports one worker pass builds (oldest first): bounds a pass.
    SNAPSHOT_REQUESTS_PER_PASS = read_int(_env, "SNAPSHOT_REQUESTS_PER_PASS", 8)
    # Between refreshes the worker looks this often for filters pages asked for, and a page
    # waiting for one asks this often whether it is ready (then shows it).
    SNAPSHOT_REQUEST_POLL_SECONDS = read_int(_env, "SNAPSHOT_REQUEST_POLL_SECONDS", 2)
    if not 1 <= SNAPSHOT_REQUEST_POLL_SECONDS <= 600:
        raise ConfigurationError(
            f"SNAPSHOT_REQUEST_POLL_SECONDS={SNAPSHOT_REQUEST_POLL_SECONDS} is out of range; "
            "use 1 to 600 seconds"
        )
    EMAIL_PORT = read_int(_env, "EMAIL_PORT", 25)
    EMAIL_USE_TLS = read_bool(_env, "EMAIL_USE_TLS", default=False)
    ALLOWED_HOSTS = read_list(
        _env,
        "ALLOWED_HOSTS",
        [] if PRODUCTION else ["localhost", "127.0.0.1", "[::1]", "testserver"],
    )
    SECURE_SSL_REDIRECT = read_bool(_env, "SECURE_SSL_REDIRECT", default=PRODUCTION)
    # Perimeter (vertebra.perimeter): the client address behind the reverse proxy, the limits
    # shared by every server process, and the largest request body (see README).
    TRUSTED_PROXIES = read_list(_env, "TRUSTED_PROXIES", [])
    CLIENT_IP_HEADER = _env.get("CLIENT_IP_HEADER", "X-Forwarded-For").strip()
    THROTTLE_RATES = {
        scope: read_rate(_env, f"THROTTLE_{scope.upper()}", default)
        for scope, default in {
            "portal_link_failures": "20/m",
            "portal_link_opens": "10/m",
            "api_key": "300/m",
            "api_address": "600/m",
            "api_auth_failures": "20/m",
            "fhir_token": "300/m",
            "fhir_address": "600/m",
            "fhir_auth_token": "30/m",
        }.items()
    }
    THROTTLE_ENABLED = read_bool(_env, "THROTTLE_ENABLED", default=True)
    MAX_REQUEST_BODY_BYTES = read_int(_env, "MAX_REQUEST_BODY_BYTES", 1024 * 1024)
    if not 1024 <= MAX_REQUEST_BODY_BYTES <= 100 * 1024 * 1024:
        raise ConfigurationError(
            f"MAX_REQUEST_BODY_BYTES={MAX_REQUEST_BODY_BYTES} is out of range; "
            "use 1024 to 104857600"
        )
    check_trusted_proxies(TRUSTED_PROXIES)
    # Staff roles that must sign in with a second factor (TOTP) before any staff page (OWASP
    # ASVS 4.0.3 2.x / 5.0 6.3.3 L2: admins and researchers). Every other staff account may
    # enrol and is then asked for its code too. The local demo does not enforce it, so that
    # its printed logins work in any browser or screenshot tool (docs/security/mfa.md).
    MFA_REQUIRED_ROLES = tuple(
        read_list(
            _env,
            "MFA_REQUIRED_ROLES",
            [] if VERTEBRA_ENV == "demo" else ["registry_admin", "researcher"],
        )
    )
except ConfigurationError as exc:
    raise ImproperlyConfigured(str(exc)) from None

SECRET_KEY = _env.get("SECRET_KEY", "") or ("" if PRODUCTION else INSECURE_DEFAULT_SECRET)

if PRODUCTION:
    if DEBUG:
        raise ImproperlyConfigured(
            "DEBUG must be off in production (unset DEBUG or set DEBUG=false)"
        )
    if not SECRET_KEY or SECRET_KEY == INSECURE_DEFAULT_SECRET or len(SECRET_KEY) < 50:
        raise ImproperlyConfigured(
            "SECRET_KEY must be set to a random value of at least 50 characters in production"
        )
    if not ALLOWED_HOSTS:
        raise ImproperlyConfigured("ALLOWED_HOSTS must list this site's host names in production")
    if not {"registry_admin", "researcher"} <= set(MFA_REQUIRED_ROLES):
        raise ImproperlyConfigured(
            "MFA_REQUIRED_ROLES must include registry_admin and researcher in production"
        )

DATABASES = {"default": _database.settings}
DATABASE_DESCRIPTION = _database.description

# Django's own default (per-process memory). The public figures (decision aid, clinic
# directory) come from the analysis snapshot (ADR 0022), not from a cache.
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "axes",
    "ninja",
    "vertebra.perimeter",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "vertebra.web",
    "vertebra.registry",
    "vertebra.followup",
    "vertebra.outcomes",
    "vertebra.mfa",
    "vertebra.fhirbulk",
    "vertebra.directory",
]

MIDDLEWARE = [
    # Outermost, so it also sees writes committed by the session save (see web.unavailable).
    "vertebra.web.unavailable.CommittedWritesMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "vertebra.web.middleware.SecurityHeadersMiddleware",
    # 413 for oversized bodies before anything reads them; API rate limits (web.middleware).
    # Inside the header middlewares, so their refusals carry the same security headers.
    "vertebra.web.middleware.RequestSizeLimitMiddleware",
    "vertebra.web.middleware.ApiThrottleMiddleware",
    "vertebra.web.middleware.FhirThrottleMiddleware",
    "vertebra.web.middleware.ApiProblemMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Second factor: marks request.user verified from the session, then sends a signed-in
    # user who has not passed (or, in a required role, not set up) MFA to its pages.
    "django_otp.middleware.OTPMiddleware",
    "vertebra.mfa.middleware.MfaRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "vertebra.urls"
WSGI_APPLICATION = "vertebra.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "vertebra.web.context_processors.site",
                "vertebra.web.staff_nav.staff_navigation",
            ],
        },
    },
]

AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]

# Argon2id first: new and upgraded hashes use it (OWASP ASVS 2.4).
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 12},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# Brute-force protection: lock a username+IP pair after 5 failures for one hour.
AXES_FAILURE_LIMIT = read_int(_env, "AXES_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = 1
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_ENABLED = read_bool(_env, "AXES_ENABLED", default=True)
# The real client behind the trusted proxies (TRUSTED_PROXIES), never the proxy's address:
# otherwise every patient shares one address and one attacker locks a username for everyone.
AXES_CLIENT_IP_CALLABLE = "vertebra.perimeter.clientip.client_ip"
# Bodies above MAX_REQUEST_BODY_BYTES are refused with 413 by RequestSizeLimitMiddleware;
# Django's own cap (a 400) is set to the same figure for bodies it reads without a length.
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_REQUEST_BODY_BYTES

# TOTP (django-otp): the issuer name authenticator apps show; failed codes slow down
# exponentially per device (django-otp's throttling), on top of the login lockout.
OTP_TOTP_ISSUER = "Vertebra"

LOGIN_URL = "login"
# Staff land on their role's worklist (web/worklist_views.py); patients go on to the portal.
LOGIN_REDIRECT_URL = "staff-home"
LOGOUT_REDIRECT_URL = "home"

# Staff sessions expire after 30 idle minutes (sliding) and when the browser closes. The engine
# is Django's database sessions, saved in one statement, and an unchanged session only once
# a minute (vertebra.perimeter.sessions, ADR 0021 §7).
SESSION_ENGINE = "vertebra.perimeter.sessions"
SESSION_SAVE_EVERY_REQUEST = True
SESSION_EXPIRE_AT_BROWSER_CLOSE = True
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_SECURE = PRODUCTION
CSRF_COOKIE_SECURE = PRODUCTION
CSRF_COOKIE_HTTPONLY = True

SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if PRODUCTION else None
SECURE_HSTS_SECONDS = 31_536_000 if PRODUCTION else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = PRODUCTION
SECURE_HSTS_PRELOAD = PRODUCTION
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
)

LANGUAGE_CODE = "en-us"
TIME_ZONE = _env.get("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
# Only production collects static files; elsewhere whitenoise serves from the app folders.
_static_root = _env.get("STATIC_ROOT") or (str(DATA_DIR / "static") if PRODUCTION else "")
STATIC_ROOT = Path(_static_root) if _static_root else None
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
# Outside production whitenoise serves straight from the app folders: no collectstatic step.
WHITENOISE_USE_FINDERS = not PRODUCTION
WHITENOISE_AUTOREFRESH = DEBUG

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

EMAIL_BACKEND = _env.get(
    "EMAIL_BACKEND",
    "django.core.mail.backends.smtp.EmailBackend"
    if PRODUCTION or _env.get("EMAIL_HOST")
    else "django.core.mail.backends.console.EmailBackend",
)
EMAIL_HOST = _env.get("EMAIL_HOST", "localhost")
EMAIL_HOST_USER = _env.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = _env.get("EMAIL_HOST_PASSWORD", "")
DEFAULT_FROM_EMAIL = _env.get("DEFAULT_FROM_EMAIL", "Vertebra <no-reply@localhost>")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    # Patient-link tokens never reach a log (vertebra.perimeter.logredact): on the handler for
    # everything it writes, and on the loggers that print request paths for other handlers.
    "filters": {"redact_tokens": {"()": "vertebra.perimeter.logredact.RedactTokensFilter"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["redact_tokens"],
        }
    },
    "root": {"handlers": ["console"], "level": _env.get("LOG_LEVEL", "INFO")},
    "loggers": {
        "axes": {"level": "WARNING"},
        "django.request": {"filters": ["redact_tokens"]},
        "django.server": {"filters": ["redact_tokens"]},
    },
}

# Follow-up (vertebra.followup): reminder ladder in days after a window opens (day 0 is the
# invitation), days after the last reminder before a non-responder goes on the call list, and
# the public base URL put in front of the links in e-mails.
FOLLOWUP_REMINDER_LADDER = [
    int(day) for day in read_list(_env, "FOLLOWUP_REMINDER_LADDER", ["0", "3", "7"])
]
FOLLOWUP_CALL_AFTER_LAST_DAYS = read_int(_env, "FOLLOWUP_CALL_AFTER_LAST_DAYS", 3)
FOLLOWUP_PORTAL_BASE_URL = _env.get("FOLLOWUP_PORTAL_BASE_URL", "http://localhost:8000")

# Audit trail tamper evidence (ADR 0008). The MAC key never goes into the database: it is
# AUDIT_HMAC_KEY (hex, >= 32 bytes) or the key file (mode 0600; created on first use outside
# production, e.g. by `vertebra demo`; `vertebra audit keygen` in production). Retired keys
# (after `vertebra audit rotate-key`) stay verifiable: AUDIT_HMAC_OLD_KEYS or the
# audit-hmac.old-keys file beside the key file. Signed checkpoints of the chain head are
# appended to AUDIT_CHECKPOINT_FILE (and logged); the worker verifies the trail every
# AUDIT_VERIFY_EVERY_HOURS (0: never) and alerts the registry admins when it is not intact.
AUDIT_HMAC_KEY = _env.get("AUDIT_HMAC_KEY", "").strip()
# Bulk Data $export files, one folder per job (vertebra.fhirbulk.jobs).
FHIR_BULK_DIR = _env.get("FHIR_BULK_DIR", "") or str(DATA_DIR / "fhir-bulk")
# Hours a finished export's files stay for download (identified data; then removed).
FHIR_BULK_KEEP_HOURS = read_int(_env, "FHIR_BULK_KEEP_HOURS", 24)
AUDIT_HMAC_KEY_FILE = _env.get("AUDIT_HMAC_KEY_FILE", "") or str(DATA_DIR / "audit-hmac.key")
AUDIT_HMAC_OLD_KEYS = read_list(_env, "AUDIT_HMAC_OLD_KEYS", [])
AUDIT_HMAC_KEY_AUTOCREATE = not PRODUCTION
AUDIT_CHECKPOINT_FILE = _env.get("AUDIT_CHECKPOINT_FILE", "") or str(
    DATA_DIR / "audit-checkpoints.jsonl"
)
AUDIT_VERIFY_EVERY_HOURS = read_int(_env, "AUDIT_VERIFY_EVERY_HOURS", 24)
# A committed audit row is sealed (chained, ADR 0021) within this many seconds: after each
# audited commit, by the worker on every pass, and before verification; older unsealed rows
# are reported by `vertebra audit verify` as "unsealed".
AUDIT_SEAL_WITHIN_SECONDS = read_int(_env, "AUDIT_SEAL_WITHIN_SECONDS", 60)
# The sealer after a commit looks only at rows above the newest sealed id less this many (a
# cheap read); the worker's pass looks at every row.
AUDIT_SEAL_LOOKBACK_ROWS = read_int(_env, "AUDIT_SEAL_LOOKBACK_ROWS", 1000)
if PRODUCTION and not AUDIT_HMAC_KEY and not Path(AUDIT_HMAC_KEY_FILE).exists():
    raise ImproperlyConfigured(
        "the audit MAC key is required in production: set AUDIT_HMAC_KEY or create "
        f"{AUDIT_HMAC_KEY_FILE} with `vertebra audit keygen` (see docs/adr/0008)"
    )
# Transient database failures (deadlock, serialization failure) are retried this many times
# inside the service's transaction wrapper before they reach the user (docs/reliability.md).
TRANSACTION_RETRIES = read_int(_env, "TRANSACTION_RETRIES", 4)
