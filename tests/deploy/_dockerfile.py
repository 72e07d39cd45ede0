"""The Dockerfile read as its instructions, stage by stage, for the tests that check what
it says and run what it runs (there is no Docker engine here to build it)."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Instruction", "Stage", "parse"]


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str

    def exec_form(self) -> list[str]:
        """The arguments of an exec-form (JSON array) instruction."""
        start = self.arguments.index("[")
        words = json.loads(self.arguments[start:])
        assert isinstance(words, list)
        return [str(word) for word in words]


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def one(self, keyword: str) -> Instruction:
        (found,) = self.all(keyword)
        return found

    def env(self) -> dict[str, str]:
        """The ENV instructions' variables (KEY=VALUE form), `$PATH`-style references left
        as they are."""
        variables: dict[str, str] = {}
        for instruction in self.all("ENV"):
            for word in shlex.split(instruction.arguments):
                key, _, value = word.partition("=")
                variables[key] = value
        return variables


def parse(path: Path) -> list[Stage]:
    """The stages of a Dockerfile, in order."""
    logical: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        logical.append(pending + line)
        pending = ""
    stages: list[Stage] = []
    for line in logical:
        keyword, _, arguments = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            words = arguments.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(words[0], name))
        else:
            stages[-1].instructions.append(Instruction(keyword, arguments.strip()))
    return stages
