"""Settings shared by every environment. Every knob comes from `energybox.env`.

With no variables set, the embedded defaults apply: SQLite, the in-memory channel
layer, and Celery tasks run in-process.
"""

from __future__ import annotations

from pathlib import Path

import dj_database_url

from energybox import env
from energybox.oidc import lazy_private_key_pem
from integrations.scopes import ALL_SCOPES, API_SCOPES

BASE_DIR = Path(__file__).resolve().parent.parent.parent
DATA_DIR = env.path("ENERGYBOX_DATA_DIR", BASE_DIR / "data")

SECRET_KEY = env.str_("DJANGO_SECRET_KEY", "insecure-dev-key-change-me-in-production")
DEBUG = env.bool_("DJANGO_DEBUG", False)
ALLOWED_HOSTS = env.list_("DJANGO_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list_("DJANGO_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "oauth2_provider",
    "accounts",
    "devices",
    "readings",
    "firmware",
    "gateway",
    "portal",
    "integrations",
    "auditlog",
    "billing",
    "consumer",
    "alerts",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "portal.middleware.UserLanguageMiddleware",
    "auditlog.middleware.AuditlogMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "energybox.urls"
ASGI_APPLICATION = "energybox.asgi.application"
WSGI_APPLICATION = None

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
                "portal.context_processors.navigation",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------
# DATABASE_URL selects PostgreSQL in production; the embedded default is SQLite.
DATABASE_URL = env.str_("DATABASE_URL", f"sqlite:///{DATA_DIR / 'energybox.sqlite3'}")
DATABASES = {
    "default": dj_database_url.parse(
        DATABASE_URL,
        conn_max_age=env.int_("DATABASE_CONN_MAX_AGE", 60),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the web server read while the gateway and worker write.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# DATABASE_REPLICA_URL names a PostgreSQL streaming replica of DATABASE_URL: the reads of web requests
# (series, dashboards, bills, exports) go there while its replay lag is within DATABASE_REPLICA_MAX_LAG_S,
# and a user who wrote reads the primary for DATABASE_REPLICA_STICKY_S (energybox/dbrouters.py). Off by default.
DATABASE_REPLICA_URL = env.str_("DATABASE_REPLICA_URL", "")
DATABASE_REPLICA_MAX_LAG_S = float(env.int_("DATABASE_REPLICA_MAX_LAG_S", 5))
DATABASE_REPLICA_STICKY_S = env.int_("DATABASE_REPLICA_STICKY_S", 10)
DATABASE_REPLICA_CHECK_S = float(env.int_("DATABASE_REPLICA_CHECK_S", 1))
DATABASE_REPLICA_APPS = frozenset(env.list_("DATABASE_REPLICA_APPS", ["readings", "billing", "devices"]))
DATABASE_ROUTERS: list[str] = []
if DATABASE_REPLICA_URL:
    DATABASES["replica"] = dj_database_url.parse(
        DATABASE_REPLICA_URL, conn_max_age=env.int_("DATABASE_CONN_MAX_AGE", 60), conn_health_checks=True
    )
    # Tests read the replica as the test database it mirrors.
    DATABASES["replica"]["TEST"] = {"MIRROR": "default"}
    DATABASE_ROUTERS = ["energybox.dbrouters.ReplicaRouter"]
    MIDDLEWARE.insert(
        MIDDLEWARE.index("django.contrib.auth.middleware.AuthenticationMiddleware") + 1,
        "energybox.dbrouters.ReplicaReadsMiddleware",
    )

AUTH_USER_MODEL = "accounts.User"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "portal:login"
LOGIN_REDIRECT_URL = "portal:home"
LOGOUT_REDIRECT_URL = "portal:login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
LANGUAGES = [("de", "Deutsch"), ("en", "English")]
LOCALE_PATHS = [BASE_DIR / "locale"]
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = env.path("DJANGO_STATIC_ROOT", BASE_DIR / "staticfiles")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# --- Channel layer ----------------------------------------------------------------
REDIS_URL = env.str_("REDIS_URL", "")
if REDIS_URL:
    # Redis pub/sub, not the list-based `channels_redis.core` layer: a live message is pushed to
    # every subscribed process in one PUBLISH, where the core layer costs four round trips to send
    # and three more, one after another, for every message a process receives. Under the live
    # benchmark's load (1,000 devices, 50 dashboards) that made the core layer's p95 430 ms against
    # 34 ms here (docs/decisions/0004-live-channel-layer-redis-pubsub.md). Live data is
    # at-most-once by nature: what nobody is subscribed to is not kept.
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL], "prefix": env.str_("CHANNEL_LAYER_PREFIX", "energybox")},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# --- Live dashboards ----------------------------------------------------------------
# A websocket client gets one message per device per this many seconds of the device's samples;
# faster senders are merged, and two messages of a device are never sent within a quarter of it.
# How often an open websocket re-checks its OAuth bearer token (revoked, scope removed), in seconds.
LIVE_TOKEN_RECHECK_S = float(env.str_("LIVE_TOKEN_RECHECK_S", "60") or "60")
LIVE_DEVICE_INTERVAL_S = float(env.str_("LIVE_DEVICE_INTERVAL_S", "2") or "2")
# A live viewer keeps its devices live with a lease of LIVE_DEMAND_LEASE_S seconds, renewed every
# LIVE_DEMAND_HEARTBEAT_S (portal.livedemand); a crashed web process's leases simply run out.
LIVE_DEMAND_LEASE_S = float(env.str_("LIVE_DEMAND_LEASE_S", "30") or "30")
LIVE_DEMAND_HEARTBEAT_S = float(env.str_("LIVE_DEMAND_HEARTBEAT_S", "10") or "10")
# Websocket auth middlewares (dotted paths), inside the session's AuthMiddlewareStack. The default
# accepts the API's OAuth 2.0 bearer tokens (`Authorization: Bearer …`, scope readings:read).
WEBSOCKET_AUTH_MIDDLEWARE: list[str] = env.list_(
    "WEBSOCKET_AUTH_MIDDLEWARE", ["integrations.websocket.BearerTokenMiddleware"]
)

# --- Celery -------------------------------------------------------------------------
CELERY_BROKER_URL = env.str_("CELERY_BROKER_URL", "")
CELERY_TASK_ALWAYS_EAGER = not CELERY_BROKER_URL
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_RESULT_BACKEND = env.str_("CELERY_RESULT_BACKEND", "rpc://" if CELERY_BROKER_URL else "")
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = env.int_("CELERY_PREFETCH_MULTIPLIER", 4)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TIMEZONE = "UTC"
if CELERY_BROKER_URL.startswith(("amqp://", "amqps://", "pyamqp://")):
    # Every publish waits for RabbitMQ's confirm: the gateway acks a device only after it.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"confirm_publish": True}
# Ingest has its own durable queue, so its prefetch and workers can be tuned apart from other tasks.
CELERY_TASK_ROUTES = {"readings.ingest": {"queue": "readings"}}
# On RabbitMQ the queues are quorum queues (replicated over the cluster's nodes, Raft): a classic
# queue lives on one node and dies with it. A message that can never be stored (malformed, unknown
# version) is dead-lettered into `readings.dead` instead of dropped (docs/operations.md, "Queue").
# ENERGYBOX_QUEUE_TYPE=classic keeps classic queues (a single node).
QUEUE_TYPE = env.str_("ENERGYBOX_QUEUE_TYPE", "quorum")
if CELERY_BROKER_URL.startswith(("amqp://", "amqps://", "pyamqp://")):
    from kombu import Exchange, Queue

    _replicated = {"x-queue-type": "quorum"} if QUEUE_TYPE == "quorum" else {}
    _ingest_arguments = {"x-dead-letter-exchange": "readings.dead", "x-dead-letter-routing-key": "readings.dead"}
    if QUEUE_TYPE == "quorum":
        # At-least-once dead-lettering: a dead letter is confirmed by its queue before it leaves ours.
        _ingest_arguments |= {**_replicated, "x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish"}
    # Topic exchanges: Celery's native delayed delivery (retries with a countdown on quorum queues)
    # only routes through topic exchanges. Named apart from the direct exchanges older deployments
    # declared (`readings`, `celery`), which would refuse a redeclaration with another type.
    CELERY_TASK_QUEUES = [
        Queue(
            "readings",
            Exchange("readings.ingest", type="topic"),
            routing_key="readings",
            queue_arguments=_ingest_arguments,
        ),
        Queue("celery", Exchange("celery.tasks", type="topic"), routing_key="celery", queue_arguments=_replicated),
    ]
CELERY_BEAT_SCHEDULE = {
    "readings-rollups": {"task": "readings.rollups_refresh", "schedule": 10.0},
    "readings-compact": {"task": "readings.compact", "schedule": 300.0},
    "readings-rollups-pack": {"task": "readings.rollups_pack", "schedule": 300.0},
    "readings-retention": {"task": "readings.retention", "schedule": 3600.0},
    "readings-partitions": {"task": "readings.partitions_ensure", "schedule": 3600.0},
    # Proof for /healthz that beat schedules and a worker runs (readings/health.py).
    "readings-heartbeat": {"task": "readings.heartbeat", "schedule": 10.0},
    "oauth-clear-expired-tokens": {"task": "integrations.clear_expired_tokens", "schedule": 3600.0},
    "firmware-rollouts-advance": {"task": "firmware.rollouts_advance", "schedule": 5.0},
    # Issues last month's bills once it has ended in each facility's zone; re-issues on late data.
    "billing-issue-bills": {"task": "billing.issue_bills", "schedule": 3600.0},
    # Stores the facilities' 15-minute demand and peaks as their rollups settle (billing.services.demand_settle).
    "billing-demand-settle": {"task": "billing.demand_settle", "schedule": 60.0},
    "gateway-presence-sweep": {"task": "gateway.presence_sweep", "schedule": 30.0},
    # Offline devices, reminders and de-escalation: the alert rules that time, not readings, trips.
    "alerts-sweep": {"task": "alerts.sweep", "schedule": 30.0},
}
# Readings stamped further ahead of the gateway's clock than this are refused (NACK BAD_BATCH): a
# device clock gone wrong. A few minutes of skew are allowed; a device re-syncs with TIME_REQUEST.
READINGS_MAX_FUTURE_S = float(env.int_("READINGS_MAX_FUTURE_S", 300))
# How long an ingest task waits out a database outage before it hands its message back to the broker.
READINGS_DATABASE_WAIT_S = float(env.int_("READINGS_DATABASE_WAIT_S", 300))
# Months of bucket and rollup partitions the beat task keeps created ahead of the current one (PostgreSQL).
READINGS_PARTITIONS_AHEAD_MONTHS = env.int_("READINGS_PARTITIONS_AHEAD_MONTHS", 2)

# --- Alerts ------------------------------------------------------------------------
# Hosts (or host:port) a webhook may name although they are private or loopback, or reached over http.
ALERTS_WEBHOOK_ALLOWED_HOSTS = env.list_("ALERTS_WEBHOOK_ALLOWED_HOSTS")
# Webhook deliveries: attempts in all, and the first retry's delay (doubled at each retry).
ALERTS_WEBHOOK_MAX_ATTEMPTS = env.int_("ALERTS_WEBHOOK_MAX_ATTEMPTS", 8)
ALERTS_WEBHOOK_BACKOFF_S = float(env.int_("ALERTS_WEBHOOK_BACKOFF_S", 10))
ALERTS_WEBHOOK_TIMEOUT_S = float(env.int_("ALERTS_WEBHOOK_TIMEOUT_S", 5))
# How long an ingest worker keeps its compiled rule lookup before reading the rules again.
ALERTS_RULE_CACHE_S = float(env.int_("ALERTS_RULE_CACHE_S", 10))
# The backstop: an ingest worker rebuilds its rule lookup at least this often even if nothing it can see changed.
ALERTS_RULE_REBUILD_S = float(env.int_("ALERTS_RULE_REBUILD_S", 600))

# --- Gateway and firmware ---------------------------------------------------------
# Where `manage.py rungateway` listens and the simulator connects.
GATEWAY_HOST = env.str_("ENERGYBOX_GATEWAY_HOST", "127.0.0.1")
GATEWAY_PORT = env.int_("ENERGYBOX_GATEWAY_PORT", 7800)
# TLS certificate and key (PEM). Empty: a development certificate is generated into DATA_DIR.
GATEWAY_TLS_CERT = env.str_("ENERGYBOX_GATEWAY_TLS_CERT", "")
GATEWAY_TLS_KEY = env.str_("ENERGYBOX_GATEWAY_TLS_KEY", "")
# Live on demand (gateway.livemode): a watched device sends 2-s frames; it goes back to batching
# this many seconds after its last viewer left.
GATEWAY_LIVE_HOLD_OVER_S = float(env.str_("ENERGYBOX_GATEWAY_LIVE_HOLD_OVER_S", "60") or "60")
# Ed25519 firmware-signing key (PEM or 64 hex digits). Empty: generated once into DATA_DIR.
FIRMWARE_SIGNING_KEY = env.str_("ENERGYBOX_FIRMWARE_SIGNING_KEY", "")
# Several gateways share device ownership through Redis (gateway/cluster.py) under this key prefix.
GATEWAY_CLUSTER_PREFIX = env.str_("ENERGYBOX_GATEWAY_CLUSTER_PREFIX", "energybox")
# A device still "online" whose last frame is older than this was held by a gateway that died
# (SIGKILL): the presence sweep marks it offline. Above the idle timeout (120 s), since a connected
# device sends a frame at least that often or is dropped.
PRESENCE_SWEEP_AGE_S = env.int_("ENERGYBOX_PRESENCE_SWEEP_AGE_S", 180)

# --- Cache (API throttling) -------------------------------------------------------------
# Throttle counters must be shared by every web process in production: point CACHE_URL at Redis.
CACHE_URL = env.str_("CACHE_URL", "")
CACHES = {
    "default": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CACHE_URL, "KEY_PREFIX": "energybox"}
        if CACHE_URL
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    )
}

