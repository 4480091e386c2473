"""The API page at ``/docs`` (assets served by the service itself) and what the OpenAPI document
promises generated clients: an ``operationId`` each, ``servers``, and ``security: []`` when public."""

from __future__ import annotations

import re

import pytest
from flask import Flask
from flask.views import MethodView

from flotilla_kit.api import Api, Blueprint
from flotilla_kit.app import create_service_app
from flotilla_kit.settings import ConfigError, KitSettings

NAME = "sample"


def make_app(monkeypatch: pytest.MonkeyPatch, **env: str) -> tuple[Flask, Api]:
    for variable, value in env.items():
        monkeypatch.setenv(variable, value)
    app, api = create_service_app(KitSettings.load(NAME), title="Sample", version="1.2.3")
    things = Blueprint("things", __name__, description="Things")

    @things.route("/things")
    class Things(MethodView):
        @things.response(200)
        def get(self) -> list[str]:
            """List things."""
            return []

        @things.requires(roles=["admin"])
        @things.response(201)
        def post(self) -> dict[str, str]:
            """Add a thing."""
            return {}

    @things.route("/things/<int:thing_id>/polish", methods=["POST"])
    @things.doc(operationId="polishThing")
    @things.response(204)
    def polish(thing_id: int) -> None:
        """Polish a thing (its id chosen by hand)."""

    api.register_blueprint(things)
    return app, api


def test_docs_leads_to_the_page_whose_assets_and_document_the_service_serves(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app, _api = make_app(monkeypatch)
    client = app.test_client()
    index = client.get("/docs")
    assert (index.status_code, index.headers["Location"]) == (302, f"/docs/{NAME}/")
    page = client.get(f"/docs/{NAME}/")
    assert page.status_code == 200
    assert page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    sources = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert sources, html
    assert all(source.startswith(f"/docs/{NAME}/") for source in sources), sources  # no CDN
    assert f'"url": "/docs/{NAME}/openapi.json"' in html
    for source in sources:
        asset = client.get(source)
        assert asset.status_code == 200, source
    assert client.get(f"/docs/{NAME}/swagger-ui-bundle.js").mimetype == "text/javascript"
    assert client.get(f"/docs/{NAME}/openapi.json").get_json() == client.get("/openapi.json").get_json()
    assert client.get(f"/docs/{NAME}/../../../etc/passwd").status_code == 404
    assert client.get(f"/docs/{NAME}/%2e%2e/%2e%2e/etc/passwd").status_code == 404


def test_the_page_follows_api_docs_path_and_is_gone_when_api_docs_is_false(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app, _api = make_app(monkeypatch, API_DOCS_PATH="/docs/shop-sample")
    client = app.test_client()
    assert client.get("/docs").headers["Location"] == "/docs/shop-sample/"
    assert client.get("/docs/shop-sample/").status_code == 200
    assert client.get("/docs/shop-sample/openapi.json").status_code == 200

    off, _api = make_app(monkeypatch, API_DOCS="false")
    client = off.test_client()
    for path in ("/docs", f"/docs/{NAME}/", f"/docs/{NAME}/openapi.json", f"/docs/{NAME}/swagger-ui.css"):
        assert client.get(path).status_code == 404, path
    assert client.get("/openapi.json").status_code == 200


@pytest.mark.parametrize("path", ["docs", "/docs/", "/Docs", "/docs/a b", "/docs//x"])
def test_a_bad_api_docs_path_is_named(monkeypatch: pytest.MonkeyPatch, path: str) -> None:
    monkeypatch.setenv("API_DOCS_PATH", path)
    with pytest.raises(ConfigError, match="API_DOCS_PATH: must be a path of lower-case letters"):
        KitSettings.load(NAME)


def test_every_operation_has_an_id_public_ones_say_security_none_and_servers_are_declared(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app, _api = make_app(monkeypatch)
    document = app.test_client().get("/openapi.json").get_json()
    assert document["servers"] == [{"url": "/", "description": "The host serving this document"}]
    operations = {
        (method, path): (operation["operationId"], operation["security"])
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method != "parameters"
    }
    assert operations == {
        ("get", "/things"): ("get_things", []),
        ("post", "/things"): ("post_things", [{"bearerAuth": []}]),
        ("post", "/things/{thing_id}/polish"): ("polishThing", []),
    }


def test_two_operations_with_one_id_are_refused_at_start_naming_both(monkeypatch: pytest.MonkeyPatch) -> None:
    _app, api = make_app(monkeypatch)
    other = Blueprint("other", __name__, description="Another blueprint with a view named the same")

    @other.route("/other-things")
    class Things(MethodView):
        @other.response(200)
        def get(self) -> list[str]:
            """List other things."""
            return []

    with pytest.raises(
        ValueError, match=r"operationId 'get_things' of GET /other-things is already GET /things's"
    ):
        api.register_blueprint(other)
