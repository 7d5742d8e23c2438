"""The API's access control: secrets and RAM-style policies of the store's access keys, per request.

``secret_of`` feeds the signature check and ``authorize`` the dispatcher's policy check before any handler
runs. Both read the database on every request, so a key revoked with ``immray keys revoke`` stops
working on the next request, in every server process. Listing actions (ListProjects, ListDatasets) are
answered to a key that may list something inside the container, and their handlers ask
:meth:`AccessControl.listing_filter` which items to show (see ``immray.policy``: ``may_list``/``shows``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from immray.api.actions import Resource
from immray.policy import SERVICE_PATH, dataset_path, project_path
from immray.services import access_keys
from immray.services.database import Database


def path_of(resource: Resource) -> str:
    """The resource path a policy matches: ``*``, ``project/P`` or ``project/P/dataset/D``."""
    if resource.project is None:
        return SERVICE_PATH
    if resource.dataset is None:
        return project_path(resource.project)
    return dataset_path(resource.project, resource.dataset)


class AccessControl:
    def __init__(self, db: Database, listings: Iterable[str] = ()) -> None:
        self._db = db
        self.listings = frozenset(listings)

    def secret_of(self, access_key_id: str) -> str | None:
        """The signing secret of an active key (None: unknown or revoked, InvalidAccessKeyId.NotFound)."""
        return access_keys.secret_of(self._db, access_key_id)

    def authorize(self, access_key_id: str, action: str, resource: Resource) -> bool:
        policy = access_keys.policy_of(self._db, access_key_id)
        if policy is None:
            return False
        if action in self.listings:
            return policy.may_list(action, path_of(resource))
        return policy.allows(action, path_of(resource))

    def listing_filter(
        self, access_key_id: str, action: str, container: Resource
    ) -> Callable[[Resource], bool] | None:
        """Which items a listing of ``container`` shows this key; None when it shows everything."""
        policy = access_keys.policy_of(self._db, access_key_id)
        if policy is None:
            return lambda item: False
        where = path_of(container)
        if policy.allows(action, where) and not policy.denies_any(action):
            return None
        return lambda item: policy.shows(action, where, path_of(item))
