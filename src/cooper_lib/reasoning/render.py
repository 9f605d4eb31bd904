"""Rendering a `ReasoningTrace`: a self-contained HTML page and a PNG storyboard (the docs' picture
of a trace). `ReasoningTrace.to_html` and `ReasoningTrace.to_image` call these; the trace module
holds only the data, so this one takes the trace as it is (typed `Any`: it sits below that module).
"""

from __future__ import annotations

import base64
import html
import io
import textwrap
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

__all__ = ["png_base64", "trace_to_html", "trace_to_image"]


def trace_to_html(trace: Any, path: str | Path) -> Path:
    """Write a trace-contained HTML page of the trace (images inline) to `path`."""
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>cooper-lib reasoning trace</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>Question</h1><p class='q'>{html.escape(trace.question)}</p>",
        f"<figure>{_img_tag(trace.image)}<figcaption>input image</figcaption></figure>",
    ]
    for step in trace.steps:
        meta = f"turn {step.turn + 1} &middot; {step.tokens} tokens &middot; {step.seconds * 1000:.1f} ms"
        if step.kind == "text":
            who = "controller" if step.forced else "model"
            finish = f" &middot; ended by {step.finish}" if step.finish else ""
            parts.append(
                f"<div class='step text'><div class='meta'>{who} &middot; {meta}{finish}</div>"
                f"<pre>{_highlight(step.text)}</pre></div>"
            )
        elif step.kind == "tool_call":
            parts.append(f"<div class='step call'>tool call: <b>{html.escape(step.modality or '')}</b></div>")
        elif step.kind == "map":
            stats = step.to_dict()["map"]
            parts.append(
                f"<div class='step map'><div class='meta'>{html.escape(step.modality or '')} map &middot; {meta}</div>"
                f"shape {stats['shape']}, values {stats['min']:.3g} to {stats['max']:.3g}</div>"
            )
        elif step.kind == "prompt":
            parts.append(
                f"<div class='step prompt'><div class='meta'>inserted prompt &middot; {meta}</div><pre>{html.escape(step.text)}</pre></div>"
            )
        elif step.image is not None:
            parts.append(
                f"<div class='step image'><div class='meta'>inserted image &middot; {meta}</div>"
                f"<figure>{_img_tag(step.image)}<figcaption>{html.escape(step.modality or '')}</figcaption></figure>"
                f"<pre>{html.escape(step.text)}</pre></div>"
            )
    answer = html.escape(trace.answer if trace.answer is not None else str(trace.raw_answer))
    parts.append(
        f"<h1>Answer</h1><p class='q'>{answer}</p><p class='meta'>stopped by {html.escape(trace.stop_reason)} "
        f"&middot; {trace.total_tokens} tokens in context &middot; {trace.seconds:.2f} s</p></body></html>"
    )
    out = Path(path)
    out.write_text("".join(parts), encoding="utf-8")
    return out


def trace_to_image(trace: Any, width: int = 720, image_height: int = 160) -> Image.Image:
    """`trace` (a `ReasoningTrace`) as one picture: question and input image, each turn's text, each inserted
    image with its prompt, and the answer, top to bottom."""
    font = ImageFont.load_default(size=14)
    chars = max(20, (width - 24) // 8)
    blocks: list[tuple[str, Any]] = [
        ("title", f"Q: {trace.question}"),
        ("image", (trace.image, "input image")),
    ]
    for step in trace.steps:
        if step.kind == "text":
            who = "controller" if step.forced else "model"
            blocks.append(
                (
                    "label",
                    f"turn {step.turn + 1} ({who}, {step.tokens} tokens, {step.seconds * 1000:.0f} ms)",
                )
            )
            blocks.append(("text", step.text))
        elif step.kind == "image" and step.image is not None:
            blocks.append(("image", (step.image, f"inserted {step.modality} map")))
            blocks.append(("text", step.text))
        elif step.kind == "prompt":
            blocks.append(("text", step.text))
    blocks.append(
        (
            "title",
            f"A: {trace.answer if trace.answer is not None else trace.raw_answer} ({trace.stop_reason})",
        )
    )
    rendered: list[Image.Image] = []
    for kind, value in blocks:
        if kind == "image":
            picture, caption = value
            scaled = picture.resize(
                (max(1, round(picture.width * image_height / picture.height)), image_height),
                Image.Resampling.NEAREST,
            )
            tile = Image.new("RGB", (width, image_height + 24), "white")
            tile.paste(scaled, (12, 4))
            ImageDraw.Draw(tile).text((12, image_height + 6), caption, fill="#555555", font=font)
            rendered.append(tile)
            continue
        lines = [
            line
            for paragraph in str(value).splitlines() or [""]
            for line in textwrap.wrap(paragraph, chars, break_on_hyphens=False) or [""]
        ]
        tile = Image.new("RGB", (width, 18 * len(lines) + 8), "#f3f5f8" if kind == "text" else "white")
        draw = ImageDraw.Draw(tile)
        colour = {"title": "black", "label": "#1f5fa8", "text": "#222222"}[kind]
        for i, line in enumerate(lines):
            draw.text((12, 4 + 18 * i), line, fill=colour, font=font)
        rendered.append(tile)
    canvas = Image.new("RGB", (width, sum(t.height for t in rendered) + 6 * len(rendered)), "white")
    y = 0
    for tile in rendered:
        canvas.paste(tile, (0, y))
        y += tile.height + 6
    return canvas


_CSS = (
    "body{font-family:sans-serif;max-width:860px;margin:2em auto;color:#222}"
    "pre{white-space:pre-wrap;background:#f3f5f8;padding:.6em;border-radius:4px}"
    ".meta{color:#666;font-size:.85em}.step{margin:.8em 0}.call{color:#1f5fa8}"
    ".tag{color:#b0306a;font-weight:bold}img{max-height:240px;image-rendering:pixelated}"
    ".q{font-size:1.1em}"
)


def _highlight(text: str) -> str:
    """HTML-escape `text` and colour its tags."""
    escaped = html.escape(text)
    out, i = [], 0
    while i < len(escaped):
        start = escaped.find("&lt;", i)
        end = escaped.find("&gt;", start) if start >= 0 else -1
        if start < 0 or end < 0:
            out.append(escaped[i:])
            break
        out.append(escaped[i:start])
        out.append(f"<span class='tag'>{escaped[start : end + 4]}</span>")
        i = end + 4
    return "".join(out)


def png_base64(image: Image.Image) -> str:
    """`image` as a base64-encoded PNG string."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _img_tag(image: Image.Image) -> str:
    return f"<img src='data:image/png;base64,{png_base64(image)}' alt=''>"
