"""The web pages under ``/ui``: sign-in, people, one person, the move picker (who is this face?), activity,
the API explorer, face thumbnails.

Every read and every change goes through :class:`immray.web.invoke.Invoker` -- the same IMM handlers,
services and policy checks as a signed ``POST /`` -- as the signed-in key (see :mod:`immray.web.site`).
The routes only turn forms into action parameters and answers into HTML. What no action answers (the
counts, the people nearest to a face, an empty person for a face to start) comes from a service after the
policy is asked as for the nearest action.
"""

from __future__ import annotations

import functools
import hmac
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from immray.client import ApiError, ClientError, ImmClient
from immray.protocol.errors import ImmError
from immray.services.figure_clusters import SORTS
from immray.store import INDEPENDENT_CLUSTER_ID
from immray.web import explorer, times
from immray.web.counts import dataset_counts
from immray.web.session import COOKIE, WebSession
from immray.web.site import (
    PEOPLE_PAGE,
    SignInRequired,
    Undo,
    WebApp,
    dataset_of,
    face_url,
    own_address,
    people_url,
    person_url,
    read_form,
)


def build_router(web: WebApp) -> APIRouter:
    router = APIRouter(prefix="/ui")
    helpers = {
        "people_url": people_url,
        "person_url": person_url,
        "face_url": face_url,
        "readable": times.readable,
        "exact": times.exact,
        "duration": times.duration,
    }
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
        size = args.get("size", "")
        size = min(int(size), 100) if size.isdigit() and int(size) > 0 else PEOPLE_PAGE
        ages = (_years(args.get("age_from", "")), _years(args.get("age_to", "")))
        if ages != (None, None):  # people of an estimated age range: a filter of the page's own
            people, next_token = await web.people_aged(
                session,
                project,
                dataset,
                ages,
                sort=sort,
                order=order,
                token=args.get("token", ""),
                want=size,
            )
            body = {"FigureClusters": people, "NextToken": next_token, "TotalCount": None}
        else:
            body = await web.call(
                session,
                "QueryFigureClusters",
                ProjectName=project,
                DatasetName=dataset,
                Sort=sort,
                Order=order,
                MaxResults=size,
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
            size=size if size != PEOPLE_PAGE else "",
            age_from="" if ages[0] is None else ages[0],
            age_to="" if ages[1] is None else ages[1],
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

    @router.get("/p/{project}/d/{dataset}/people/{cluster_id}/move", response_class=HTMLResponse)
    @guarded
    async def move_picker(request: Request, project: str, dataset: str, cluster_id: str) -> Response:
        """Who is this face? The likeliest people (nearest centroids), a search by name, or a new person."""
        session = web.session_of(request)
        args = request.query_params
        uri, figure_id, search = args.get("uri", ""), args.get("figure", ""), args.get("q", "")
        cluster = (
            await web.call(
                session, "GetFigureCluster", ProjectName=project, DatasetName=dataset, ObjectId=cluster_id
            )
        )["FigureCluster"]
        nearest = await web.nearest_people(session, project, dataset, figure_id)
        matches = await web.search_people(session, project, dataset, search) if search.strip() else []
        return web.page(
            request,
            "move.html",
            session,
            project=project,
            dataset=dataset,
            cluster=cluster,
            uri=uri,
            figure_id=figure_id,
            nearest=nearest,
            search=search,
            matches=[m for m in matches if m["ObjectId"] != cluster_id],
        )

    @router.post("/p/{project}/d/{dataset}/people/{cluster_id}/move")
    @guarded
    async def move(request: Request, project: str, dataset: str, cluster_id: str) -> Response:
        """Move a face: to ``target`` (a person), to a new person (``new_person``), or out (no target)."""
        session = web.session_of(request)
        form = await web.form(request, session)
        uri, figure_id = form.get("uri", ""), form.get("figure", "")
        if form.get("new_person"):
            target = await web.new_person(session, project, dataset, uri, figure_id)
            label = "move to a new person"
        else:
            target = form.get("target", "").strip() or INDEPENDENT_CLUSTER_ID
            name = form.get("label", "").strip()[:64] or target
            label = "not this person" if target == INDEPENDENT_CLUSTER_ID else f"move to {name}"
        await web.move_faces(session, project, dataset, [(uri, figure_id, target)])
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
                f"merge of {source} (its faces leave this person; they join no one)",
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
                **{
                    k: t.get(k)
                    for k in ("TaskId", "TaskType", "Status", "Progress", "StartTime", "EndTime", "Message")
                },
                "Took": times.duration(t.get("StartTime"), t.get("EndTime")),
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
        endpoint = own_address(request)
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
            "snippet": explorer.sdk_snippet(name, params, request.url.netloc, session.access_key_id),
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


def _years(text: str) -> int | None:
    """An age bound of the people page's filter: whole years 0-150, anything else no bound."""
    text = text.strip()
    return int(text) if text.isdigit() and int(text) <= 150 else None
