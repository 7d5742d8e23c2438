"""The web pages under ``/ui``: sign-in, people, one person, activity, the API explorer, face thumbnails.

Every read and every change goes through :class:`facegroup.web.invoke.Invoker` -- the same IMM handlers,
services and policy checks as a signed ``POST /`` -- as the signed-in key. The routes only turn forms into
action parameters and answers into HTML.
"""

from __future__ import annotations

import functools
import hmac
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

from fastapi import APIRouter
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from facegroup.api.context import ApiContext
from facegroup.client import ApiError, ClientError, ImmClient
from facegroup.faces import ImageError
from facegroup.protocol.errors import ImmError
from facegroup.services.figure_clusters import SORTS
from facegroup.sources import SourceError, sources_for
from facegroup.store import INDEPENDENT_CLUSTER_ID
from facegroup.web import explorer
from facegroup.web.counts import dataset_counts
from facegroup.web.invoke import Invoker
from facegroup.web.session import COOKIE, SESSION_SECONDS, Sessions, WebSession
from facegroup.web.thumbnails import FACE_PX, PHOTO_PX, Box, ThumbnailCache, face_crop, photo_preview

HERE = Path(__file__).parent
PEOPLE_PAGE = 48
MAX_FACE_PAGES = 10  # a person's page reads at most this many SimpleQuery pages of 100 photos
NAME_SEARCH_PAGES = 20
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

    async def search_people(self, session: WebSession, project: str, dataset: str, text: str) -> list[dict]:
        """People whose name contains ``text`` (case-insensitive), from QueryFigureClusters by name."""
        needle = text.strip().lower()
        found, token = [], ""
        for _ in range(NAME_SEARCH_PAGES):
            body = await self.call(
                session,
                "QueryFigureClusters",
                ProjectName=project,
                DatasetName=dataset,
                Sort="Name",
                MaxResults=100,
                NextToken=token,
            )
            for person in body.get("FigureClusters") or []:
                if needle in (person.get("Name") or "").lower():
                    found.append(person)
            token = body.get("NextToken") or ""
            if not token or len(found) >= 20:
                break
        return found[:20]

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


