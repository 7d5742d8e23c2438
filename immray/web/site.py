"""What the web pages share: the signed-in session, calls to IMM actions as its key, the last change it can
undo, form parsing, URLs, and face thumbnails (cropped once, then served from disk with an ETag)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from immray.api.context import ApiContext
from immray.faces import ImageError
from immray.protocol.errors import ImmError
from immray.services import people_picker
from immray.sources import SourceError, sources_for
from immray.web.invoke import Invoker
from immray.web.session import COOKIE, SESSION_SECONDS, Sessions, WebSession
from immray.web.thumbnails import FACE_PX, PHOTO_PX, Box, ThumbnailCache, face_crop, photo_preview

HERE = Path(__file__).parent
PEOPLE_PAGE = 48
MAX_FACE_PAGES = 10  # a person's page reads at most this many SimpleQuery pages of 100 photos
NAME_SEARCH_PAGES = 20
# Pages of QueryFigureClusters (100 people each) one people page may read to fill itself with the people of
# an age range: a page of the grid stops there and links to the rest.
AGE_FILTER_PAGES = 50
NEAREST_PEOPLE = 6  # the move picker's strip of likeliest people
MAX_FORM_BYTES = 256 * 1024
CACHE_CONTROL = "private, max-age=604800, immutable"


class SignInRequired(Exception):
    pass


@dataclass
class Undo:
    """The last change a session can take back: face moves (uri, figure, cluster before) or a merge."""

    label: str
    project: str
    dataset: str
    moves: list[tuple[str, str, str]] = field(default_factory=list)


class WebApp:
    def __init__(self, context: ApiContext, invoker: Invoker) -> None:
        self.context = context
        self.invoker = invoker
        self.sessions = Sessions()
        self.templates = Jinja2Templates(directory=str(HERE / "templates"))
        self.thumbs = ThumbnailCache(context.settings.data_dir / "thumbnails")
        self._undo: dict[str, Undo] = {}
        self._undo_lock = threading.Lock()

    # --- sessions -------------------------------------------------------------------------------

    def session_of(self, request: Request) -> WebSession:
        session = self.sessions.read(request.cookies.get(COOKIE))
        if session is None or self.context.access.secret_of(session.access_key_id) is None:
            raise SignInRequired()
        return session

    def signed_in(self, access_key_id: str, target: str = "/ui/projects") -> Response:
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(
            COOKIE,
            self.sessions.new_cookie(access_key_id),
            max_age=SESSION_SECONDS,
            httponly=True,
            samesite="strict",
            path="/ui",
        )
        return response

    async def form(self, request: Request, session: WebSession) -> dict[str, str]:
        values = await read_form(request)
        if not session.csrf_ok(values.get("csrf")):
            raise ImmError.forbidden("The form's CSRF token is missing or wrong; reload the page and retry.")
        return values

    def page(self, request: Request, name: str, session: WebSession | None, **values: Any) -> HTMLResponse:
        return self.templates.TemplateResponse(
            request,
            name,
            {"session": session, "quote": quote, **values},
            status_code=values.get("status", 200),
        )

    async def call(self, session: WebSession, action: str, **params: Any) -> dict[str, Any]:
        return await self.invoker.acall(session.access_key_id, action, params)

    def remember(self, session: WebSession, undo: Undo | None) -> None:
        with self._undo_lock:
            if undo is None:
                self._undo.pop(session.sid, None)
            else:
                self._undo[session.sid] = undo

    def last_undo(self, session: WebSession) -> Undo | None:
        with self._undo_lock:
            return self._undo.get(session.sid)

    # --- people ---------------------------------------------------------------------------------

    async def faces_of(self, session: WebSession, project: str, dataset: str, cluster_id: str) -> list[dict]:
        """The person's faces (each with its photo's URI), read through SimpleQuery's pages."""
        found: list[dict] = []
        token = ""
        query = {"Field": "Figures.FigureClusterId", "Operation": "eq", "Value": cluster_id}
        for _ in range(MAX_FACE_PAGES):
            body = await self.call(
                session,
                "SimpleQuery",
                ProjectName=project,
                DatasetName=dataset,
                Query=query,
                MaxResults=100,
                NextToken=token,
            )
            for file in body.get("Files") or []:
                for figure in file.get("Figures") or []:
                    if figure.get("FigureClusterId") == cluster_id:
                        found.append({**figure, "URI": file["URI"]})
            token = body.get("NextToken") or ""
            if not token:
                break
        return found

    async def people_where(
        self,
        session: WebSession,
        project: str,
        dataset: str,
        keep: Callable[[dict], bool],
        *,
        want: int,
        pages: int,
        token: str = "",
        **query: str,
    ) -> tuple[list[dict], str]:
        """People passing ``keep``, from QueryFigureClusters' pages (``query``: its Sort, Order) read from
        ``token`` until ``want`` passed (whole pages, so the returned token resumes exactly) or ``pages``
        were read. For the filters IMM's action lacks: the same action and policy as the plain grid."""
        found: list[dict] = []
        for _ in range(pages):
            body = await self.call(
                session,
                "QueryFigureClusters",
                ProjectName=project,
                DatasetName=dataset,
                MaxResults=100,
                NextToken=token,
                **query,
            )
            found += [person for person in body.get("FigureClusters") or [] if keep(person)]
            token = body.get("NextToken") or ""
            if not token or len(found) >= want:
                break
        return found, token

    async def search_people(self, session: WebSession, project: str, dataset: str, text: str) -> list[dict]:
        """People whose name contains ``text`` (case-insensitive), from QueryFigureClusters by name."""
        needle = text.strip().lower()
        found, _ = await self.people_where(
            session,
            project,
            dataset,
            lambda person: needle in (person.get("Name") or "").lower(),
            want=20,
            pages=NAME_SEARCH_PAGES,
            Sort="Name",
        )
        return found[:20]

    async def people_aged(
        self,
        session: WebSession,
        project: str,
        dataset: str,
        ages: tuple[int | None, int | None],
        *,
        sort: str,
        order: str,
        token: str,
        want: int,
    ) -> tuple[list[dict], str]:
        """People whose estimated ``AverageAge``, in whole years (39.7 is 39, as one says a person's
        age), lies in ``ages`` (inclusive; None = open), in the order of ``sort``, a page of ``want``
        (``people_where``; at most ``AGE_FILTER_PAGES`` pages read)."""
        low, high = ages

        def aged(person: dict) -> bool:
            age = person.get("AverageAge")
            if age is None:
                return False
            years = int(age)
            return (low is None or years >= low) and (high is None or years <= high)

        return await self.people_where(
            session,
            project,
            dataset,
            aged,
            want=want,
            pages=AGE_FILTER_PAGES,
            token=token,
            Sort=sort,
            Order=order,
        )

    async def nearest_people(
        self, session: WebSession, project: str, dataset: str, figure_id: str
    ) -> list[dict]:
        """The people nearest to a face (their centroids), as GetFigureCluster shows them, nearest first.

        Read from the store by ``services.people_picker``, so the policy is asked first, as for the people
        list: a key that may not list this dataset's people gets Forbidden."""
        params = {"ProjectName": project, "DatasetName": dataset}
        if not self.invoker.allowed(session.access_key_id, "QueryFigureClusters", params):
            raise ImmError.forbidden(f"The access key may not read the people of {project}/{dataset}.")
        ids = await run_in_threadpool(
            people_picker.nearest_people, self.context.db, project, dataset, figure_id, NEAREST_PEOPLE
        )
        people = []
        for cluster_id in ids:
            try:
                body = await self.call(session, "GetFigureCluster", **params, ObjectId=cluster_id)
            except ImmError:  # merged or emptied since the centroids were read
                continue
            people.append(body["FigureCluster"])
        return people

    async def new_person(
        self, session: WebSession, project: str, dataset: str, uri: str, figure_id: str
    ) -> str:
        """An empty person for the face to move into (the move itself is UpdateFileMeta's). The face is
        checked first through GetFileMeta, so a stale form makes no empty person."""
        params = {"ProjectName": project, "DatasetName": dataset}
        if not self.invoker.allowed(
            session.access_key_id, "UpdateFileMeta", {**params, "File": {"URI": uri}}
        ):
            raise ImmError.forbidden(f"The access key may not change the faces of {project}/{dataset}.")
        file = (await self.call(session, "GetFileMeta", **params, URI=uri))["Files"][0]
        if not any(figure.get("FigureId") == figure_id for figure in file.get("Figures") or []):
            raise ImmError.resource_not_found("figure", f"{figure_id[:64]} of {uri[:256]}")
        return await run_in_threadpool(people_picker.new_person, self.context.db, project, dataset)

    async def move_faces(
        self, session: WebSession, project: str, dataset: str, moves: list[tuple[str, str, str]]
    ) -> None:
        """UpdateFileMeta with Figures for each photo, then a clustering task that applies the moves."""
        by_uri: dict[str, list[dict[str, str]]] = {}
        for uri, figure_id, target in moves:
            by_uri.setdefault(uri, []).append({"FigureId": figure_id, "FigureClusterId": target})
        for uri, figures in by_uri.items():
            await self.call(
                session,
                "UpdateFileMeta",
                ProjectName=project,
                DatasetName=dataset,
                File={"URI": uri, "Figures": figures},
            )
        await self.call(session, "CreateFigureClusteringTask", ProjectName=project, DatasetName=dataset)

    # --- thumbnails -----------------------------------------------------------------------------

    async def thumbnail(
        self, request: Request, project: str, dataset: str, uri: str, figure_id: str | None
    ) -> Response:
        session = self.session_of(request)
        params = {"ProjectName": project, "DatasetName": dataset, "URI": uri}
        if not self.invoker.allowed(session.access_key_id, "GetFileMeta", params):
            raise ImmError.forbidden(f"The access key may not read the photos of {project}/{dataset}.")
        size = FACE_PX if figure_id else PHOTO_PX
        path = self.thumbs.path_of(project, dataset, figure_id or f"photo:{uri}", size)
        if not path.exists():
            data = await run_in_threadpool(self._make_thumbnail, session, params, figure_id)
            await run_in_threadpool(self.thumbs.store, path, data)
        etag = self.thumbs.etag_of(path)
        headers = {"ETag": etag, "Cache-Control": CACHE_CONTROL}
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers)
        return Response(path.read_bytes(), media_type="image/jpeg", headers=headers)

    def _make_thumbnail(self, session: WebSession, params: dict[str, str], figure_id: str | None) -> bytes:
        file = self.invoker.call(session.access_key_id, "GetFileMeta", params)["Files"][0]
        box = None
        if figure_id:
            for figure in file.get("Figures") or []:
                if figure.get("FigureId") == figure_id:
                    b = figure["Boundary"]
                    box = Box(b["Left"], b["Top"], b["Width"], b["Height"])
            if box is None:
                raise ImmError.resource_not_found("figure", f"{figure_id[:64]} of {params['URI'][:256]}")
        try:
            sources = sources_for(self.context.settings)
            photo = sources.read(sources.check(params["URI"])).data
            return face_crop(photo, box) if box is not None else photo_preview(photo)
        except SourceError as exc:
            raise ImmError("InvalidArgument", f"The photo cannot be read: {exc}", 404) from None
        except ImageError as exc:
            raise ImmError("InvalidArgument", f"The photo cannot be decoded: {exc}", 404) from None


