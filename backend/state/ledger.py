"""The label ledger: the project's tasks and annotations as the backend knows them, kept current
by Label Studio's webhooks, so that a round reads no task list from Label Studio.

Two hashes per project, values are JSON text:
    tasks        task id -> {"data": task.data, "noted_at": t}
    annotations  annotation id -> {"task", "result", "was_cancelled", "updated_at", "noted_at"}
Labels are derived at round time from the project's label config, so a config change needs no
rewrite. ``noted_at`` (when the backend learned of an entry) lets a sync that listed Label
Studio while webhooks kept arriving keep what arrived after the listing began; a tombstone
(id -> when a webhook deleted it) keeps such a sync from bringing back what was deleted meanwhile.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol, TypeGuard

from redis import Redis

from backend.state.atomic import atomic_write_json, read_json
from backend.state.redis_text import as_text

TASKS = "tasks"
ANNOTATIONS = "annotations"
LABELS = "labels"
SYNCED = "synced"  # what was last listed from Label Studio, and when: {TASKS: t, LABELS: t}
SKIPPED = "skipped"  # task id -> why its image could not be embedded
DELETED = {TASKS: "deleted_tasks", ANNOTATIONS: "deleted_annotations"}  # id -> when a webhook deleted it
TOMBSTONE_SECONDS = 3600.0  # a tombstone outlives any listing that began before its deletion
_REDIS_CHUNK = 5_000  # fields per HSET/HDEL command


class Hashes(Protocol):
    """Named string-to-string maps of one project."""

    @property
    def key(self) -> str:
        """Where the maps live (a Redis key prefix, a folder): one project's ledger."""

    def put(self, name: str, mapping: Mapping[str, str]) -> None: ...

    def remove(self, name: str, keys: Iterable[str]) -> None: ...

    def read(self, name: str) -> dict[str, str]: ...

    def has(self, name: str, key: str) -> bool: ...

    def size(self, name: str) -> int: ...

    def revision(self, name: str) -> str | None:
        """A token that changes with every write to the hash; None when unknown."""

    def save(self) -> None:
        """Make what was put durable (files); Redis writes are durable at once."""


class RedisHashes:
    def __init__(self, connection: Redis, prefix: str) -> None:
        self.connection = connection
        self.prefix = prefix

    @property
    def key(self) -> str:
        return self.prefix

    def put(self, name: str, mapping: Mapping[str, str]) -> None:
        items = list(mapping.items())
        with self.connection.pipeline() as pipe:  # MULTI/EXEC: a sync's writes land together
            for start in range(0, len(items), _REDIS_CHUNK):
                pipe.hset(f"{self.prefix}:{name}", mapping=dict(items[start : start + _REDIS_CHUNK]))
            pipe.set(f"{self.prefix}:{name}:revision", uuid.uuid4().hex)
            pipe.execute()

    def remove(self, name: str, keys: Iterable[str]) -> None:
        keys = list(keys)
        with self.connection.pipeline() as pipe:
            for start in range(0, len(keys), _REDIS_CHUNK):
                pipe.hdel(f"{self.prefix}:{name}", *keys[start : start + _REDIS_CHUNK])
            pipe.set(f"{self.prefix}:{name}:revision", uuid.uuid4().hex)
            pipe.execute()

    def read(self, name: str) -> dict[str, str]:
        raw = self.connection.hgetall(f"{self.prefix}:{name}")
        return {as_text(key): as_text(value) for key, value in raw.items()}

    def has(self, name: str, key: str) -> bool:
        return bool(self.connection.hexists(f"{self.prefix}:{name}", key))

    def size(self, name: str) -> int:
        return int(self.connection.hlen(f"{self.prefix}:{name}"))

    def revision(self, name: str) -> str | None:
        # A random token, not a counter: a Redis that lost its data must not repeat an old one.
        raw = self.connection.get(f"{self.prefix}:{name}:revision")
        return as_text(raw) if raw is not None else None

    def save(self) -> None:
        pass


