"""The page at ``/``: the existing single-file page (the kiosk page replaces this module)."""

from __future__ import annotations

from importlib import resources


def install_pages(app, options) -> None:
    from fastapi.responses import HTMLResponse

    page = resources.files("edge.serve").joinpath("static/index.html").read_text(encoding="utf-8")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index():
        return HTMLResponse(page)
