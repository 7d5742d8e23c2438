"""The web interface: people, one person, activity and the API explorer, under ``/ui`` of the API server.

Server-rendered (Jinja2) pages with a little vanilla JavaScript, served by the same process and port as the
IMM API; no front-end build. ``mount_web(app, context)`` adds the routes; ``sign_in_link(app, base, key)``
gives the one-time link ``facegroup serve`` prints.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from facegroup.api.context import ApiContext
from facegroup.web.invoke import Invoker
from facegroup.web.routes import WebApp, build_router

STATIC = Path(__file__).parent / "static"


def mount_web(app: FastAPI, context: ApiContext) -> WebApp:
    web = WebApp(context, Invoker(app.state.actions, context.access.authorize))
    app.include_router(build_router(web))
    app.mount("/ui/static", StaticFiles(directory=STATIC), name="ui-static")
    app.state.web = web
    return web


def sign_in_link(app: FastAPI, base_url: str, access_key_id: str) -> str:
    """A link that signs ``access_key_id`` in to the web page once (valid for a day)."""
    token = app.state.web.sessions.new_link_token(access_key_id)
    return f"{base_url.rstrip('/')}/ui/signin/{token}"
