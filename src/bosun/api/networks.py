"""Network endpoints: thin handlers over the engine's network verbs."""

from __future__ import annotations

from bosun.api.http import Response
from bosun.engine.errors import InvalidParameter


def _container_body(req, schema) -> dict:
    """A connect/disconnect body, of Docker's types, which must name the container."""
    from bosun.engine import gotypes

    body = gotypes.check(_body(req), schema, schema.go.partition(".")[2])
    if not body.get("Container"):
        raise InvalidParameter("no container specified")
    return body


def _body(req) -> dict:
    body = req.json()
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise InvalidParameter("invalid JSON: the body must be an object")
    return body


def register(router, engine) -> None:
    from bosun.engine import gotypes
    from bosun.engine.views import parse_filters

    def list_(req):
        return Response(200, engine.list_networks(parse_filters(req.q("filters"))))

    def inspect(req):
        return Response(200, engine.inspect_network(req.path_params["id"]))

    def create(req):
        return Response(201, engine.create_network(_body(req)))

    def remove(req):
        engine.remove_network(req.path_params["id"])
        return Response(204)

    def connect(req):
        body = _container_body(req, gotypes.NETWORK_CONNECT)
        engine.connect_network(req.path_params["id"], body["Container"],
                               body.get("EndpointConfig"))
        return Response(200)

    def disconnect(req):
        body = _container_body(req, gotypes.NETWORK_DISCONNECT)
        engine.disconnect_network(req.path_params["id"], body["Container"],
                                  bool(body.get("Force")))
        return Response(200)

    def prune(req):
        return Response(200, engine.prune_networks(parse_filters(req.q("filters"))))

    router.add("GET", "/networks", list_)
    router.add("GET", "/networks/", list_)
    router.add("POST", "/networks/create", create)
    router.add("POST", "/networks/prune", prune)
    router.add("GET", "/networks/{id}", inspect)
    router.add("DELETE", "/networks/{id}", remove)
    router.add("POST", "/networks/{id}/connect", connect)
    router.add("POST", "/networks/{id}/disconnect", disconnect)
