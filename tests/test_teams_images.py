"""Charts are shrunk to travel inline in a Teams card (about 28 KB per message), or named instead."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from bot.chat.teams import cards, images
from bot.messages.model import Chart, Message, Text


def noisy_png(w: int = 800, h: int = 360) -> bytes:
    """A PNG that does not compress (random pixels): far over any inline budget."""
    rng = np.random.default_rng(1)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def line_png() -> bytes:
    """A chart-like PNG: a few coloured lines on white, like matplotlib's."""
    img = Image.new("RGB", (800, 360), "white")
    px = img.load()
    for x in range(800):
        for c, y in (((31, 119, 180), 180 + int(60 * np.sin(x / 40))), ((255, 127, 14), 100 + x // 8)):
            for dy in range(-1, 2):
                px[x, min(359, max(0, y + dy))] = c  # type: ignore[index]
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=0)  # uncompressed, so it starts over budget
    return buf.getvalue()


def test_a_small_chart_is_left_alone() -> None:
    chart = Chart("ok", b"\x89PNG tiny")
    msg = Message(blocks=(chart,), fallback="c", attachments=(chart,))
    assert images.fit_message(msg).blocks == (chart,)


def test_a_large_chart_is_reencoded_under_the_budget_and_rendered_once() -> None:
    png = line_png()
    assert len(png) > images.MAX_INLINE_PNG
    chart = Chart("latency", png)
    out = images.fit_message(Message(blocks=(chart,), fallback="c", attachments=(chart,)))
    (block,) = out.blocks
    assert isinstance(block, Chart) and block.png.startswith(b"\x89PNG") and len(block.png) <= images.MAX_INLINE_PNG
    card = cards.render_message(out)
    assert [el["type"] for el in card["body"]] == ["Image"]


def test_a_chart_that_cannot_fit_is_named_instead() -> None:
    chart = Chart("noise", noisy_png())
    out = images.fit_message(Message(blocks=(Text("head"), chart), fallback="c", attachments=(chart,)))
    assert not out.attachments and not any(isinstance(b, Chart) for b in out.blocks)
    assert any(isinstance(b, Text) and "noise" in b.text and "too large" in b.text for b in out.blocks)


def test_garbage_instead_of_a_png_is_named_not_raised() -> None:
    out = images.fit_message(Message(blocks=(Chart("bad", b"x" * (images.MAX_INLINE_PNG + 1)),), fallback="c"))
    assert isinstance(out.blocks[0], Text)
