"""The MJPEG FrameHub on its own: newest frame only, drops counted per client, demand follows clients, a
closed hub ends every client."""

from __future__ import annotations

import asyncio

import pytest

from cuecast.streaming.outputs.mjpeg.branch import FrameHub, HubFull


def test_hub_gives_the_newest_frame_and_counts_what_a_slow_client_missed() -> None:
    async def run() -> None:
        hub = FrameHub("medium", max_clients=2)
        hub.bind(asyncio.get_running_loop())
        assert not hub.demand
        a = hub.subscribe("a")
        assert hub.demand, "a client switches the encoder on"
        for i in range(5):
            hub._publish(b"jpeg%d" % i, i)
        frame = await hub.next_frame(a)
        assert frame is not None and frame.data == b"jpeg4", "the newest, never a queue"
        hub._publish(b"jpeg5", 5)
        assert (await hub.next_frame(a)).data == b"jpeg5"
        hub.subscribe("b")
        with pytest.raises(HubFull, match="2 clients"):
            hub.subscribe("c")
        assert hub.clients_refused == 1
        hub.release(a)
        assert hub.demand
        for c in list(hub.clients):
            hub.release(c)
        assert not hub.demand, "the last client leaving switches the encoder off"

    asyncio.run(run())


def test_hub_counts_dropped_frames_per_client() -> None:
    async def run() -> None:
        hub = FrameHub("low", max_clients=5)
        hub.bind(asyncio.get_running_loop())
        c = hub.subscribe("slow")
        hub._publish(b"1", 1)
        await hub.next_frame(c)
        for i in range(2, 6):
            hub._publish(b"%d" % i, i)
        await hub.next_frame(c)
        assert c.dropped == 3 and hub.frames_dropped == 3

    asyncio.run(run())


def test_closing_the_hub_ends_every_client() -> None:
    async def run() -> None:
        hub = FrameHub("high", max_clients=5)
        hub.bind(asyncio.get_running_loop())
        c = hub.subscribe("x")
        waiter = asyncio.create_task(hub.next_frame(c))
        await asyncio.sleep(0)
        hub.close()
        assert await asyncio.wait_for(waiter, 1) is None
        with pytest.raises(HubFull, match="shutting down"):
            hub.subscribe("y")

    asyncio.run(run())
