"""The web interface: people, one person, activity and the API explorer, under ``/ui`` of the API server.

Server-rendered (Jinja2) pages with a little vanilla JavaScript, served by the same process and port as the
IMM API; no front-end build. ``mount_web(app, context)`` adds the routes; ``sign_in_link(app, base, key)``
gives the one-time link ``immray serve`` prints.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from immray.api.context import ApiContext
from immray.credentials import CredentialsError, load_credentials
from immray.services.access_keys import NewKey
from immray.settings import Settings
from immray.web.invoke import Invoker
from immray.web.routes import build_router
from immray.web.site import WebApp

STATIC = Path(__file__).parent / "static"


def mount_web(app: FastAPI, context: ApiContext) -> WebApp:
    web = WebApp(context, Invoker(app.state.actions, context.access.authorize))
    app.include_router(build_router(web))
    app.mount("/ui/static", StaticFiles(directory=STATIC), name="ui-static")
    # Pages name their icon; this answers the browsers and tools that ask /favicon.ico regardless.
    app.add_api_route("/favicon.ico", favicon, methods=["GET"], include_in_schema=False)
    app.state.web = web
    return web


async def favicon() -> FileResponse:
    return FileResponse(
        STATIC / "favicon.svg", media_type="image/svg+xml", headers={"Cache-Control": "max-age=86400"}
    )


def sign_in_link(app: FastAPI, base_url: str, access_key_id: str) -> str:
    """A link that signs ``access_key_id`` in to the web page once (valid for a day)."""
    token = app.state.web.sessions.new_link_token(access_key_id)
    return f"{base_url.rstrip('/')}/ui/signin/{token}"


def admin_key_id(settings: Settings, new_admin: NewKey | None) -> str | None:
    """The key ``immray serve``'s sign-in link is for: the admin key it created on this start, or else the
    key saved in the data directory; None when it knows no key."""
    if new_admin is not None:
        return new_admin.info.access_key_id
    try:
        saved = load_credentials(settings.credentials_path)
    except CredentialsError:
        saved = None
    return saved.access_key_id if saved is not None else None
