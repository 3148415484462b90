"""ASGI entry point, served by Daphne: HTTP and websockets."""

from __future__ import annotations

import gc
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "energybox.settings.local")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter  # noqa: E402

from energybox.routing import websocket_application  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": websocket_application(),
    }
)

# Django, the URLconf and every module are loaded now and live as long as the process: keep them
# out of the cyclic garbage collector's full passes, which otherwise pause every socket of this
# process for tens of milliseconds each (measured in bench/live_latency.py).
gc.freeze()