def own_address(request: Request) -> str:
    """Where this server listens, from the socket the request came in on (never the Host header, which the
    browser controls: a signed call must not be sent anywhere else)."""
    host, port = request.scope.get("server") or ("127.0.0.1", 80)
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{port}"


def dataset_of(task: dict[str, Any]) -> str | None:
    """The dataset a task was asked for, from its TaskRequestDefinition (a JSON text or object)."""
    definition = task.get("TaskRequestDefinition")
    if isinstance(definition, str):
        try:
            definition = json.loads(definition)
        except ValueError:
            return None
    return definition.get("DatasetName") if isinstance(definition, dict) else None


async def read_form(request: Request) -> dict[str, str]:
    """The page's forms are url-encoded and small; parsed here (no multipart library needed)."""
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise ImmError.limit_exceeded(f"A form may be at most {MAX_FORM_BYTES} bytes.")
    try:
        return dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
    except (UnicodeDecodeError, ValueError):
        raise ImmError.invalid_argument("The form is not url-encoded UTF-8.") from None


def people_url(project: str, dataset: str, **query: Any) -> str:
    base = f"/ui/p/{quote(project)}/d/{quote(dataset)}/people"
    query = {k: v for k, v in query.items() if v not in (None, "")}
    return base + ("?" + urlencode(query) if query else "")


def person_url(project: str, dataset: str, cluster_id: str, **query: Any) -> str:
    base = f"/ui/p/{quote(project)}/d/{quote(dataset)}/people/{quote(cluster_id)}"
    query = {k: v for k, v in query.items() if v not in (None, "")}
    return base + ("?" + urlencode(query) if query else "")


def face_url(project: str, dataset: str, uri: str, figure_id: str | None = None) -> str:
    query = {"uri": uri, **({"figure": figure_id} if figure_id else {})}
    return f"/ui/p/{quote(project)}/d/{quote(dataset)}/thumb?{urlencode(query)}"
