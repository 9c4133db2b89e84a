"""/docs: Swagger UI from the assets the pinned `fastapi-offline` package ships, so it works offline.

FastAPI's own /docs page loads Swagger UI from a CDN, which a cluster without internet access cannot reach,
and starts it with an inline script, which the page's Content-Security-Policy (serve/security_headers.py)
forbids. Here the page, its start script and Swagger UI's files are all served by this server.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

# Swagger UI 5 (it reads OpenAPI 3.1, which FastAPI writes); only the files are used, not its FastAPI class.
SWAGGER_UI_DIR = Path(str(resources.files("fastapi_offline") / "static"))
ASSETS_URL = "/static/swagger-ui"
START_SCRIPT = Path(__file__).parent / "page" / "docs.js"

DOCS_PAGE = f"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>servetune API</title>
  <link rel="stylesheet" href="{ASSETS_URL}/swagger-ui.css">
  <link rel="icon" type="image/png" href="{ASSETS_URL}/favicon.png">
  <script src="{ASSETS_URL}/swagger-ui-bundle.js" defer></script>
  <script src="/static/docs.js" defer></script>
</head>
<body>
  <div id="swagger-ui"></div>
</body>
</html>
"""


def add_docs(app: FastAPI) -> None:
    """Register GET /docs and Swagger UI's files (call before mounting /static: the longer prefix first)."""

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return HTMLResponse(DOCS_PAGE)

    app.mount(ASSETS_URL, StaticFiles(directory=SWAGGER_UI_DIR), name="swagger-ui")
