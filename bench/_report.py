"""How results are shown: a text table on stdout and JSON in bench/results/<name>.json.

A `Row` is one figure: the median over repeated runs of their rate (or of another figure
of theirs, such as a latency percentile), the runs it came from, its ratios to other rows
measured in the same invocation, and the target it is held to. The CPU column gives, per
item, the CPU time that the load generator ("client"), the server's event-loop process and
its workers spent, and the rest of the machine ("other"; medians over runs); "noisy" counts
the runs during which the rest of the machine used more than NOISY_CORES.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench._measure import Run, median

__all__ = ["RESULTS", "Row", "format_table", "write_json"]

RESULTS = Path(__file__).resolve().parent / "results"
_ROLES = ("client", "server", "workers", "other")
NOISY_CORES = 0.2
"""A run during which the rest of the machine used more CPU than this is flagged."""


@dataclass
class Row:
    name: str
    unit: str
    runs: list[Run]
    figure: str = "rate"
    """What of each run: "rate" (items per second), or a key of `Run.detail`."""
    ratios: dict[str, float] = field(default_factory=dict)
    """Ratio of `value` to the value of the named rows."""
    target: str = ""
    met: bool | None = None

    @property
    def samples(self) -> list[float]:
        return [run.rate if self.figure == "rate" else run.detail[self.figure] for run in self.runs]

    @property
    def value(self) -> float:
        return median(self.samples)

    def cpu_us_per_item(self) -> dict[str, float]:
        """Empty for in-process rows, whose runs record no CPU by role."""
        runs = [run for run in self.runs if run.count and run.cpu_s]
        if not runs:
            return {}
        return {role: median(run.cpu_s[role] / run.count * 1e6 for run in runs) for role in _ROLES}

    def noisy_runs(self) -> int:
        """Runs during which other processes used more than NOISY_CORES of the machine."""
        return sum(
            1 for run in self.runs if run.cpu_s.get("other", 0.0) > NOISY_CORES * run.seconds
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": self.value,
            "unit": self.unit,
            "figure": self.figure,
            "samples": self.samples,
            "ratios": self.ratios,
            "target": self.target,
            "met": self.met,
            "cpu_us_per_item": self.cpu_us_per_item(),
            "noisy_runs": self.noisy_runs(),
            "runs": [dataclasses.asdict(run) | {"rate": run.rate} for run in self.runs],
        }


def _number(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def format_table(rows: list[Row]) -> str:
    header = [
        "measurement",
        "median",
        "unit",
        "min-max",
        "err",
        "ratio",
        "target",
        "CPU µs/item c/s/w/o",
        "noisy",
    ]
    lines = []
    for row in rows:
        ratios = "; ".join(f"{r:.2f}x {name}" for name, r in row.ratios.items())
        target = row.target + ("" if row.met is None else " ✓" if row.met else " ✗")
        cpu = row.cpu_us_per_item()
        lines.append(
            [
                row.name,
                _number(row.value),
                row.unit,
                f"{_number(min(row.samples))}-{_number(max(row.samples))}",
                str(sum(run.errors for run in row.runs)),
                ratios,
                target,
                "/".join(f"{cpu[role]:.0f}" for role in _ROLES) if cpu else "",
                f"{row.noisy_runs()}/{len(row.runs)}" if cpu else "",
            ]
        )
    widths = [max(len(cells[i]) for cells in [header, *lines]) for i in range(len(header))]
    text = [
        " | ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True))
        for cells in [header, *lines]
    ]
    text.insert(1, "-+-".join("-" * width for width in widths))
    return "\n".join(line.rstrip() for line in text)


def write_json(name: str, payload: dict[str, Any], results: Path = RESULTS) -> Path:
    results.mkdir(parents=True, exist_ok=True)
    path = results / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path
