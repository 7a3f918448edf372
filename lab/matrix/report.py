"""The fault matrix's summary: a row per fault, as JSON (every run in full) and a Markdown table.

    rows = summary(runs)        # runs: Outcome dicts (lab/matrix/run.py)
    write(rows, runs)           # -> [.build/faults/faults.json, .build/faults/faults.md]
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Optional

from lab import topology

OUT_DIR = topology.REPO / ".build" / "faults"
COLUMNS = (("fault", "fault"), ("runs", "runs"), ("passed", "passed"), ("worst_outage_s", "worst client outage (s)"),
           ("rows_lost", "rows lost"), ("two_writer_events", "two-writer events"))


def summary(runs: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """One row per fault, in the order the runs came."""
    rows: Dict[str, Dict[str, Any]] = {}
    for run in runs:
        row = rows.setdefault(run["fault"], {"fault": run["fault"], "runs": 0, "passed": 0, "worst_outage_s": None,
                                             "rows_lost": 0, "two_writer_events": 0, "violations": []})
        row["runs"] += 1
        row["passed"] += bool(run["passed"])
        if run["outage"] is not None:
            row["worst_outage_s"] = max(row["worst_outage_s"] or 0.0, round(run["outage"], 2))
        row["rows_lost"] += run["rows_lost"]
        row["two_writer_events"] += run["two_writer_events"]
        row["violations"] += [f"run {run['run']}: {v}" for v in run["violations"]]
    return list(rows.values())


def _cell(value: Optional[Any]) -> str:
    return "-" if value is None else str(value)


def markdown(rows: List[Dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(title for _key, title in COLUMNS) + " |",
             "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_cell(row[key]) for key, _title in COLUMNS) + " |" for row in rows]
    failed = [f"- {row['fault']} {v}" for row in rows for v in row["violations"]]
    return "\n".join(lines + ([""] + failed if failed else []))


def write(rows: List[Dict[str, Any]], runs: List[Dict[str, Any]], out_dir: Path = OUT_DIR) -> List[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    as_json, as_md = out_dir / "faults.json", out_dir / "faults.md"
    as_json.write_text(json.dumps({"faults": rows, "runs": runs}, indent=2, default=str) + "\n")
    as_md.write_text(markdown(rows) + "\n")
    return [as_json, as_md]
