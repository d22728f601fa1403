"""Settings, read from the environment: safe development defaults, production with DEBUG=0."""

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from kombu import Queue

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("CAKESITE_VAR_DIR", BASE_DIR / "var"))


def envbool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    return default if value is None else value.strip().lower() in ("1", "true", "yes", "on")


def envint(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def envlist(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DEBUG = envbool("DEBUG", True)
SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off")
    SECRET_KEY = "django-insecure-development-only-key-do-not-use-in-production-0123456789"
# Earlier keys, while a new SECRET_KEY is rolled out: their signatures (sessions, reset links) and the
# backup codes made under them (services.backup_code_digest) still work.
SECRET_KEY_FALLBACKS = envlist("SECRET_KEY_FALLBACKS")
ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]" if DEBUG else "")
if not ALLOWED_HOSTS and not DEBUG:  # it would start, then answer every request with a 400
    raise ImproperlyConfigured("ALLOWED_HOSTS must be set when DEBUG is off (e.g. cakes.example.org)")
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS")
CSRF_FAILURE_VIEW = "classifier.views.csrf_failure"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "knox",  # API tokens, kept as hashes (classifier.models.ApiToken)
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI served from our static files, no CDN
    "axes",  # failed logins counted; password guessing locked out
    "django_otp",  # staff's second factor: an authenticator app's codes, and backup codes
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "django_otp.plugins.otp_email",  # the code e-mailed before an authenticator is set up (no sign-in factor)
    "classifier",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",  # the language: the visitor's choice, else the browser's
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",  # (request.user.is_verified(): signed in with a second factor)
    "classifier.middleware.AccountLanguageMiddleware",  # signed in: the account's language, if it chose
    "classifier.middleware.SignedInNeverCachedMiddleware",
    "classifier.middleware.BrowserTimeZoneMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "classifier.middleware.UploadTooLargeMiddleware",  # answers before any process_view reads a body
    "classifier.middleware.SignInFailuresMiddleware",  # so does this one
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "classifier.middleware.ServiceUnavailableMiddleware",
    "classifier.middleware.StaffSecondFactorMiddleware",  # (inside the one above: a database down is a 503)
    "axes.middleware.AxesMiddleware",  # last, as its documentation asks
]

# Content-Security-Policy on every response (django-csp), in development too, so that the browser
# tests see what production refuses: scripts from our own files only (the pages have no inline
# script), so an injected one does not run; photos shown from the site itself, and the upload
# page's previews from the browser's own copies (blob:). Inline styles stay allowed: the result's
# probability bars set their width in a style attribute (style-src-attr alone is too new for some
# browsers still in use), and the API docs have one style element.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'", "'unsafe-inline'"],
        "img-src": ["'self'", "data:", "blob:"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    },
}