# --- E-mail (invitations) ----------------------------------------------------------------
# Django's SMTP backend; the embedded default prints mails to the console.
EMAIL_BACKEND = env.str_("EMAIL_BACKEND") or "django.core.mail.backends.console.EmailBackend"
EMAIL_HOST = env.str_("EMAIL_HOST", "localhost")
EMAIL_PORT = env.int_("EMAIL_PORT", 25)
EMAIL_HOST_USER = env.str_("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env.str_("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env.bool_("EMAIL_USE_TLS", False)
DEFAULT_FROM_EMAIL = env.str_("DEFAULT_FROM_EMAIL", "Energybox <noreply@localhost>")

# --- OAuth 2.0 / OpenID Connect provider (/o/) -----------------------------------------
# Swapped before the first oauth2_provider migration: every application belongs to a tenant.
OAUTH2_PROVIDER_APPLICATION_MODEL = "integrations.Application"
OAUTH2_PROVIDER = {
    "SCOPES": ALL_SCOPES,
    "DEFAULT_SCOPES": list(API_SCOPES),
    "SCOPES_BACKEND_CLASS": "integrations.oauth.ApplicationScopes",
    "OAUTH2_VALIDATOR_CLASS": "integrations.oauth.EnergyboxOAuth2Validator",
    "APPLICATION_ADMIN_CLASS": "integrations.admin.TenantApplicationAdmin",
    "ACCESS_TOKEN_EXPIRE_SECONDS": env.int_("OAUTH_ACCESS_TOKEN_EXPIRE_SECONDS", 3600),
    "REFRESH_TOKEN_EXPIRE_SECONDS": env.int_("OAUTH_REFRESH_TOKEN_EXPIRE_SECONDS", 30 * 24 * 3600),
    "AUTHORIZATION_CODE_EXPIRE_SECONDS": 60,
    "ROTATE_REFRESH_TOKEN": True,
    "REFRESH_TOKEN_REUSE_PROTECTION": True,
    "PKCE_REQUIRED": True,
    "COMPLIANT_BCP_RFC9700_PKCE_METHOD": True,
    "COMPLIANT_BCP_RFC9700_IMPLICIT_GRANT": True,
    "COMPLIANT_BCP_RFC9700_PASSWORD_GRANT": True,
    # Bearer tokens only in the Authorization header (also enforced in integrations.oauth, for /o/userinfo/).
    "COMPLIANT_BCP_RFC9700_ACCESS_TOKEN_TRANSPORT": True,
    "OIDC_ENABLED": True,
    "OIDC_RSA_PRIVATE_KEY": lazy_private_key_pem(),
    # Retired keys stay published in the JWKS (never used to sign) while tokens they signed live on.
    "OIDC_RSA_PRIVATE_KEYS_INACTIVE": [
        Path(path).read_text() for path in env.list_("OIDC_RSA_PRIVATE_KEYS_INACTIVE_FILES", [])
    ],
    "OIDC_RESPONSE_TYPES_SUPPORTED": ["code"],
    "OAUTH2_RESPONSE_TYPES_SUPPORTED": ["code"],
    "OAUTH2_GRANT_TYPES_SUPPORTED": ["authorization_code", "client_credentials", "refresh_token"],
    "ALLOWED_REDIRECT_URI_SCHEMES": env.list_("OAUTH_ALLOWED_REDIRECT_URI_SCHEMES", ["http", "https"]),
    # Introspection is open to any client of the platform with a valid token or credentials.
    "REQUEST_APPROVAL_PROMPT": "auto",
}

# Portal sign-in through an OIDC provider (this platform's /o/, possibly on another host).
# Register the client with `manage.py oauth_application --platform --redirect-uri .../login/sso/callback/`.
ENERGYBOX_SSO_ISSUER = env.str_("ENERGYBOX_SSO_ISSUER", "")
# The consumer app's redirect URIs beyond the loopback ones, e.g. https://energybox.example.com/app/.
ENERGYBOX_APP_REDIRECT_URIS = env.list_("ENERGYBOX_APP_REDIRECT_URIS", [])
ENERGYBOX_SSO_CLIENT_ID = env.str_("ENERGYBOX_SSO_CLIENT_ID", "")
ENERGYBOX_SSO_CLIENT_SECRET = env.str_("ENERGYBOX_SSO_CLIENT_SECRET", "")

# --- Integrator API (/api/v1/) ------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["oauth2_provider.contrib.rest_framework.OAuth2Authentication"],
    "DEFAULT_PERMISSION_CLASSES": ["integrations.api.permissions.HasTenantScope"],
    "DEFAULT_THROTTLE_CLASSES": ["integrations.api.throttling.ClientRateThrottle"],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "integrations.api.pagination.IdCursorPagination",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "integrations.api.errors.exception_handler",
    "UNAUTHENTICATED_USER": None,
    "PAGE_SIZE": 100,
}
# Requests per client application (or per user for portal sessions), e.g. 600/min.
API_THROTTLE_RATE = env.str_("API_THROTTLE_RATE", "1200/min")
# Refused device registrations (a serial that cannot be registered) per client application, e.g. 20/hour.
API_SERIAL_REFUSAL_RATE = env.str_("API_SERIAL_REFUSAL_RATE", "20/hour")
# Household sign-up attempts per IP address (the public /signup/ page), e.g. 10/hour.
SIGNUP_RATE = env.str_("SIGNUP_RATE", "10/hour")

