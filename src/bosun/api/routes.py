"""All endpoints on one router."""

from __future__ import annotations

from bosun.api.http import Router


def build_router(engine) -> Router:
    from bosun.api import containers, containers_extra, images, system

    router = Router()
    for module in (system, containers, containers_extra, images):
        module.register(router, engine)
    return router
