"""The interactive API page: Swagger UI at ``API_DOCS_PATH``, its assets from a Python package.

Clusters are often offline, so nothing is loaded from a CDN: flask-swagger-ui ships Swagger UI's
files. The page reads the OpenAPI document beside it (``<path>/openapi.json``), so one ingress
route, ``/docs/<service>``, serves the page, its assets and its document on a host shared by
every service. ``/docs`` on the service itself leads to the page.
"""

from __future__ import annotations

from flask import Flask, redirect
from flask.typing import ResponseReturnValue
from flask_swagger_ui import get_swaggerui_blueprint

from flotilla_kit.api import Api

SPEC_FILE = "openapi.json"


def init_app(app: Flask, api: Api, path: str) -> None:
    """Serve the page at ``path``/ and the API's OpenAPI document at ``path``/openapi.json."""
    title = app.config.get("API_TITLE") or app.name
    config = {"app_name": f"{title}: API", "deepLinking": True, "persistAuthorization": True}
    app.register_blueprint(
        get_swaggerui_blueprint(path, f"{path}/{SPEC_FILE}", config=config, blueprint_name="api_docs")
    )

    def document() -> ResponseReturnValue:
        return app.json.response(api.spec.to_dict())

    def to_the_page() -> ResponseReturnValue:
        return redirect(f"{path}/", code=302)

    app.add_url_rule(f"{path}/{SPEC_FILE}", "api_docs_document", document)
    if path != "/docs":  # the page's own path without its slash is redirected by Flask already
        app.add_url_rule("/docs", "api_docs_index", to_the_page)
