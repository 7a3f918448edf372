"""The lab's fault matrix (make faults): catalogue.py the faults, invariants.py what must hold
after each, run.py the runner, report.py the JSON and Markdown table."""
