"""Give ansible-test a local stand-in for the get-pip script it would otherwise download.

ansible-test bootstraps pip into each sanity-test virtual environment (created --without-pip) by
running ~/.ansible/test/cache/get_pip_<version>.py, which it fetches from a CI file host that this
machine cannot reach. A cached copy is used as is, so we put our own script there: it installs pip
from the PyPI wheel, which the ordinary pip client downloads through the machine's pip config.

    sanity_bootstrap.py HOME     (the scratch HOME that ansible-test will run with)
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

STAND_IN = Path(__file__).with_name("sanity_bootstrap_get_pip.py")


def wanted_pip_version() -> str:
    """The pip version this ansible-test release pins for its virtual environments."""
    from ansible_test._internal.python_requirements import get_venv_packages

    python = SimpleNamespace(version=f"{sys.version_info[0]}.{sys.version_info[1]}")
    return get_venv_packages(python)["pip"]  # type: ignore[arg-type]


def fetch_pip_wheel(version: str, wheels: Path) -> Path:
    """Download pip's wheel once; later runs reuse it (the scratch HOME survives between runs)."""
    found = sorted(wheels.glob(f"pip-{version}-*.whl"))
    if not found:
        wheels.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary", ":all:",
             "--dest", str(wheels), f"pip=={version}"],
            check=True,
        )
        found = sorted(wheels.glob(f"pip-{version}-*.whl"))
    if not found:
        raise SystemExit(f"pip download left no pip-{version} wheel in {wheels}")
    return found[-1]


def install_stand_in(home: Path) -> Path:
    """Place the stand-in where ansible-test looks for its cached get-pip script; return its path."""
    version = wanted_pip_version()
    cache = home / ".ansible" / "test" / "cache"
    fetch_pip_wheel(version, cache / "wheels")
    target = cache / f"get_pip_{version.replace('.', '_')}.py"
    shutil.copyfile(STAND_IN, target)
    return target


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    print(install_stand_in(Path(sys.argv[1])))
