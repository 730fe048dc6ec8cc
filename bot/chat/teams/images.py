"""Charts small enough for a Teams message.

Teams refuses a bot message larger than about 28 KB (``413 MessageSizeTooBig``), and an Adaptive Card
``Image`` can only carry a picture inline as a base64 ``data:`` URL (a URL would have to be reachable from
every Teams client, and onwatch's own server usually is not). A matplotlib chart is ~40 KB of PNG, so
before a chart goes into a card it is re-encoded with a small palette (line charts have few colours) and,
if that is not enough, scaled down step by step. A chart that still does not fit is dropped from the
card and named in a line of text instead: the message is delivered either way.

Pillow is CPU work: callers run ``fit_message`` through ``asyncio.to_thread``.
"""

from __future__ import annotations

import dataclasses
import io

from PIL import Image, UnidentifiedImageError

from bot.messages.model import Block, Chart, Message, Text

MAX_MESSAGE_BYTES = 28 * 1024
# what the rest of the activity (envelope, text, proposal facts) may take next to an inline chart
CARD_OVERHEAD_BYTES = 6 * 1024
MAX_INLINE_PNG = (MAX_MESSAGE_BYTES - CARD_OVERHEAD_BYTES) * 3 // 4  # base64 grows data by 4/3
PALETTE_COLOURS = 48
MIN_WIDTH = 320


def _encode(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def shrink_png(png: bytes, limit: int = MAX_INLINE_PNG) -> bytes | None:
    """``png`` itself when it fits in ``limit`` bytes, else a palette/downscaled re-encoding that does, else None."""
    if len(png) <= limit:
        return png
    try:
        with Image.open(io.BytesIO(png)) as src:
            rgb = src.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError):
        return None
    img = rgb
    while True:
        out = _encode(img.quantize(colors=PALETTE_COLOURS, method=Image.Quantize.MEDIANCUT))
        if len(out) <= limit:
            return out
        width = int(img.width * 0.8)
        if width < MIN_WIDTH:
            return None
        img = rgb.resize((width, max(1, round(rgb.height * width / rgb.width))), Image.Resampling.LANCZOS)


def _fit_chart(chart: Chart, limit: int) -> Chart | Text:
    small = shrink_png(chart.png, limit)
    if small is None:
        return Text(f"Chart “{chart.title}” is too large to show in Teams.", "muted")
    return chart if small is chart.png else dataclasses.replace(chart, png=small)


def fit_message(message: Message, limit: int = MAX_INLINE_PNG) -> Message:
    """``message`` with every chart (block or attachment) small enough to travel inline in a Teams card."""
    if not any(isinstance(b, Chart) for b in message.blocks) and not message.attachments:
        return message
    fitted: dict[int, Chart | Text] = {}

    def fit(c: Chart) -> Chart | Text:
        if id(c) not in fitted:
            fitted[id(c)] = _fit_chart(c, limit)
        return fitted[id(c)]

    blocks: list[Block] = [fit(b) if isinstance(b, Chart) else b for b in message.blocks]
    in_blocks = {b.png for b in message.blocks if isinstance(b, Chart)}
    attachments: list[Chart] = []
    for a in message.attachments:
        if a.png in in_blocks:  # the same picture as a block: fitted once, rendered once
            done = fit(next(b for b in message.blocks if isinstance(b, Chart) and b.png == a.png))
            if isinstance(done, Chart):
                attachments.append(done)
            continue
        got = fit(a)
        if isinstance(got, Chart):
            attachments.append(got)
        else:
            blocks.append(got)
    return dataclasses.replace(message, blocks=tuple(blocks), attachments=tuple(attachments))