class FileHashes:
    """Hashes held in memory and saved as JSON files by ``save``.

    One object per folder and process: in the embedded mode the webhook handler and the job
    thread share it. What a crash loses between two saves, the next sync lists again.
    """

    _open: ClassVar[dict[Path, FileHashes]] = {}
    _open_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._maps: dict[str, dict[str, str]] = {}
        self._dirty: set[str] = set()
        self._revisions: dict[str, str] = {}
        self._lock = threading.Lock()

    @property
    def key(self) -> str:
        return str(self.directory)

    @classmethod
    def at(cls, directory: Path) -> FileHashes:
        with cls._open_lock:
            return cls._open.setdefault(directory, cls(directory))

    def put(self, name: str, mapping: Mapping[str, str]) -> None:
        with self._lock:
            self._map(name).update(mapping)
            self._changed(name)

    def remove(self, name: str, keys: Iterable[str]) -> None:
        with self._lock:
            values = self._map(name)
            for key in keys:
                values.pop(key, None)
            self._changed(name)

    def read(self, name: str) -> dict[str, str]:
        with self._lock:
            return dict(self._map(name))

    def has(self, name: str, key: str) -> bool:
        with self._lock:
            return key in self._map(name)

    def size(self, name: str) -> int:
        with self._lock:
            return len(self._map(name))

    def revision(self, name: str) -> str | None:
        with self._lock:
            return self._revisions.setdefault(name, uuid.uuid4().hex)

    def save(self) -> None:
        with self._lock:
            for name in sorted(self._dirty):
                atomic_write_json(self.directory / f"{name}.json", self._maps[name])
            self._dirty.clear()

    def _changed(self, name: str) -> None:
        self._dirty.add(name)
        self._revisions[name] = uuid.uuid4().hex

    def _map(self, name: str) -> dict[str, str]:
        if name not in self._maps:
            value = read_json(self.directory / f"{name}.json", {})
            self._maps[name] = value if isinstance(value, dict) else {}
        return self._maps[name]


@dataclass(frozen=True)
class LedgerCounts:
    tasks: int
    annotations: int  # not cancelled, as Label Studio's total_annotations_number counts them


