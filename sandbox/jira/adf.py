"""Conversions between stored plain/wiki text and Atlassian Document Format (REST v3 bodies).

EMULATOR CODE. The emulator stores text; v3 responses render it as ADF and v3 requests must send ADF.
"""

from __future__ import annotations

import html
from typing import Any

ADF_REQUIRED = "Operation value must be an Atlassian Document (see the Atlassian Document Format)"


def text_to_adf(text: str) -> dict[str, Any]:
    """Render text as an ADF document: blank lines split paragraphs, newlines become hard breaks."""
    paragraphs: list[dict[str, Any]] = []
    for block in text.split("\n\n"):
        if not block:
            continue
        content: list[dict[str, Any]] = []
        for index, line in enumerate(block.split("\n")):
            if index:
                content.append({"type": "hardBreak"})
            if line:
                content.append({"type": "text", "text": line})
        paragraphs.append({"type": "paragraph", "content": content})
    return {"type": "doc", "version": 1, "content": paragraphs}


def is_adf(value: Any) -> bool:
    """Whether a request value is an ADF document (type doc, version 1, content list)."""
    return (
        isinstance(value, dict)
        and value.get("type") == "doc"
        and value.get("version") == 1
        and isinstance(value.get("content"), list)
    )


def adf_to_text(document: dict[str, Any]) -> str:
    """Flatten an ADF document to wiki-like text (the inverse of :func:`text_to_adf`)."""
    blocks = [_block_text(node) for node in document.get("content", [])]
    return "\n\n".join(block for block in blocks if block)


def _block_text(node: dict[str, Any]) -> str:
    kind = node.get("type")
    children = node.get("content", [])
    if kind == "heading":
        level = node.get("attrs", {}).get("level", 1)
        return f"h{level}. {_inline_text(children)}"
    if kind in ("bulletList", "orderedList"):
        marker = "*" if kind == "bulletList" else "#"
        items = [_block_text(child).replace("\n\n", "\n") for child in children]
        return "\n".join(f"{marker} {item}" for item in items)
    if kind in ("listItem", "blockquote", "panel", "expand"):
        return "\n\n".join(_block_text(child) for child in children)
    if kind == "codeBlock":
        return "{code}" + _inline_text(children) + "{code}"
    if kind == "rule":
        return "----"
    return _inline_text(children) if kind == "paragraph" else _inline_text([node])


def _inline_text(nodes: list[dict[str, Any]]) -> str:
    parts: list[str] = []
    for node in nodes:
        kind = node.get("type")
        attrs = node.get("attrs", {})
        if kind == "text":
            text = str(node.get("text", ""))
            link = next((m for m in node.get("marks", []) if m.get("type") == "link"), None)
            parts.append(f"[{text}|{link['attrs']['href']}]" if link else text)
        elif kind == "hardBreak":
            parts.append("\n")
        elif kind == "mention":
            parts.append(f"[~accountid:{attrs.get('id', '')}]")
        elif kind == "emoji":
            parts.append(str(attrs.get("text") or attrs.get("shortName", "")))
        elif kind in ("inlineCard", "blockCard"):
            parts.append(str(attrs.get("url", "")))
        else:
            parts.append(_inline_text(node.get("content", [])))
    return "".join(parts)


def render_html(text: str) -> str:
    """The ``renderedBody`` of a text: escaped paragraphs with line breaks."""
    blocks = [html.escape(block).replace("\n", "<br/>") for block in text.split("\n\n") if block]
    return "".join(f"<p>{block}</p>" for block in blocks)