def build_router(web: WebApp) -> APIRouter:
    router = APIRouter(prefix="/ui")
    helpers = {"people_url": people_url, "person_url": person_url, "face_url": face_url}
    web.templates.env.globals.update(helpers)

    def guarded(handler: Callable[..., Any]) -> Callable[..., Any]:
        """Sign-in required; an ImmError becomes a page that shows IMM's code and message."""

        @functools.wraps(handler)
        async def run(request: Request, *args: Any, **kwargs: Any) -> Response:
            try:
                return await handler(request, *args, **kwargs)
            except SignInRequired:
                return RedirectResponse("/ui/signin", status_code=303)
            except ImmError as error:
                session = web.sessions.read(request.cookies.get(COOKIE))
                return web.page(request, "error.html", session, error=error, status=error.status)

        return run

    # --- sign-in ------------------------------------------------------------------------------

    @router.get("", include_in_schema=False)
    @router.get("/", include_in_schema=False)
    async def home(request: Request) -> Response:
        return RedirectResponse("/ui/projects", status_code=303)

    @router.get("/signin", response_class=HTMLResponse)
    async def signin_form(request: Request) -> Response:
        return web.page(request, "signin.html", None, failed=False)

    @router.post("/signin", response_class=HTMLResponse)
    async def signin(request: Request) -> Response:
        form = await read_form(request)
        key_id = str(form.get("access_key_id", "")).strip()
        secret = str(form.get("access_key_secret", ""))
        known = await run_in_threadpool(web.context.access.secret_of, key_id) if key_id else None
        if known is None or not hmac.compare_digest(known.encode(), secret.encode()):
            return web.page(request, "signin.html", None, failed=True, status=401)
        return web.signed_in(key_id)

    @router.get("/signin/{token}")
    async def signin_link(request: Request, token: str) -> Response:
        key_id = web.sessions.redeem(token)
        if key_id is None or await run_in_threadpool(web.context.access.secret_of, key_id) is None:
            return web.page(request, "signin.html", None, failed=False, expired=True, status=401)
        return web.signed_in(key_id)

    @router.post("/signout")
    @guarded
    async def signout(request: Request) -> Response:
        session = web.session_of(request)
        await web.form(request, session)
        web.remember(session, None)
        response = RedirectResponse("/ui/signin", status_code=303)
        response.delete_cookie(COOKIE, path="/ui")
        return response

    # --- projects and datasets ----------------------------------------------------------------

    @router.get("/projects", response_class=HTMLResponse)
    @guarded
    async def projects(request: Request) -> Response:
        session = web.session_of(request)
        listing = []
        body = await web.call(session, "ListProjects", MaxResults=200)
        for project in body.get("Projects") or []:
            name = project["ProjectName"]
            try:
                datasets = (await web.call(session, "ListDatasets", ProjectName=name, MaxResults=200)).get(
                    "Datasets"
                ) or []
            except ImmError:
                datasets = []
            listing.append((name, [d["DatasetName"] for d in datasets]))
        return web.page(request, "projects.html", session, projects=listing)

    # --- people -------------------------------------------------------------------------------

    @router.get("/p/{project}/d/{dataset}/people", response_class=HTMLResponse)
    @guarded
    async def people(request: Request, project: str, dataset: str) -> Response:
        session = web.session_of(request)
        args = request.query_params
        sort = args.get("sort", "FaceCount")
        sort = sort if sort in SORTS else "FaceCount"
        order = "asc" if args.get("order") == "asc" else "desc"
        body = await web.call(
            session,
            "QueryFigureClusters",
            ProjectName=project,
            DatasetName=dataset,
            Sort=sort,
            Order=order,
            MaxResults=PEOPLE_PAGE,
            NextToken=args.get("token", ""),
            WithTotalCount=True,
        )
        counts = await run_in_threadpool(dataset_counts, web.context.db, project, dataset)
        return web.page(
            request,
            "people.html",
            session,
            project=project,
            dataset=dataset,
            people=body.get("FigureClusters") or [],
            total=body.get("TotalCount"),
            next_token=body.get("NextToken"),
            sort=sort,
            order=order,
            sorts=("FaceCount", "ImageCount", "Name", "CreateTime", "UpdateTime"),
            unassigned=counts.unassigned_faces,
            undo=web.last_undo(session),
        )

    @router.get("/p/{project}/d/{dataset}/people/{cluster_id}", response_class=HTMLResponse)
    @guarded
    async def person(request: Request, project: str, dataset: str, cluster_id: str) -> Response:
        session = web.session_of(request)
        cluster = (
            await web.call(
                session, "GetFigureCluster", ProjectName=project, DatasetName=dataset, ObjectId=cluster_id
            )
        )["FigureCluster"]
        faces = await web.faces_of(session, project, dataset, cluster_id)
        review = request.query_params.get("view") == "review"
        if review:  # the engine's least sure first
            faces.sort(key=lambda f: (f.get("FigureClusterConfidence", 1.0), f["FigureId"]))
        search = request.query_params.get("q", "")
        matches = await web.search_people(session, project, dataset, search) if search else []
        return web.page(
            request,
            "person.html",
            session,
            project=project,
            dataset=dataset,
            cluster=cluster,
            faces=faces,
            review=review,
            search=search,
            matches=[m for m in matches if m["ObjectId"] != cluster_id],
            undo=web.last_undo(session),
            message=request.query_params.get("message", ""),
        )

    @router.post("/p/{project}/d/{dataset}/people/{cluster_id}/rename")
    @guarded
    async def rename(request: Request, project: str, dataset: str, cluster_id: str) -> Response:
        session = web.session_of(request)
        form = await web.form(request, session)
        changes: dict[str, Any] = {"ObjectId": cluster_id, "Name": form.get("name", "").strip()[:512]}
        if form.get("version", "").isdigit():
            changes["MetaLockVersion"] = int(form["version"])
        await web.call(
            session, "UpdateFigureCluster", ProjectName=project, DatasetName=dataset, FigureCluster=changes
        )
        return RedirectResponse(person_url(project, dataset, cluster_id), status_code=303)

    @router.post("/p/{project}/d/{dataset}/people/{cluster_id}/cover")
    @guarded
    async def cover(request: Request, project: str, dataset: str, cluster_id: str) -> Response:
        session = web.session_of(request)
        form = await web.form(request, session)
        changes = {"ObjectId": cluster_id, "Cover": {"Figures": [{"FigureId": form.get("figure", "")}]}}
        await web.call(
            session, "UpdateFigureCluster", ProjectName=project, DatasetName=dataset, FigureCluster=changes
        )
        return RedirectResponse(person_url(project, dataset, cluster_id), status_code=303)

    @router.post("/p/{project}/d/{dataset}/people/{cluster_id}/move")
    @guarded
    async def move(request: Request, project: str, dataset: str, cluster_id: str) -> Response:
        session = web.session_of(request)
        form = await web.form(request, session)
        target = form.get("target", "").strip() or INDEPENDENT_CLUSTER_ID
        uri, figure_id = form.get("uri", ""), form.get("figure", "")
        await web.move_faces(session, project, dataset, [(uri, figure_id, target)])
        label = "not this person" if target == INDEPENDENT_CLUSTER_ID else f"move to {target}"
        web.remember(session, Undo(f"face {label}", project, dataset, [(uri, figure_id, cluster_id)]))
        return RedirectResponse(
            person_url(project, dataset, cluster_id, message="Moved; a clustering task is applying it."),
            status_code=303,
        )

    @router.post("/p/{project}/d/{dataset}/people/{cluster_id}/merge")
    @guarded
    async def merge(request: Request, project: str, dataset: str, cluster_id: str) -> Response:
        """Merge the person ``source`` into this one; their faces are remembered for undo."""
        session = web.session_of(request)
        form = await web.form(request, session)
        source = form.get("source", "")
        faces = await web.faces_of(session, project, dataset, source)
        await web.call(
            session,
            "CreateFigureClustersMergingTask",
            ProjectName=project,
            DatasetName=dataset,
            To=cluster_id,
            From=source,
        )
        web.remember(
            session,
            Undo(
                f"merge of {source}",
                project,
                dataset,
                [(face["URI"], face["FigureId"], INDEPENDENT_CLUSTER_ID) for face in faces],
            ),
        )
        return RedirectResponse(
            person_url(project, dataset, cluster_id, message="Merging; the faces arrive when the task ends."),
            status_code=303,
        )

    @router.post("/p/{project}/d/{dataset}/undo")
    @guarded
    async def undo(request: Request, project: str, dataset: str) -> Response:
        """Take back the last move (the face goes back to its person) or merge (the merged faces leave the
        person again; they stay out of any person, since UpdateFileMeta cannot move faces into a person
        that no longer exists)."""
        session = web.session_of(request)
        await web.form(request, session)
        last = web.last_undo(session)
        if last is None or (last.project, last.dataset) != (project, dataset):
            raise ImmError.invalid_argument("There is nothing to undo in this dataset.")
        await web.move_faces(session, project, dataset, last.moves)
        web.remember(session, None)
        return RedirectResponse(people_url(project, dataset), status_code=303)

    @router.get("/p/{project}/d/{dataset}/thumb")
    @guarded
    async def thumb(request: Request, project: str, dataset: str) -> Response:
        uri = request.query_params.get("uri", "")
        return await web.thumbnail(request, project, dataset, uri, request.query_params.get("figure"))

    # --- activity -----------------------------------------------------------------------------

    async def activity_data(session: WebSession, project: str, dataset: str) -> dict[str, Any]:
        body = await web.call(
            session,
            "ListTasks",
            ProjectName=project,
            Sort="StartTime",
            Order="desc",
            MaxResults=20,
            RequestDefinition=True,
        )
        tasks = [
            {
                k: t.get(k)
                for k in ("TaskId", "TaskType", "Status", "Progress", "StartTime", "EndTime", "Message")
            }
            for t in body.get("Tasks") or []
            if dataset_of(t) in (None, dataset)
        ]
        return {"Tasks": tasks}

    @router.get("/p/{project}/d/{dataset}/activity", response_class=HTMLResponse)
    @guarded
    async def activity(request: Request, project: str, dataset: str) -> Response:
        session = web.session_of(request)
        await web.call(session, "GetDataset", ProjectName=project, DatasetName=dataset)
        data = await activity_data(session, project, dataset)
        files = await web.call(
            session, "SimpleQuery", ProjectName=project, DatasetName=dataset, MaxResults=100
        )
        counts = await run_in_threadpool(dataset_counts, web.context.db, project, dataset)
        return web.page(
            request,
            "activity.html",
            session,
            project=project,
            dataset=dataset,
            tasks=data["Tasks"],
            files=files.get("Files") or [],
            statuses=counts.files_by_status,
            unassigned=counts.unassigned_faces,
        )

    @router.get("/p/{project}/d/{dataset}/activity.json")
    @guarded
    async def activity_json(request: Request, project: str, dataset: str) -> Response:
        session = web.session_of(request)
        return JSONResponse(await activity_data(session, project, dataset))

    @router.post("/p/{project}/d/{dataset}/cluster")
    @guarded
    async def start_clustering(request: Request, project: str, dataset: str) -> Response:
        session = web.session_of(request)
        await web.form(request, session)
        await web.call(session, "CreateFigureClusteringTask", ProjectName=project, DatasetName=dataset)
        return RedirectResponse(f"/ui/p/{quote(project)}/d/{quote(dataset)}/activity", status_code=303)

    # --- the API explorer ---------------------------------------------------------------------

    @router.get("/explorer", response_class=HTMLResponse)
    @guarded
    async def explorer_page(request: Request) -> Response:
        session = web.session_of(request)
        return web.page(
            request,
            "explorer.html",
            session,
            catalog=explorer.catalog(web.invoker.actions),
            chosen=request.query_params.get("action", ""),
            given={},
            result=None,
        )

    @router.post("/explorer", response_class=HTMLResponse)
    @guarded
    async def explorer_run(request: Request) -> Response:
        """Sign the call with the signed-in key's secret and send it to this server's ``POST /``."""
        session = web.session_of(request)
        form = await web.form(request, session)
        name = form.get("action", "")
        action = web.invoker.actions.get(name)
        if action is None:
            raise ImmError.unsupported_action(name[:128])
        fields = {f.name: f for f in (explorer.field_of(p) for p in action.params)}
        given = {k[2:]: v for k, v in form.items() if k.startswith("p:") and k[2:] in fields and v != ""}
        params = {k: explorer.typed_value(fields[k], v) for k, v in given.items()}
        secret = await run_in_threadpool(web.context.access.secret_of, session.access_key_id)
        endpoint = request.url.netloc
        status, response = 200, {}
        try:
            with ImmClient(endpoint, session.access_key_id, secret or "", timeout=60) as client:
                response = await run_in_threadpool(client.call, name, params)
        except ApiError as error:
            status = error.status
            response = {"RequestId": error.request_id, "Code": error.code, "Message": error.message}
        except ClientError as error:
            status, response = 502, {"Message": str(error)}
        result = {
            "request": f"POST http://{endpoint}/ x-acs-action: {name} x-acs-version: 2020-09-30\n"
            + json.dumps(params, indent=2, ensure_ascii=False),
            "status": status,
            "response": json.dumps(response, indent=2, ensure_ascii=False),
            "snippet": explorer.sdk_snippet(name, params, endpoint, session.access_key_id),
        }
        return web.page(
            request,
            "explorer.html",
            session,
            catalog=explorer.catalog(web.invoker.actions),
            chosen=name,
            given=given,
            result=result,
        )

    return router
