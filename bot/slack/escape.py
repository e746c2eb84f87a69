"""Escaping of user-typed text for Slack `mrkdwn` (so it can never mention, ping or link)."""

from __future__ import annotations

# Slack's own rule: only these three characters are control characters in mrkdwn.
_TABLE = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})


def escape(text: str) -> str:
    """`<!channel>` -> `&lt;!channel&gt;`: shown as typed, never a mention or a link."""
    return text.translate(_TABLE)


def unescape(text: str) -> str:
    """The reverse, for text Slack sends escaped (slash command text)."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def code(text: str) -> str:
    """User text as inline code: escaped, with backticks replaced so the span cannot end early."""
    return "`" + escape(text.replace("`", "ˋ")) + "`"
