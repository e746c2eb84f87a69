"""The `/cse-backup` text as people type it: a sub-command, then `key=value` pairs.

Slack sends the text escaped (`&lt;` for `<`) and phones and macOS turn quotes into typographic
ones; both are undone here. Keys come in any order; a value may be quoted ("..." or '...'), and an
unquoted value runs on over the following words until the next `key=`, so
`schedule=0 2 * * * reserve=7` reads as people mean it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from bot.slack.escape import unescape

KEYS = ("engine", "schedule", "reserve", "max_files", "reason")
_ALIASES = {"maxfiles": "max_files", "max-files": "max_files"}
_QUOTES = str.maketrans({"“": '"', "”": '"', "„": '"', "‟": '"', "‘": "'", "’": "'", "‚": "'"})
_KEY = re.compile(r"([A-Za-z_][A-Za-z0-9_-]*)=")
MAX_TEXT = 2000


@dataclass(frozen=True)
class Command:
    verb: str  # lower-case first word, "" when the text is empty
    rest: str  # the remainder, unescaped, quotes normalised, stripped


def split_command(text: str) -> Command:
    cleaned = unescape(text or "").translate(_QUOTES).strip()
    verb, _, rest = cleaned.partition(" ")
    return Command(verb=verb.lower(), rest=rest.strip())


@dataclass(frozen=True)
class QuickArgs:
    """The values given on the command line, by key; `problems` name everything not understood."""

    values: dict[str, str] = field(default_factory=dict)
    problems: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.values and not self.problems


def _shown(text: str, limit: int = 40) -> str:
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return "`" + text.replace("`", "ˋ") + "`"


def parse_quick_args(text: str) -> QuickArgs:
    """`engine=prod schedule="0 2 * * *"` -> {"engine": "prod", "schedule": "0 2 * * *"}."""
    text = unescape(text).translate(_QUOTES)
    problems: list[str] = []
    if len(text) > MAX_TEXT:
        return QuickArgs(problems=(f"The command text is longer than {MAX_TEXT} characters.",))
    values: dict[str, str] = {}
    unknown: list[str] = []
    stray: list[str] = []
    current: str | None = None  # the key an unquoted value may still run on into
    pos, end = 0, len(text)
    while pos < end:
        if text[pos].isspace():
            pos += 1
            continue
        match = _KEY.match(text, pos)
        if match is None:
            word_end = pos
            while word_end < end and not text[word_end].isspace():
                word_end += 1
            word = text[pos:word_end]
            if current is not None:
                values[current] = f"{values[current]} {word}"
            else:
                stray.append(word)
            pos = word_end
            continue
        raw_key = match.group(1)
        key = _ALIASES.get(raw_key.lower(), raw_key.lower())
        pos = match.end()
        quoted = pos < end and text[pos] in "\"'"
        if quoted:
            quote = text[pos]
            close = text.find(quote, pos + 1)
            if close < 0:
                problems.append(
                    f"The value of `{raw_key}` opens a quote ({quote}) that never closes."
                )
                value, pos = text[pos + 1 :], end
            else:
                value, pos = text[pos + 1 : close], close + 1
        else:
            value_end = pos
            while value_end < end and not text[value_end].isspace():
                value_end += 1
            value, pos = text[pos:value_end], value_end
        if key not in KEYS:
            unknown.append(raw_key)
            current = None
            continue
        if key in values:
            problems.append(f"`{key}` is given more than once.")
        values[key] = value
        current = None if quoted else key
    if unknown:
        names = ", ".join(_shown(k) for k in unknown)
        known = ", ".join(f"`{k}`" for k in KEYS)
        plural = "s" if len(unknown) > 1 else ""
        problems.insert(0, f"Unknown key{plural} {names}; the keys are {known}.")
    if stray:
        words = " ".join(stray)
        problems.append(f"{_shown(words)} is not a `key=value` pair, e.g. `engine=prod`.")
    return QuickArgs(values={k: v.strip() for k, v in values.items()}, problems=tuple(problems))
