"""The sideloadable Teams app package: manifest fields Teams checks, and the two icons' sizes and alpha."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "deploy" / "teams"


def read_png(path: Path) -> tuple[int, int, list[bytes]]:
    """(width, height, rows of RGBA pixels) of an 8-bit RGBA non-interlaced PNG."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, w = 8, b"", 0
    h = 0
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            w, h, depth, ctype = struct.unpack(">IIBB", body[:10])
            assert (depth, ctype) == (8, 6)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    raw = zlib.decompress(idat)
    stride = 4 * w + 1
    rows = []
    for y in range(h):
        line = raw[y * stride:(y + 1) * stride]
        assert line[0] == 0  # filter None, as written
        rows.append(line[1:])
    return w, h, rows


def test_manifest_declares_the_bot_for_teams_personal_and_group_chats() -> None:
    m = json.loads((PKG / "manifest.json").read_text())
    assert m["manifestVersion"] == "1.16" and m["icons"] == {"color": "color.png", "outline": "outline.png"}
    (bot,) = m["bots"]
    assert bot["botId"] == m["id"]  # the docs replace both with the Microsoft App ID
    assert set(bot["scopes"]) == {"team", "personal", "groupChat"}
    titles = {c["title"] for c in bot["commandLists"][0]["commands"]}
    assert {"investigate", "status", "help", "silence"} <= titles
    assert "identity" in m["permissions"]  # the sender's Entra object id authorises approvals
    assert len(m["name"]["short"]) <= 30 and len(m["description"]["short"]) <= 80
    assert len(m["description"]["full"]) <= 4000


def test_icons_have_the_sizes_teams_requires() -> None:
    w, h, rows = read_png(PKG / "color.png")
    assert (w, h) == (192, 192)
    assert all(r[i + 3] == 255 for r in rows for i in range(0, len(r), 4))  # opaque
    w, h, rows = read_png(PKG / "outline.png")
    assert (w, h) == (32, 32)
    pixels = [r[i:i + 4] for r in rows for i in range(0, len(r), 4)]
    assert any(p[3] == 0 for p in pixels)  # a transparent background
    assert all(p[3] == 0 or p[:3] == b"\xff\xff\xff" for p in pixels)  # white only