ROOT_URLCONF = "cakesite.urls"
WSGI_APPLICATION = "cakesite.wsgi.application"

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
                "classifier.context_processors.photo_scope",
                "classifier.context_processors.second_factor",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.config(
        default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}", conn_max_age=envint("DB_CONN_MAX_AGE", 60),
        # A kept connection is checked before a request or task reuses it: after a database restart
        # each thread would otherwise fail once on the connection that was cut.
        conn_health_checks=envbool("DB_CONN_HEALTH_CHECKS", True),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # A database that hangs instead of refusing (a partition, a stopped server): a new connection
    # gives up after these seconds (unless DATABASE_URL says ?connect_timeout=), and the request
    # gets the 503 page instead of waiting as long.
    _options = DATABASES["default"].setdefault("OPTIONS", {})
    _options.setdefault("connect_timeout", envint("DB_CONNECT_TIMEOUT", 5))
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web process and the worker write at once: wait for the lock instead of failing.
    DATABASES["default"]["OPTIONS"] = {"timeout": 20, "transaction_mode": "IMMEDIATE"}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
    {"NAME": "classifier.accounts.EndAccessOnPasswordChange"},  # checks nothing: a hook
]
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # first: refuses a locked-out username and address
    "django.contrib.auth.backends.ModelBackend",
]
# Password guessing: after this many failures for one username from one address, that pair is
# locked out for the cool-off time (a 429 page), on the site's login, the admin's and the API's
# token endpoint alike. A success resets the count.
AXES_FAILURE_LIMIT = envint("LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = envint("LOGIN_COOLOFF_MINUTES", 15) / 60  # hours
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_DISABLE_ACCESS_LOG = True  # no record of each sign-in (who, from where, with what) kept for ever
# The client's address, for the lockout and the throttles alike. In production a proxy is in front
# (SECURE_PROXY_SSL_HEADER trusts it): the address is the one it appends to X-Forwarded-For, which a
# client cannot forge. Without a proxy (NUM_PROXIES=0), REMOTE_ADDR, whatever the headers say.
NUM_PROXIES = envint("NUM_PROXIES", 0 if DEBUG else 1)
AXES_CLIENT_IP_CALLABLE = "classifier.accounts.client_ip"
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
# Staff see everyone's photos and choose the model everyone is served: with STAFF_TWO_FACTOR (on in
# production) a staff account signs in with a code of an authenticator app (or a backup code) after
# its password, and sets one up the first time; until then its session opens nothing else, and its
# API token works only once one is set up (classifier.middleware, classifier.api.authentication).
STAFF_TWO_FACTOR = envbool("STAFF_TWO_FACTOR", not DEBUG)
STAFF_TOKEN_DAYS = max(0, envint("STAFF_TOKEN_DAYS", 30))  # a staff API token's life (0: for ever)
# API tokens (django-rest-knox): the database keeps a hash of each, so a copy of it (a backup, a
# leak) signs nobody in. An account has one for each program (POST /api/auth/token/ makes another),
# at most API_TOKENS_PER_ACCOUNT: making one more revokes the one used least recently. Any token
# stops working once API_TOKEN_IDLE_DAYS go by without a request that sends it.
KNOX_TOKEN_MODEL = "classifier.ApiToken"
MIGRATION_MODULES = {"knox": None}  # its migrations make a table for its own model, which ours replaces
REST_KNOX = {"TOKEN_TTL": None, "TOKEN_PREFIX": "kue_", "AUTH_HEADER_PREFIX": "Token"}
API_TOKENS_PER_ACCOUNT = max(1, envint("API_TOKENS_PER_ACCOUNT", 25))
API_TOKEN_IDLE_DAYS = max(0, envint("API_TOKEN_IDLE_DAYS", 365))  # unused this long, a token ends (0: never)
OTP_TOTP_ISSUER = os.environ.get("OTP_ISSUER", "cakesite")  # the name the authenticator app shows
# Setting an authenticator up on an account with an address first takes a code e-mailed to it (so the
# password alone does not let someone else set it up first): it works this long, and another is sent
# at most once a minute, EMAILS_PER_ADDRESS an hour.
OTP_EMAIL_TOKEN_VALIDITY = max(60, envint("OTP_EMAIL_TOKEN_VALIDITY", 600))  # seconds
OTP_ADMIN_HIDE_SENSITIVE_DATA = True  # the admin deletes a lost device; shows no secret or backup code
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "gallery"
LOGOUT_REDIRECT_URL = "home"

# E-mail: only links are sent, to confirm an address and to reset a forgotten password. Without
# EMAIL_HOST the messages are written to the log (development); production sets it (`manage.py
# check --deploy` warns otherwise).
EMAIL_HOST = os.environ.get("EMAIL_HOST", "")
EMAIL_BACKEND = ("django.core.mail.backends.smtp.EmailBackend" if EMAIL_HOST
                 else "django.core.mail.backends.console.EmailBackend")
EMAIL_PORT = envint("EMAIL_PORT", 587)
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = envbool("EMAIL_USE_TLS", True)
EMAIL_TIMEOUT = envint("EMAIL_TIMEOUT", 10)  # seconds: a hung mail server must not hold a request
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "cakesite <noreply@localhost>")
PASSWORD_RESET_TIMEOUT = envint("PASSWORD_RESET_TIMEOUT", 3600)  # seconds a reset link works
EMAIL_CONFIRM_TIMEOUT = envint("EMAIL_CONFIRM_TIMEOUT", 3 * 86400)  # seconds a confirmation link works
EMAILS_PER_ADDRESS = envint("EMAILS_PER_ADDRESS", 3)  # of each kind an hour, whoever asks
EMAIL_LINKS_PER_ACCOUNT = envint("EMAIL_LINKS_PER_ACCOUNT", 5)  # confirmation links an account asks, an hour

