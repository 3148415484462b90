"""Production: secrets and service URLs are required, not defaulted."""

from __future__ import annotations

from energybox import env
from energybox.settings.base import *  # noqa: F403

SECRET_KEY = env.required("DJANGO_SECRET_KEY")
DATABASE_URL = env.required("DATABASE_URL")
REDIS_URL = env.required("REDIS_URL")
CELERY_BROKER_URL = env.required("CELERY_BROKER_URL")
# ID tokens must be signed with a key that survives redeploys and is shared by every web process.
if not env.str_("OIDC_RSA_PRIVATE_KEY_FILE"):
    env.required("OIDC_RSA_PRIVATE_KEY")
DEBUG = False

SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_SECURE = env.bool_("DJANGO_SECURE_COOKIES", True)
CSRF_COOKIE_SECURE = env.bool_("DJANGO_SECURE_COOKIES", True)
SECURE_CONTENT_TYPE_NOSNIFF = True
