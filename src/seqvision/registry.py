"""A named table of things (models, datasets) that the CLI, presets and reports discover by name."""

from __future__ import annotations

from typing import Generic, TypeVar

from seqvision.errors import SeqvisionError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str, error: type[SeqvisionError]) -> None:
        self.kind = kind
        self.error = error
        self._entries: dict[str, T] = {}

    def add(self, name: str, entry: T) -> None:
        if name in self._entries:
            raise ValueError(f"{self.kind} name {name!r} is registered twice")
        self._entries[name] = entry

    def names(self) -> list[str]:
        return sorted(self._entries)

    def get(self, name: str) -> T:
        if name not in self._entries:
            raise self.error(f"unknown {self.kind} {name!r}; available {self.kind}s: {', '.join(self.names())}.")
        return self._entries[name]