# The site speaks English and Indonesian: the language chosen at the foot of each page (a cookie),
# else the one the browser asks for first, else English. The API answers in the Accept-Language
# header's. Translations are in locale/ (`make messages` finds new text and compiles them).
LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("id", "Bahasa Indonesia")]
LOCALE_PATHS = [BASE_DIR / "locale"]
LANGUAGE_COOKIE_AGE = 365 * 86400
LANGUAGE_COOKIE_HTTPONLY = True
LANGUAGE_COOKIE_SAMESITE = "Lax"
FORMAT_MODULE_PATH = "cakesite.formats"  # the admin's dates as the pages write them
TIME_ZONE = "UTC"  # what is stored, what the API answers in, and pages for a browser that names no zone
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "staticfiles"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # whitenoise serves from here; collectstatic fills it
MEDIA_URL = "media/"
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", VAR_DIR / "media"))
STORAGES = {
    "default": {"BACKEND": "classifier.storage.WholeFileSystemStorage"},  # no half-written files
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

# Uploads: refuse what no cake photo needs before Pillow sees it.
MAX_UPLOAD_BYTES = envint("MAX_UPLOAD_BYTES", 15 * 1024 * 1024)
MAX_IMAGE_PIXELS = envint("MAX_IMAGE_PIXELS", 40_000_000)
DATA_UPLOAD_MAX_MEMORY_SIZE = 2_621_440
FILE_UPLOAD_MAX_MEMORY_SIZE = 2_621_440
MAX_FILES_PER_UPLOAD = envint("MAX_FILES_PER_UPLOAD", 20)
# One more than we take, so the form or the API says "at most N" instead of Django's bare 400.
DATA_UPLOAD_MAX_NUMBER_FILES = MAX_FILES_PER_UPLOAD + 1
# The photos one account may keep (0: no limit): the upload throttle only slows an account that
# would fill the disk; this bounds what it can hold (each photo at most MAX_UPLOAD_BYTES, plus its
# copies).
MAX_PHOTOS_PER_ACCOUNT = envint("MAX_PHOTOS_PER_ACCOUNT", 10_000)

# Throttle counters must be shared by every web process: Redis when there is one.
CACHE_URL = os.environ.get("CACHE_URL", "")
CACHES = {
    "default": {"BACKEND": "cakesite.cache.RedisCache", "LOCATION": CACHE_URL,  # fails open, leaner
                "KEY_PREFIX": os.environ.get("CACHE_KEY_PREFIX", ""),  # several sites on one Redis
                "OPTIONS": {"socket_timeout": 1, "socket_connect_timeout": 1}}  # a hung Redis
    if CACHE_URL.startswith("redis")
    else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
}

# The REST API (/api/): token or session auth, throttled, paginated, documented by drf-spectacular.
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "classifier.api.authentication.TokenAuthentication",  # knox's, and a staff account's second factor
        "classifier.api.authentication.SessionAuthentication",  # DRF's, with its own code for a CSRF refusal
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # JSON only, errors included, whatever the client accepts (the browsable API answered a browser's
    # errors as HTML pages); people read the API at /api/docs/.
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "classifier.api.pagination.StableOrderingFilter",
    ],
    "DEFAULT_PAGINATION_CLASS": "classifier.api.pagination.PageNumberPagination",
    "DEFAULT_THROTTLE_CLASSES": [
        "rest_framework.throttling.AnonRateThrottle",
        "rest_framework.throttling.UserRateThrottle",
        "rest_framework.throttling.ScopedRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "anon": os.environ.get("THROTTLE_ANON", "60/minute"),
        "user": os.environ.get("THROTTLE_USER", "1200/minute"),
        "uploads": os.environ.get("THROTTLE_UPLOADS", "120/minute"),
        "token": os.environ.get("THROTTLE_TOKEN", "10/minute"),
        "signup": os.environ.get("THROTTLE_SIGNUP", "10/hour"),  # new accounts per client address
        "signup_attempts": os.environ.get("THROTTLE_SIGNUP_ATTEMPTS", "60/hour"),  # forms sent, per address
        "password_reset": os.environ.get("THROTTLE_PASSWORD_RESET", "5/hour"),  # requests per address
        "sign_in_failures": os.environ.get("THROTTLE_SIGN_IN_FAILURES", "60/hour"),  # per address
    },
    "NUM_PROXIES": NUM_PROXIES,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "classifier.api.errors.exception_handler",
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Cakesite API",
    "DESCRIPTION": "Upload cake photos, read their predictions, confirm or correct labels.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "OAS_VERSION": "3.1.0",  # (3.0's `nullable` beside a $ref means nothing to strict validators)
    "COMPONENT_SPLIT_PATCH": False,  # PATCH /api/account/ takes its two fields, both required
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums",
                             "classifier.api.schema.document_every_operation"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# How many requests one user may hold open waiting for results at once (`?wait=`); beyond it, a 429:
# one user cannot take every web thread. The upload page waits on two at a time.
LONG_POLLS_PER_USER = envint("LONG_POLLS_PER_USER", 4)
# And how many one web process holds open, all users together: keep it below the process's threads
# (8 in the Dockerfile and Compose), so that other pages are served while many wait on a backlog.
LONG_POLLS_PER_PROCESS = envint("LONG_POLLS_PER_PROCESS", 4)

# Below this confidence the site says plainly that the model is unsure instead of naming a cake.
UNSURE_BELOW = float(os.environ.get("UNSURE_BELOW", "0.6"))

# The model shipped in the repository; registered as the first active version by a migration.
MODELS_DIR = Path(os.environ.get("CAKESITE_MODELS_DIR", BASE_DIR / "models"))
SHIPPED_MODEL = os.environ.get("CAKESITE_SHIPPED_MODEL", "kue-mobilenetv2")
# The base training photos, needed only by the full retraining mode.
TRAINING_DATA_DIR = Path(os.environ.get("CAKESITE_TRAINING_DATA_DIR",
                                        BASE_DIR.parent / "shared" / "data" / "kue-indonesia" / "train"))
FULL_RETRAIN_EPOCHS = envint("FULL_RETRAIN_EPOCHS", 8)
# Auto-activation compares the new and the active version on the held-out user photos: on a handful,
# one photo decides, which is luck, not a better model.
AUTO_ACTIVATE_MIN_HELDOUT = envint("AUTO_ACTIVATE_MIN_HELDOUT", 20)
# The fixed benchmark every new version is measured on (never trained on); optional.
BENCHMARK_DIR = Path(os.environ.get("CAKESITE_BENCHMARK_DIR",
                                    BASE_DIR.parent / "shared" / "data" / "kue-indonesia" / "test"))

# Celery: Redis in production and CI; with no URL set, a broker that needs no server
# (kombu's filesystem transport under var/), so `make run` works on a bare machine.
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "filesystem://localhost//")  # (no host: kombu warns)
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = VAR_DIR / "broker"
    for _sub in ("queue", "processed", "control"):  # kombu expects the folders to exist
        (_broker_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
        "polling_interval": 0.1,  # (kombu's default, 1 s, had a worker take one photo a second)
    }
    CELERY_BROKER_TRANSPORT = "cakesite.broker:Transport"  # sees Ctrl-C within 0.2 s, not 2 to 4
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        # A task not acknowledged within this time is handed to another worker: above the
        # longest hard time limit, so a slow task is never run twice at once.
        "visibility_timeout": 3 * 3600,
        # A broker that hangs (a partition, a stopped server) instead of refusing: a publish gives
        # up after these seconds (tries) and the upload is stored queued for the sweep, instead of
        # holding its web thread for as long as the hang lasts.
        "socket_timeout": 2,
        "socket_connect_timeout": 2,
    }
