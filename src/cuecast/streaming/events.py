"""Events from the backend ("a shot at frame N"): kept on disk, counted, and fanned out live to viewers.

Owns the event record, the store (one JSON file per event in events.dir, written under a temporary name and
renamed, so a half-written event is never read; bounded by events.max_events, oldest first; rebuilt at start,
where a clip that was still being made when the service stopped is marked failed: the frames it needed were
only in memory), and the live feed (one bounded queue per listener; a listener that does not keep up is
dropped, and its next connection catches up with Last-Event-ID). The HTTP contract is web/routes/events.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
import json
import logging
import secrets
import threading
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

FEED_QUEUE = 256  # messages a live listener may be behind before it is dropped


@dataclass
class Event:
    id: str  # sorts in the order events were made
    kind: str
    created: float  # unix seconds
    frame: int | None = None  # the capture process's frame number (the backend's seq)
    time: float | None = None  # the frame's capture wall time, seconds
    label: str = ""
    data: dict[str, Any] | None = None
    clip: dict[str, Any] | None = None  # before, after, id, status (pending|ready|failed), error, url

    def public(self) -> dict[str, Any]:
        return asdict(self)


class EventStore:
    """The events on disk, newest last in memory (thread-safe)."""

    def __init__(self, directory: Path, max_events: int) -> None:
        self.dir = Path(directory)
        self.max_events = max_events
        self._events: dict[str, Event] = {}
        self._lock = threading.Lock()
        self._counter = itertools.count()
        self.posted: Counter[str] = Counter()  # by kind, since start
        self.clips: Counter[str] = Counter()  # clips of events by outcome (ready, failed), since start
        self.last_error: str | None = None

    def load(self) -> None:
        """Read the directory (made at the first event); clips still pending are marked failed (their frames
        were in memory)."""
        if not self.dir.is_dir():
            return
        for p in self.dir.glob(".tmp-*"):
            p.unlink(missing_ok=True)
        for path in sorted(self.dir.glob("*.json")):
            try:
                event = Event(**json.loads(path.read_text()))
            except (OSError, ValueError, TypeError):
                log.warning("events: %s is not an event; left alone", path)
                continue
            if event.clip and event.clip.get("status") == "pending":
                event.clip.update(status="failed", error="the service stopped before the clip was written")
                self._write(event)
            self._events[event.id] = event
        if self._events:
            log.info("events: %d kept in %s", len(self._events), self.dir)

    def new_id(self) -> str:
        now = dt.datetime.now(dt.UTC)
        return f"{now:%Y%m%d-%H%M%S-%f}-{next(self._counter) % 10000:04d}-{secrets.token_hex(2)}"

    def add(self, event: Event) -> None:
        with self._lock:
            self._events[event.id] = event
            self.posted[event.kind] += 1
            excess = sorted(self._events)[: max(0, len(self._events) - self.max_events)]
            for old in excess:
                del self._events[old]
        self._write(event)
        for old in excess:
            (self.dir / f"{old}.json").unlink(missing_ok=True)

    def update(self, event: Event) -> None:
        with self._lock:
            if event.id not in self._events:
                return  # deleted meanwhile
        self._write(event)

    def delete(self, event_id: str) -> Event | None:
        with self._lock:
            event = self._events.pop(event_id, None)
        if event is not None:
            (self.dir / f"{event_id}.json").unlink(missing_ok=True)
        return event

    def get(self, event_id: str) -> Event | None:
        return self._events.get(event_id)

    def listed(self, since: float | None = None, after_id: str | None = None, kind: str | None = None,
               limit: int = 1000) -> list[Event]:
        """Oldest first: those created after `since` (unix s) and after event `after_id`, of `kind`; the
        newest `limit` of them."""
        with self._lock:
            events = [self._events[k] for k in sorted(self._events)]
        out = [e for e in events if (since is None or e.created > since) and (after_id is None or e.id > after_id)
               and (kind is None or e.kind == kind)]
        return out[-limit:]

    def __len__(self) -> int:
        return len(self._events)

    def _write(self, event: Event) -> None:
        path, tmp = self.dir / f"{event.id}.json", self.dir / f".tmp-{event.id}.json"
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(event.public()))
            tmp.replace(path)
        except OSError as e:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            self._failed(f"event {event.id} not written to events.dir {self.dir}: {e.strerror}; it is kept in "
                         "memory until the service stops: fix the directory's permissions or set events.dir")
        else:
            self.last_error = None

    def _failed(self, message: str) -> None:
        if message != self.last_error:
            log.warning("events: %s", message)
        self.last_error = message

    def stats(self) -> dict[str, Any]:
        return {"kept": len(self._events), "dir": str(self.dir), "max_events": self.max_events,
                "posted": dict(self.posted), "clips": dict(self.clips),
                "last_error": self.last_error}


class EventFeed:
    """Live listeners (Server-Sent Events): each gets every message from when it joined. Event loop only."""

    def __init__(self) -> None:
        self._queues: set[asyncio.Queue[tuple[str, dict[str, Any]] | None]] = set()
        self.dropped = 0
        self.closed = False

    def join(self) -> asyncio.Queue[tuple[str, dict[str, Any]] | None]:
        q: asyncio.Queue[tuple[str, dict[str, Any]] | None] = asyncio.Queue(FEED_QUEUE)
        if self.closed:
            q.put_nowait(None)
        else:
            self._queues.add(q)
        return q

    def close(self) -> None:
        """The service stops: every live stream ends now (an open stream would hold the server's shutdown)."""
        self.closed = True
        for q in list(self._queues):
            self._end(q)

    def leave(self, q: asyncio.Queue[tuple[str, dict[str, Any]] | None]) -> None:
        self._queues.discard(q)

    def send(self, name: str, event: Event) -> None:
        """Send one message (`name`: event, clip, deleted) about `event` to every listener."""
        body = event.public()
        for q in list(self._queues):
            try:
                q.put_nowait((name, body))
            except asyncio.QueueFull:  # too slow: drop it (its reconnect catches up)
                self._end(q)
                self.dropped += 1

    def _end(self, q: asyncio.Queue[tuple[str, dict[str, Any]] | None]) -> None:
        """Tell a listener's stream to end (None, in place of its oldest message if the queue is full)."""
        self._queues.discard(q)
        if q.full():
            q.get_nowait()
        q.put_nowait(None)

    @property
    def listeners(self) -> int:
        return len(self._queues)
