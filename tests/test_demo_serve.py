"""``onwatch demo --serve``: the real command keeps serving with the web view on, prints the incident page's URL
and a viewer token, the page answers with that token (and only with it), and Ctrl-C ends it cleanly."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]


async def _line_matching(stream: asyncio.StreamReader, pattern: str, seen: list[str], within: float) -> re.Match[str]:
    async def scan() -> re.Match[str]:
        while True:
            raw = await stream.readline()
            if not raw:
                raise AssertionError("the demo ended before printing it:\n" + "".join(seen[-60:]))
            seen.append(raw.decode())
            m = re.search(pattern, seen[-1])
            if m:
                return m

    return await asyncio.wait_for(scan(), within)


async def test_demo_serve_prints_a_reachable_incident_page(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ONWATCH_")}
    env.update(NO_COLOR="1", TMPDIR=str(tmp_path))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot.cli", "demo", "--seed", "3", "--serve", "--port", "0", cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    assert proc.stdout is not None
    seen: list[str] = []
    try:
        url = (await _line_matching(proc.stdout, r"incident page: (http://127\.0\.0\.1:\d+/ui/incidents/(INC-[0-9A-F]+))\s*$",
                                    seen, 180))
        token = (await _line_matching(proc.stdout, r"viewer token:\s+(\S+)\s*$", seen, 10)).group(1)
        out = "".join(seen)
        assert "execution succeeded, verification recovered" in out  # the story ran as without --serve
        assert out.index("[8] Summary") < out.index("incident page:")  # the URL comes at the end
        async with aiohttp.ClientSession() as http:
            async with http.get(url.group(1), headers={"Authorization": f"Bearer {token}"}) as r:
                page = await r.text()
                assert r.status == 200, page[:500]
            assert url.group(2) in page and "payments-api" in page
            async with http.get(url.group(1), allow_redirects=False) as r:
                assert r.status == 401  # no token: never the page
                assert url.group(2) not in await r.text()
            async with http.get(url.group(1), headers={"Authorization": "Bearer wrong"}, allow_redirects=False) as r:
                assert r.status == 401
        proc.send_signal(signal.SIGINT)
        rest = await asyncio.wait_for(proc.stdout.read(), 60)
        assert await asyncio.wait_for(proc.wait(), 60) == 0, "".join(seen) + rest.decode()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert not os.listdir(tmp_path), "temporary files are removed once it stops"
