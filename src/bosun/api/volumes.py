"""Volume endpoints: thin handlers over the engine's volume verbs."""

from __future__ import annotations

from bosun.api.http import Response, version_key
from bosun.api.networks import _body


def register(router, engine) -> None:
    from bosun.engine.views import parse_filters

    def list_(req):
        return Response(200, engine.list_volumes(parse_filters(req.q("filters"))))

    def inspect(req):
        return Response(200, engine.inspect_volume(req.path_params["name"]))

    def create(req):
        return Response(201, engine.create_volume(_body(req)))

    def remove(req):
        engine.remove_volume(req.path_params["name"], req.q_bool("force"))
        return Response(204)

    def prune(req):
        filters = parse_filters(req.q("filters"))
        if req.version and version_key(req.version) < (1, 42):
            filters.setdefault("all", ["true"])  # before Docker 23 prune took named ones too
        return Response(200, engine.prune_volumes(filters))

    router.add("GET", "/volumes", list_)
    router.add("POST", "/volumes/create", create)
    router.add("POST", "/volumes/prune", prune)
    router.add("GET", "/volumes/{name}", inspect)
    router.add("DELETE", "/volumes/{name}", remove)