CELERY_TASK_IGNORE_RESULT = True  # results live in the database, not the broker
CELERY_TASK_ACKS_LATE = True  # a task is acknowledged when done, so a crash re-delivers it
CELERY_TASK_REJECT_ON_WORKER_LOST = True  # ...including a worker killed mid-task
CELERY_WORKER_PREFETCH_MULTIPLIER = 1  # long tasks: do not hoard messages
CELERY_WORKER_PROC_ALIVE_TIMEOUT = 60  # each process loads the model (seconds) before it reports up
CELERY_WORKER_TIMER_PRECISION = 0.1  # the timer thread, joined at shutdown, sleeps at most this (1 s)
CELERY_TASK_TIME_LIMIT = envint("CELERY_TASK_TIME_LIMIT", 120)
CELERY_TASK_SOFT_TIME_LIMIT = envint("CELERY_TASK_SOFT_TIME_LIMIT", 90)
CELERY_TASK_DEFAULT_QUEUE = os.environ.get("CELERY_QUEUE", "celery")  # classification
# E-mails and training have queues of their own, named after it (sites sharing one Redis each set
# their own CELERY_QUEUE, and no site's worker takes another's e-mails or runs). The classification
# worker takes the e-mails' too (-Q celery,celery.email, or no -Q at all): a worker takes turns
# between its queues, so a link waits for the photo in hand at most, never behind a backlog of
# photos. Training has its own worker (-Q celery.training).
EMAIL_QUEUE = f"{CELERY_TASK_DEFAULT_QUEUE}.email"
TRAINING_QUEUE = f"{CELERY_TASK_DEFAULT_QUEUE}.training"
CELERY_TASK_QUEUES = [Queue(CELERY_TASK_DEFAULT_QUEUE), Queue(EMAIL_QUEUE)]
CELERY_TASK_ROUTES = {"classifier.tasks.train_model": {"queue": TRAINING_QUEUE},
                      "classifier.tasks.send_password_reset": {"queue": EMAIL_QUEUE},
                      "classifier.tasks.send_email_confirmation": {"queue": EMAIL_QUEUE},
                      "classifier.tasks.send_email_changed_notice": {"queue": EMAIL_QUEUE},
                      "classifier.tasks.send_second_factor_notice": {"queue": EMAIL_QUEUE},
                      "classifier.tasks.send_second_factor_code": {"queue": EMAIL_QUEUE}}
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_WORKER_REDIRECT_STDOUTS_LEVEL = "INFO"  # what prints (the console e-mail backend's) is no warning
# A broker connection lost mid-task lets the task go on (its message is redelivered only after the
# visibility timeout; every task is safe to run twice). Celery 6 would cancel it by default.
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = False
# Celery's Django fixup closes the database connection around every task unless this is set, so each
# photo paid for a new PostgreSQL backend. Set, it recycles only after this many tasks;
# classifier.tasks checks the connection around each task as Django does around each request.
CELERY_DB_REUSE_MAX = envint("CELERY_DB_REUSE_MAX", 10_000)
# The sweep (classifier.tasks.requeue_stuck), run by Celery beat and at every worker start, sends
# again what waited longer than REQUEUE_AFTER_S: work lost with a killed worker or never sent while
# the broker was down. Above the classification time limit, so running work is not sent twice.
REQUEUE_AFTER_S = envint("REQUEUE_AFTER_S", 180)
# A photo whose classification was started this many times without an end (its worker died on it
# each time) fails instead of being sent again: one that kills its worker would do so for ever. Keep
# it above 4: one delivery's retries on a lost database start it up to 4 times.
CLASSIFY_MAX_STARTS = envint("CLASSIFY_MAX_STARTS", 5)
TRAINING_TIME_LIMIT_S = envint("TRAINING_TIME_LIMIT_S", 3600)
CELERY_BEAT_SCHEDULE = {
    "requeue-stuck-work": {"task": "classifier.tasks.requeue_stuck",
                           "schedule": float(envint("SWEEP_INTERVAL_S", 60))},
    "remove-expired": {"task": "classifier.tasks.remove_expired", "schedule": 3600.0},
}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A worker keeps reconnecting however long the broker is away (Celery's default gives up after 100
# tries, some 45 minutes, and the worker exits, taking the embedded beat and its sweep with it).
CELERY_BROKER_CONNECTION_MAX_RETRIES = None

# Production: everything `manage.py check --deploy` asks for, behind a TLS-terminating proxy.
if not DEBUG:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = envbool("SECURE_SSL_REDIRECT", True)
    if not SECURE_SSL_REDIRECT:  # the proxy in front redirects to HTTPS (documented in the README)
        SILENCED_SYSTEM_CHECKS = ["security.W008"]
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    LANGUAGE_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = envint("SECURE_HSTS_SECONDS", 31_536_000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_CONTENT_TYPE_NOSNIFF = True
    SECURE_REFERRER_POLICY = "same-origin"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"()": "cakesite.accesslog.RedactingFormatter",  # (reset links' tokens)
                             "format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {
        "axes": {"level": "WARNING"},  # lockouts, not every successful login
        # to the root's handler only: Django's own (in DEBUG) printed each of its lines twice
        "django": {"handlers": [], "level": "INFO", "propagate": True},
    },
}