SPECTACULAR_SETTINGS = {
    "TITLE": "Energybox integrator API",
    "DESCRIPTION": "Tenant-scoped fleet and readings API. Authenticate with an OAuth 2.0 bearer token from /o/token/.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "integrations.api.descriptions.describe_operations",
    ],
    "OAUTH2_FLOWS": ["clientCredentials", "authorizationCode"],
    "OAUTH2_AUTHORIZATION_URL": "/o/authorize/",
    "OAUTH2_TOKEN_URL": "/o/token/",
    "OAUTH2_REFRESH_URL": "/o/token/",
    "OAUTH2_SCOPES": API_SCOPES,
    "ENUM_NAME_OVERRIDES": {
        "FacilityKindEnum": "devices.models.Facility.Kind",
        "LoadKindEnum": "devices.models.Load.Kind",
        "AlertStateEnum": "alerts.models.Alert.State",
        "RolloutStateEnum": "firmware.models.Rollout.State",
        "RuleKindEnum": "alerts.models.RuleKind",
    },
}

# --- Platform ---------------------------------------------------------------------
ENERGYBOX_HEALTH_TIMEOUT_S = float(env.int_("ENERGYBOX_HEALTH_TIMEOUT_MS", 2000)) / 1000

# --- Metrics (Prometheus) and health -----------------------------------------------------
# /metrics on web needs `Authorization: Bearer <ENERGYBOX_METRICS_TOKEN>` when the token is set.
METRICS_TOKEN = env.str_("ENERGYBOX_METRICS_TOKEN", "")
# Exporter ports of the gateway and worker processes (0: off), on METRICS_BIND.
GATEWAY_METRICS_PORT = env.int_("ENERGYBOX_GATEWAY_METRICS_PORT", 0)
WORKER_METRICS_PORT = env.int_("ENERGYBOX_WORKER_METRICS_PORT", 0)
METRICS_BIND = env.str_("ENERGYBOX_METRICS_BIND", "127.0.0.1")
# /healthz: the beat/worker heartbeat may be this old, and rollups may trail ingest this far.
HEALTH_HEARTBEAT_MAX_S = float(env.int_("ENERGYBOX_HEALTH_HEARTBEAT_MAX_S", 60))
HEALTH_ROLLUP_LAG_MAX_S = float(env.int_("ENERGYBOX_HEALTH_ROLLUP_LAG_MAX_S", 900))

# LOG_FORMAT=json: one JSON object per line (python-json-logger), for log shippers.
LOG_FORMAT = env.str_("LOG_FORMAT", "plain")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s %(message)s %(process)d",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "json" if LOG_FORMAT == "json" else "plain"}
    },
    "root": {"handlers": ["console"], "level": env.str_("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.channels.server": {"level": "WARNING"},
        # One line per task succeeded would drown everything else at 2-second ingest rates.
        "celery.app.trace": {"level": env.str_("CELERY_TASK_LOG_LEVEL", "WARNING")},
    },
}
