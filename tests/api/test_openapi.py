"""The OpenAPI document lists exactly the REST routes the gateway serves, and is a valid OpenAPI 3.1 document
(schemathesis loads it and every operation in it). Responses are checked against it in tests/e2e."""

from __future__ import annotations

import schemathesis
from starlette.routing import Route

from convoscope.api.openapi import openapi_document
from convoscope.server import create_app
from convoscope.settings import Settings

IGNORED_METHODS = {"HEAD"}


def _served() -> set[tuple[str, str]]:
    app = create_app(Settings(kafka_bootstrap="127.0.0.1:1"), run_migrations=False)  # routes only, never started
    return {
        (route.path, method.lower())
        for route in app.routes
        if isinstance(route, Route)
        for method in (route.methods or ()) if method not in IGNORED_METHODS
    }


def test_every_served_route_is_documented_and_nothing_else() -> None:
    document = openapi_document()
    documented = {
        (path, method) for path, item in document["paths"].items() for method in item if method != "parameters"
    }
    served = _served()
    assert served - documented == set(), "add these to PATHS in convoscope/api/openapi.py"
    assert documented - served == set(), "documented but not served"


def test_document_loads_in_schemathesis() -> None:
    document = openapi_document("http://127.0.0.1:8080")
    schema = schemathesis.openapi.from_dict(document)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == sum(len([m for m in item if m != "parameters"]) for item in document["paths"].values())
    for path, item in document["paths"].items():
        templated = [part[1:-1] for part in path.split("/") if part.startswith("{")]
        assert [p["name"] for p in item.get("parameters", [])] == templated
