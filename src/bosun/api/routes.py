"""All endpoints on one router."""

from __future__ import annotations

from bosun.api.http import Router


def build_router(engine) -> Router:
    from bosun.api import containers, containers_extra, images, networks, system, volumes

    router = Router()
    for module in (system, containers, containers_extra, images, networks, volumes):
        module.register(router, engine)
    return router
