"""SingleFlight and Notifier: the start sharing and change waiting the services build on."""

from __future__ import annotations

import asyncio
import gc

import pytest

from proxy.asyncutil import Notifier, SingleFlight


async def test_concurrent_callers_share_one_run() -> None:
    flight: SingleFlight[str, int] = SingleFlight()
    release = asyncio.Event()
    runs = 0

    async def start() -> int:
        nonlocal runs
        runs += 1
        await release.wait()
        return 42

    callers = [asyncio.create_task(flight.run("a", start)) for _ in range(5)]
    await asyncio.sleep(0)  # let every caller reach run(); not a timing wait
    assert "a" in flight and len(flight) == 1
    release.set()
    assert await asyncio.gather(*callers) == [42] * 5
    assert runs == 1
    assert "a" not in flight and len(flight) == 0


async def test_keys_run_independently_and_a_finished_key_runs_again() -> None:
    flight: SingleFlight[str, str] = SingleFlight()

    async def start(value: str) -> str:
        return value

    assert await flight.run("a", lambda: start("x")) == "x"
    assert await flight.run("b", lambda: start("y")) == "y"
    assert await flight.run("a", lambda: start("z")) == "z"  # the first run is over: a new one


async def test_an_exception_reaches_every_caller_and_is_not_left_unretrieved() -> None:
    flight: SingleFlight[str, int] = SingleFlight()
    release = asyncio.Event()

    async def start() -> int:
        await release.wait()
        raise ValueError("no tuner")

    callers = [asyncio.create_task(flight.run("a", start)) for _ in range(3)]
    await asyncio.sleep(0)
    release.set()
    results = await asyncio.gather(*callers, return_exceptions=True)
    assert [type(r) for r in results] == [ValueError] * 3
    assert "a" not in flight
    gc.collect()  # filterwarnings=error would turn "exception was never retrieved" into a failure


async def test_a_waiter_giving_up_does_not_cancel_the_shared_start() -> None:
    flight: SingleFlight[str, int] = SingleFlight()
    release = asyncio.Event()

    async def start() -> int:
        await release.wait()
        return 7

    first = asyncio.create_task(flight.run("a", start))
    await asyncio.sleep(0)
    waiter = asyncio.create_task(flight.run("a", start))
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    release.set()
    assert await first == 7


async def test_cancelling_the_starter_cancels_the_waiters() -> None:
    flight: SingleFlight[str, int] = SingleFlight()
    never = asyncio.Event()

    async def start() -> int:
        await never.wait()
        return 1

    first = asyncio.create_task(flight.run("a", start))
    await asyncio.sleep(0)
    waiter = asyncio.create_task(flight.run("a", start))
    await asyncio.sleep(0)
    first.cancel()
    for task in (first, waiter):
        with pytest.raises(asyncio.CancelledError):
            await task
    assert "a" not in flight


async def test_notifier_wakes_waiters_until_their_predicate_holds() -> None:
    notifier = Notifier()
    state = {"n": 0}
    woke = asyncio.create_task(notifier.wait_for(lambda: state["n"] >= 2))
    await asyncio.sleep(0)
    state["n"] = 1
    notifier.notify()
    await asyncio.sleep(0)
    assert not woke.done()  # woken, re-checked, waiting again on the next change
    state["n"] = 2
    notifier.notify()
    async with asyncio.timeout(5):
        await woke


async def test_notifier_returns_at_once_when_the_predicate_already_holds() -> None:
    async with asyncio.timeout(5):
        await Notifier().wait_for(lambda: True)


async def test_owned_flight_runs_on_when_a_caller_leaves_and_counts_the_waiters() -> None:
    from proxy.asyncutil import OwnedFlight

    flight: OwnedFlight[str, int] = OwnedFlight("start")
    release = asyncio.Event()
    seen_waiters: list[int] = []

    async def start() -> int:
        await release.wait()
        seen_waiters.append(flight.waiters("a"))
        return 7

    first = asyncio.create_task(flight.run("a", start))
    second = asyncio.create_task(flight.run("a", start))
    await asyncio.sleep(0)  # let both callers reach run(); not a timing wait
    assert flight.waiters("a") == 2 and len(flight) == 1
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert flight.waiters("a") == 1
    release.set()
    assert await second == 7  # the run was not cancelled with its first caller
    assert seen_waiters == [1] and len(flight) == 0


async def test_owned_flight_cancel_all_ends_every_run() -> None:
    from proxy.asyncutil import OwnedFlight

    flight: OwnedFlight[str, int] = OwnedFlight("start")

    async def forever() -> int:
        await asyncio.Event().wait()
        return 0

    caller = asyncio.create_task(flight.run("a", forever))
    await asyncio.sleep(0)
    await flight.cancel_all()
    assert len(flight) == 0
    with pytest.raises(asyncio.CancelledError):
        await caller
