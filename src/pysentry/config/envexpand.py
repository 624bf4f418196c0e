"""Go ``os.ExpandEnv``, ported literally (``$VAR``, ``${VAR}``, shell special variables).

Unset variables expand to "". Invalid syntax (``${}``, an unclosed ``${``) is eaten, as Go does; a
``$`` not followed by a name is kept.
"""

from __future__ import annotations

from collections.abc import Mapping

_SPECIAL = frozenset("*#$@!?-0123456789")


def _is_alnum(ch: str) -> bool:
    return ch == "_" or (ch.isascii() and ch.isalnum())


def _shell_name(s: str) -> tuple[str, int]:
    """Go ``os.getShellName``: the variable name after ``$`` and how many characters it used."""
    if s[0] == "{":
        if len(s) > 2 and s[1] in _SPECIAL and s[2] == "}":
            return s[1:2], 3
        for i in range(1, len(s)):
            if s[i] == "}":
                if i == 1:
                    return "", 2  # bad syntax; eat "${}"
                return s[1:i], i + 1
        return "", 1  # bad syntax; eat "${"
    if s[0] in _SPECIAL:
        return s[0:1], 1
    i = 0
    while i < len(s) and _is_alnum(s[i]):
        i += 1
    return s[:i], i


def expand_env(text: str, env: Mapping[str, str]) -> str:
    """Go ``os.ExpandEnv``: ``$VAR`` and ``${VAR}`` replaced, unset variables become ""."""
    out: list[str] = []
    i = 0
    j = 0
    while j < len(text):
        if text[j] == "$" and j + 1 < len(text):
            out.append(text[i:j])
            name, width = _shell_name(text[j + 1 :])
            if name == "" and width > 0:
                pass  # invalid syntax: the characters are eaten
            elif name == "":
                out.append("$")
            else:
                out.append(env.get(name, ""))
            j += width
            i = j + 1
        j += 1
    out.append(text[i:])
    return "".join(out)
