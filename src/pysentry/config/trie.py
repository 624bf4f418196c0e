"""The access-control operation trie, a literal port of Dapr's ``pkg/config/acl_trie.go``.

Operations are split on ``/``; each segment ``s`` is a node ``"/"+s``. Search semantics (prefix
matching, ``/*`` only at the end, ``/**`` for anything below, ``*`` globs) are Dapr's, including its
quirks: a policy for ``/op1`` also covers ``/op1/x/y``, and the first definition of an operation
wins.
"""

from __future__ import annotations

from dataclasses import dataclass, field

_SINGLE = "/*"
_MULTI = "/**"


@dataclass(frozen=True, slots=True)
class OperationAction:
    """What one ``operations[]`` entry says: per-verb actions and the action for gRPC apps."""

    operation_name: str
    verb_action: dict[str, str]
    operation_action: str


@dataclass(slots=True)
class _Node:
    char: str
    data: OperationAction | None = None
    children: list[_Node] = field(default_factory=list)


def is_match(target: str, pattern: str) -> bool:
    """Dapr's ``isMatch``: ``*`` matches any run of characters, including none."""
    tl, pl = len(target), len(pattern)
    m = [[False] * (pl + 1) for _ in range(tl + 1)]
    m[0][0] = True
    for j in range(1, pl + 1):
        if pattern[j - 1] != "*":
            break
        m[0][j] = True
    for i in range(1, tl + 1):
        for j in range(1, pl + 1):
            if pattern[j - 1] == "*":
                m[i][j] = m[i][j - 1] or m[i - 1][j]
            elif target[i - 1] == pattern[j - 1]:
                m[i][j] = m[i - 1][j - 1]
    return m[tl][pl]


def _find_with_wildcard(char: str, nodes: list[_Node], is_end: bool) -> _Node | None:
    for node in nodes:
        if node.char == char:
            return node
        if node.char == _SINGLE:
            if is_end:
                return node
            continue
        if node.char == _MULTI:
            return node
        if is_match(char, node.char):
            return node
    return None


class OperationTrie:
    """A literal port of Dapr's ``config.Trie`` (first definition of an operation wins)."""

    __slots__ = ("_root",)

    def __init__(self) -> None:
        self._root = _Node("/")

    def insert(self, operation: str, data: OperationAction) -> None:
        parts = operation.split("/")
        node = self._root
        for index in range(1, len(parts)):
            char = "/" + parts[index]
            sub = next((n for n in node.children if n.char == char), None)
            if sub is None:
                new = _Node(char, data if index == len(parts) - 1 else None)
                node.children.append(new)
                node = new
            elif index == len(parts) - 1:
                if sub.data is None:
                    sub.data = data
            else:
                node = sub

    def search(self, operation: str) -> OperationAction | None:
        node = self._root
        parts = operation.split("/")
        for index in range(1, len(parts)):
            is_end = index == len(parts) - 1
            found = _find_with_wildcard("/" + parts[index], node.children, is_end)
            if found is None:
                return None
            node = found
            if node.data is not None:
                if not is_end and node.char.endswith(_SINGLE) and not node.char.endswith(_MULTI):
                    continue
                return node.data
            if is_end:
                star = _find_with_wildcard(_SINGLE, node.children, is_end)
                if star is not None and star.data is not None:
                    return star.data
        return None
