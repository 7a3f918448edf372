"""Stand-in for get-pip.py, run by ansible-test to put pip into a fresh virtual environment.

Installed by sanity_bootstrap.py as ~/.ansible/test/cache/get_pip_<version>.py, next to a wheels/
folder holding pip's wheel from PyPI. Like get-pip.py, it runs pip from that wheel (a wheel is an
importable zip) to install the requested pip; get-pip's own flags --no-setuptools / --no-wheel are
honoured by not adding those packages.
"""

from __future__ import annotations

import os
import sys

GET_PIP_ONLY_FLAGS = ("--no-setuptools", "--no-wheel")


def pip_wheel(wheels: str, args: list[str]) -> str:
    """The wheel matching the pip==X requested on the command line (or the newest one there)."""
    wanted = [a.split("==", 1)[1] for a in args if a.startswith("pip==")]
    names = sorted(n for n in os.listdir(wheels) if n.startswith("pip-") and n.endswith(".whl"))
    if wanted:
        names = [n for n in names if n.startswith(f"pip-{wanted[0]}-")]
    if not names:
        raise SystemExit(f"no pip wheel for {wanted or 'pip'} in {wheels}; run tests/support/sanity_bootstrap.py")
    return os.path.join(wheels, names[-1])


def main() -> int:
    wheels = os.path.join(os.path.dirname(os.path.abspath(__file__)), "wheels")
    args = [a for a in sys.argv[1:] if a not in GET_PIP_ONLY_FLAGS]
    sys.path.insert(0, pip_wheel(wheels, args))
    from pip._internal.cli.main import main as pip_main  # pylint: disable=import-outside-toplevel

    return pip_main(["install", "--upgrade", "--force-reinstall", "--find-links", wheels] + args)


if __name__ == "__main__":
    sys.exit(main())