class LabelLedger:
    # Parsed task data per hashes object, by revision: a round re-reads the annotations, but the
    # task list (the bulk, one entry per task) only after it changed.
    _task_data: ClassVar[dict[str, tuple[str, list[tuple[int, Any]]]]] = {}

    def __init__(self, hashes: Hashes) -> None:
        self.hashes = hashes

    # --- webhooks -------------------------------------------------------------------------
    def apply_event(self, action: str, payload: Mapping[str, Any]) -> None:
        """Record what one webhook says; unknown shapes are left to the next sync."""
        task = payload.get("task")
        if isinstance(task, Mapping) and _is_id(task.get("id")) and not self.hashes.has(TASKS, str(task["id"])):
            # Only a task the ledger lacks: rewriting a known one would change the task list's
            # revision on every label and make every round parse the whole list again.
            self.note_tasks([task])
        if action in ("ANNOTATION_CREATED", "ANNOTATION_UPDATED"):
            annotation = payload.get("annotation")
            if isinstance(annotation, Mapping):
                self.note_annotations([annotation])
        elif action == "ANNOTATIONS_CREATED":
            self.note_annotations([a for a in payload.get("annotations") or [] if isinstance(a, Mapping)])
        elif action == "ANNOTATIONS_DELETED":
            self.forget_annotations(_ids(payload.get("annotations")))
        elif action == "TASKS_CREATED":
            self.note_tasks([t for t in payload.get("tasks") or [] if isinstance(t, Mapping)])
        elif action == "TASKS_DELETED":
            self.forget_tasks(_ids(payload.get("tasks")))

    def note_tasks(self, tasks: Iterable[Mapping[str, Any]]) -> None:
        now = time.time()
        entries = {str(t["id"]): _task_entry(t, now) for t in tasks if _is_id(t.get("id"))}
        if entries:
            self.hashes.put(TASKS, entries)

    def note_annotations(self, annotations: Iterable[Mapping[str, Any]]) -> None:
        now = time.time()
        entries = {}
        for annotation in annotations:
            task = annotation.get("task")
            task_id = task.get("id") if isinstance(task, Mapping) else task
            if _is_id(annotation.get("id")) and _is_id(task_id):
                entries[str(annotation["id"])] = _annotation_entry(annotation, task_id, now)
        if entries:
            self.hashes.put(ANNOTATIONS, entries)

    def forget_annotations(self, annotation_ids: Iterable[int]) -> None:
        self._forget(ANNOTATIONS, [str(i) for i in annotation_ids])

    def forget_tasks(self, task_ids: Iterable[int]) -> None:
        gone = {int(i) for i in task_ids}
        if not gone:
            return
        self._forget(TASKS, [str(i) for i in gone])
        annotations = self.hashes.read(ANNOTATIONS)
        self._forget(ANNOTATIONS, [k for k, v in annotations.items() if json.loads(v)["task"] in gone])

    def _forget(self, name: str, keys: list[str]) -> None:
        if keys:
            self.hashes.put(DELETED[name], dict.fromkeys(keys, repr(time.time())))
            self.hashes.remove(name, keys)

    # --- syncs against Label Studio --------------------------------------------------------
    def replace_tasks(self, tasks: Iterable[Mapping[str, Any]], listed_since: float) -> None:
        """Make the task hash what Label Studio listed, keeping entries noted after ``listed_since``."""
        now = time.time()
        listed = {str(t["id"]): _task_entry(t, now) for t in tasks if _is_id(t.get("id"))}
        self._replace(TASKS, listed, listed_since)
        self._mark_synced(TASKS, now)

    def replace_annotations(self, labeled_tasks: Iterable[Mapping[str, Any]], listed_since: float) -> None:
        """The same for annotations, from a listing of every task that has one (with its annotations)."""
        now = time.time()
        listed: dict[str, str] = {}
        for task in labeled_tasks:
            for annotation in task.get("annotations") or []:
                if _is_id(annotation.get("id")):
                    listed[str(annotation["id"])] = _annotation_entry(annotation, int(task["id"]), now)
        self._replace(ANNOTATIONS, listed, listed_since)
        self._mark_synced(LABELS, now)

    def note_skipped(self, failed: Mapping[int, str]) -> None:
        """Tasks whose image could not be embedded, so that rounds report them and stop asking."""
        if failed:
            self.hashes.put(SKIPPED, {str(task_id): why for task_id, why in failed.items()})

    def skipped(self) -> dict[int, str]:
        return {int(task_id): why for task_id, why in self.hashes.read(SKIPPED).items()}

    def synced_at(self, what: str) -> float | None:
        """When tasks (TASKS) or annotations (LABELS) were last listed from Label Studio."""
        value = self.hashes.read(SYNCED).get(what)
        return float(value) if value is not None else None

    def _replace(self, name: str, listed: dict[str, str], listed_since: float) -> None:
        # An entry noted before the listing began is one the listing saw, if it still exists:
        # Label Studio sends a webhook after the request's write committed (its api_webhook
        # decorator wraps the whole view; it does not set ATOMIC_REQUESTS). Across hosts this
        # needs clocks in step (docs/deployment.md). An entry deleted after the listing began may
        # still be in it: its tombstone keeps it out.
        current = self.hashes.read(name)
        fresher = {key for key, value in current.items() if json.loads(value)["noted_at"] > listed_since}
        tombstones = {key: float(when) for key, when in self.hashes.read(DELETED[name]).items()}
        deleted_since = {key for key, when in tombstones.items() if when > listed_since}
        self.hashes.remove(name, [key for key in current if key not in listed and key not in fresher])
        stale = fresher | deleted_since  # the webhook's word is newer than the listing's
        self.hashes.put(name, {key: value for key, value in listed.items() if key not in stale})
        expired = [key for key, when in tombstones.items() if when < listed_since - TOMBSTONE_SECONDS]
        if expired:
            self.hashes.remove(DELETED[name], expired)

    def _mark_synced(self, what: str, when: float) -> None:
        self.hashes.put(SYNCED, {what: repr(when)})

    # --- reads ---------------------------------------------------------------------------
    def counts(self) -> LedgerCounts:
        annotations = self.hashes.read(ANNOTATIONS).values()
        return LedgerCounts(
            tasks=self.hashes.size(TASKS),
            annotations=sum(not json.loads(value)["was_cancelled"] for value in annotations),
        )

    def tasks(self) -> list[dict[str, Any]]:
        """Every task as Label Studio's task list shows it: {"id", "data", "annotations"}, by id."""
        by_task: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for annotation_id, value in self.hashes.read(ANNOTATIONS).items():
            entry = json.loads(value)
            by_task[entry["task"]].append({"id": int(annotation_id), **entry})
        return [
            {"id": task_id, "data": data, "annotations": by_task.get(task_id, [])}
            for task_id, data in self._task_data_by_id()
        ]

    def _task_data_by_id(self) -> list[tuple[int, Any]]:
        revision = self.hashes.revision(TASKS)
        key = self.hashes.key
        cached = self._task_data.get(key)
        if revision is not None and cached is not None and cached[0] == revision:
            return cached[1]
        parsed = sorted((int(task_id), json.loads(value)["data"]) for task_id, value in self.hashes.read(TASKS).items())
        if revision is not None:
            self._task_data[key] = (revision, parsed)
        return parsed

    def save(self) -> None:
        self.hashes.save()


def _task_entry(task: Mapping[str, Any], now: float) -> str:
    return json.dumps({"data": task.get("data") or {}, "noted_at": now})


def _annotation_entry(annotation: Mapping[str, Any], task_id: int, now: float) -> str:
    return json.dumps(
        {
            "task": task_id,
            "result": annotation.get("result") or [],
            "was_cancelled": bool(annotation.get("was_cancelled")),
            "updated_at": annotation.get("updated_at") or annotation.get("created_at"),
            "noted_at": now,
        }
    )


def _is_id(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _ids(items: Any) -> list[int]:
    return [item["id"] for item in items or [] if isinstance(item, Mapping) and _is_id(item.get("id"))]
