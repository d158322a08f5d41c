"""The scheduler's pacing (promote.engine.scheduler): the dry runs wait until the last release has its render."""

from __future__ import annotations

import asyncio

from promote.engine.scheduler import Pacer


def test_the_pacer_opens_when_the_last_release_has_its_render() -> None:
    async def scenario() -> list[str]:
        seen: list[str] = []
        pacer = Pacer(2, hold=True)

        async def compare() -> None:
            async with pacer.slots:
                seen.append("compare")

        task = asyncio.create_task(compare())
        await asyncio.sleep(0)
        pacer.rendered()
        seen.append("rendered")
        await asyncio.sleep(0)
        pacer.rendered()
        seen.append("rendered")
        await task
        return seen

    assert asyncio.run(scenario()) == ["rendered", "rendered", "compare"]
    assert not Pacer(0, hold=True).slots.locked()
    assert not Pacer(3, hold=False).slots.locked()
