"""RAM-style access policies: which IMM actions an access key may call on which projects and datasets.

A policy is the JSON document Alibaba Cloud RAM uses::

    {"Version": "1", "Statement": [
        {"Effect": "Allow", "Action": ["imm:*"], "Resource": ["acs:imm:*:*:project/photos/dataset/*"]},
        {"Effect": "Deny", "Action": "imm:Delete*", "Resource": "*"}]}

Rules, as RAM has them: an explicit Deny wins over any Allow, and what no Allow matches is refused. Action
patterns (``imm:*``, ``imm:Get*``, ``imm:QueryFigureClusters``) compare case-insensitively; resource
patterns are case-sensitive, with ``*`` (any run of characters, ``/`` included) and ``?`` (one character).
A self-hosted server has one region and one account, so the region and account fields of a resource
pattern match anything. Resources are the service itself (``acs:imm:*:*:*``: ListProjects), a project
(``acs:imm:*:*:project/<P>``) and a dataset (``acs:imm:*:*:project/<P>/dataset/<D>``); ``project/<P>`` does
NOT cover the datasets inside it: write ``project/<P>/*`` (or use :func:`project_policy`).

Statement elements RAM has and this module does not (Condition, NotAction, NotResource, Principal) are
refused, never ignored: ignoring a Condition would grant more than its author meant.

Pure code: no database, no HTTP. The store keeps each key's document; ``immray.services.access`` applies it.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

SERVICE_PATH = "*"  # the resource path of service-level actions (ListProjects)
_STATEMENT_KEYS = {"Effect", "Action", "Resource", "Sid"}
_DOCUMENT_KEYS = {"Version", "Statement"}
MAX_POLICY_BYTES = 64 * 1024


class PolicyError(ValueError):
    """A policy document immray cannot apply; the message says what is wrong and where."""


class Effect(enum.StrEnum):
    ALLOW = "Allow"
    DENY = "Deny"


class Decision(enum.Enum):
    ALLOW = "allow"
    DENY = "deny"  # an explicit Deny matched
    NO_MATCH = "no-match"  # nothing matched: refused, but a listing may still show what lies below


@dataclass(frozen=True)
class Glob:
    """A ``*``/``?`` wildcard pattern; ``*`` also spans ``/``, as in RAM."""

    text: str
    ignore_case: bool = False

    @property
    def _regex(self) -> re.Pattern[str]:
        return _compile(self.text, self.ignore_case)

    def matches(self, value: str) -> bool:
        return self._regex.fullmatch(value) is not None

    def matches_something_under(self, prefix: str) -> bool:
        """Whether the pattern matches some string that starts with ``prefix`` and is longer than it."""
        text = self.text.lower() if self.ignore_case else self.text
        prefix = prefix.lower() if self.ignore_case else prefix
        states = _closure(text, {0})
        for char in prefix:
            states = _closure(
                text,
                {i + 1 for i in states if i < len(text) and text[i] in ("?", char)}
                | {i for i in states if i < len(text) and text[i] == "*"},
            )
            if not states:
                return False
        # Alive before the end: one more character can still be consumed.
        return any(i < len(text) for i in states)


def _closure(pattern: str, states: set[int]) -> set[int]:
    """NFA states of a glob: a ``*`` at position i may match nothing, so i+1 is reachable too."""
    result = set(states)
    stack = list(states)
    while stack:
        i = stack.pop()
        if i < len(pattern) and pattern[i] == "*" and i + 1 not in result:
            result.add(i + 1)
            stack.append(i + 1)
    return result


@lru_cache(maxsize=4096)
def _compile(text: str, ignore_case: bool) -> re.Pattern[str]:
    parts = (".*" if c == "*" else "." if c == "?" else re.escape(c) for c in text)
    return re.compile("".join(parts), re.IGNORECASE | re.DOTALL if ignore_case else re.DOTALL)


@dataclass(frozen=True)
class Statement:
    effect: Effect
    actions: tuple[Glob, ...]  # the part after "imm:"
    resources: tuple[Glob, ...]  # the resource path: "*", "project/P", "project/P/dataset/D"

    def covers_action(self, action: str) -> bool:
        return any(pattern.matches(action) for pattern in self.actions)

    def covers(self, action: str, path: str) -> bool:
        return self.covers_action(action) and any(pattern.matches(path) for pattern in self.resources)

    def covers_something_under(self, action: str, path: str) -> bool:
        if not self.covers_action(action):
            return False
        prefix = "" if path == SERVICE_PATH else path + "/"
        if not prefix:  # everything is under the service: any resource pattern names something there
            return True
        return any(pattern.matches_something_under(prefix) for pattern in self.resources)


@dataclass(frozen=True)
class Policy:
    statements: tuple[Statement, ...]
    document: dict[str, Any]

    def decide(self, action: str, path: str) -> Decision:
        """The verdict for ``action`` (``GetProject``, no ``imm:``) on the resource ``path``."""
        matched = [s for s in self.statements if s.covers(action, path)]
        if any(s.effect is Effect.DENY for s in matched):
            return Decision.DENY
        return Decision.ALLOW if matched else Decision.NO_MATCH

    def allows(self, action: str, path: str) -> bool:
        return self.decide(action, path) is Decision.ALLOW

    def allows_something_under(self, action: str, path: str) -> bool:
        """Some Allow statement for ``action`` names a resource inside ``path`` (a dataset of a project)."""
        return any(
            s.effect is Effect.ALLOW and s.covers_something_under(action, path) for s in self.statements
        )

    def denies_any(self, action: str) -> bool:
        """Some Deny statement names ``action``, so a listing cannot skip the per-item check."""
        return any(s.effect is Effect.DENY and s.covers_action(action) for s in self.statements)

    # --- listings (ListProjects, ListDatasets): a key sees what it may reach, not a 403 ---------------

    def may_list(self, action: str, container: str) -> bool:
        """A listing of ``container`` (the service, a project) is answered when the key may list the
        container itself or something inside it; it then shows only what :meth:`shows` lets through."""
        decision = self.decide(action, container)
        if decision is Decision.DENY:
            return False
        return decision is Decision.ALLOW or self.allows_something_under(action, container)

    def shows(self, action: str, container: str, item: str) -> bool:
        """Whether a listing of ``container`` shows ``item``: allowed on the container or on the item or on
        something inside the item (a project holding the key's dataset), and not denied on the item."""
        decision = self.decide(action, item)
        if decision is Decision.DENY:
            return False
        return (
            decision is Decision.ALLOW
            or self.allows(action, container)
            or self.allows_something_under(action, item)
        )


def project_path(project: str) -> str:
    return f"project/{project}"


def dataset_path(project: str, dataset: str) -> str:
    return f"project/{project}/dataset/{dataset}"


def arn(path: str) -> str:
    """The full resource name of a path, as messages and policy documents show it."""
    return f"acs:imm:*:*:{path}"


# --- documents ------------------------------------------------------------------------------------


def document(*statements: dict[str, Any]) -> dict[str, Any]:
    return {"Version": "1", "Statement": list(statements)}


def allow(actions: str | Sequence[str], resources: str | Sequence[str]) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": _listed(actions), "Resource": _listed(resources)}


def deny(actions: str | Sequence[str], resources: str | Sequence[str]) -> dict[str, Any]:
    return {"Effect": "Deny", "Action": _listed(actions), "Resource": _listed(resources)}


def _listed(value: str | Sequence[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


#: The first key `immray serve` creates: every action on every resource.
ADMIN_POLICY = document(allow("imm:*", "*"))


def dataset_statements(project: str, dataset: str) -> list[dict[str, Any]]:
    """Full use of one dataset, and seeing its project (GetProject; ListProjects/ListDatasets show only it)."""
    return [
        allow("imm:*", arn(dataset_path(project, dataset))),
        allow("imm:GetProject", arn(project_path(project))),
    ]


def project_statements(project: str) -> list[dict[str, Any]]:
    """Full use of one project and every dataset in it."""
    return [allow("imm:*", [arn(project_path(project)), arn(project_path(project) + "/*")])]


def project_policy(project: str) -> dict[str, Any]:
    return document(*project_statements(project))


def dataset_policy(project: str, dataset: str) -> dict[str, Any]:
    return document(*dataset_statements(project, dataset))


# --- parsing ------------------------------------------------------------------------------------


def parse_policy(value: Any) -> Policy:
    """A checked policy from a document (a dict, or its JSON text); PolicyError says what is wrong."""
    if isinstance(value, str | bytes):
        if len(value) > MAX_POLICY_BYTES:
            raise PolicyError(f"the policy is larger than {MAX_POLICY_BYTES} bytes")
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise PolicyError(f"the policy is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise PolicyError('a policy is a JSON object {"Version": "1", "Statement": [...]}')
    unknown = sorted(set(value) - _DOCUMENT_KEYS)
    if unknown:
        raise PolicyError(f"unknown policy field(s) {', '.join(unknown)}; a policy has Version and Statement")
    version = value.get("Version", "1")
    if version != "1":
        raise PolicyError(f'policy Version must be "1", not {version!r}')
    raw_statements = value.get("Statement")
    if isinstance(raw_statements, dict):
        raw_statements = [raw_statements]
    if not isinstance(raw_statements, list) or not raw_statements:
        raise PolicyError("a policy needs a non-empty Statement list")
    statements = tuple(_statement(raw, index) for index, raw in enumerate(raw_statements, 1))
    canonical = {"Version": "1", "Statement": raw_statements}
    return Policy(statements, json.loads(json.dumps(canonical)))


def _statement(raw: Any, index: int) -> Statement:
    where = f"Statement {index}"
    if not isinstance(raw, dict):
        raise PolicyError(f"{where} is not a JSON object")
    unknown = sorted(set(raw) - _STATEMENT_KEYS)
    if unknown:
        raise PolicyError(
            f"{where}: {', '.join(unknown)} not supported; immray applies Effect, Action and Resource only"
        )
    try:
        effect = Effect(raw.get("Effect"))
    except ValueError:
        raise PolicyError(f"{where}: Effect must be Allow or Deny, not {raw.get('Effect')!r}") from None
    actions = tuple(_action(text, where) for text in _strings(raw.get("Action"), "Action", where))
    resources = tuple(_resource(text, where) for text in _strings(raw.get("Resource"), "Resource", where))
    return Statement(effect, actions, resources)


def _strings(value: Any, field: str, where: str) -> Iterable[str]:
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not values or not all(isinstance(v, str) and v for v in values):
        raise PolicyError(f"{where}: {field} must be a non-empty string or a list of them")
    return values


def _action(text: str, where: str) -> Glob:
    if text == "*":
        return Glob("*")
    service, sep, name = text.partition(":")
    if not sep or service.lower() != "imm" or not name:
        raise PolicyError(f"{where}: Action {text!r} must look like imm:<Action> (imm:*, imm:Get*, ...)")
    return Glob(name, ignore_case=True)


def _resource(text: str, where: str) -> Glob:
    if text == "*":
        return Glob("*")
    parts = text.split(":", 4)
    if len(parts) != 5 or parts[0] != "acs" or not Glob(parts[1]).matches("imm") or not parts[4]:
        raise PolicyError(
            f"{where}: Resource {text!r} must be * or acs:imm:*:*:<path>, the path being *, "
            "project/<P> or project/<P>/dataset/<D> (wildcards allowed)"
        )
    return Glob(parts[4])
