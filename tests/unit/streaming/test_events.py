"""The event store on disk: events survive a restart in order, the oldest go beyond max_events, a clip that
was being made when the service stopped says so, a broken file is left alone, and an unwritable directory
loses nothing the running service holds."""

from __future__ import annotations

import os
from pathlib import Path

from cuecast.streaming.events import Event, EventStore


def test_events_survive_a_restart_in_order_and_stay_bounded(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "events", max_events=10)
    store.load()  # no directory yet: made at the first event
    assert not (tmp_path / "events").exists()
    ids = []
    for i in range(12):
        e = Event(id=store.new_id(), kind="shot", created=1000.0 + i, frame=i, label=f"shot {i}")
        if i == 11:
            e.clip = {"id": "c", "status": "pending", "before": 3, "after": 5, "error": None, "url": None}
        store.add(e)
        ids.append(e.id)
    (tmp_path / "events" / "zz-broken.json").write_text("{not json")
    assert len(store) == 10 and store.posted["shot"] == 12
    again = EventStore(tmp_path / "events", max_events=10)
    again.load()
    listed = again.listed()
    assert [e.id for e in listed] == ids[2:]  # oldest first, the two oldest gone
    assert listed[-1].clip is not None and listed[-1].clip["status"] == "failed"
    assert "stopped before the clip" in listed[-1].clip["error"]
    assert [e.frame for e in again.listed(after_id=ids[9])] == [10, 11]
    assert [e.frame for e in again.listed(since=1010.5)] == [11]
    assert again.delete(ids[5]) is not None and again.get(ids[5]) is None
    assert not (tmp_path / "events" / f"{ids[5]}.json").exists()


def test_an_unwritable_directory_keeps_events_in_memory_and_says_why(tmp_path: Path) -> None:
    if os.geteuid() == 0:  # root writes anywhere: use a path under a file instead
        (tmp_path / "file").write_text("")
        where = tmp_path / "file" / "events"
    else:
        where = tmp_path / "ro"
        where.mkdir(mode=0o500)
    store = EventStore(where, max_events=10)
    e = Event(id=store.new_id(), kind="shot", created=1.0)
    store.add(e)
    assert store.get(e.id) is e
    assert store.last_error is not None and "events.dir" in store.last_error
