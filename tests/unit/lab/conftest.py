# -*- coding: utf-8 -*-
"""The lab package (not part of the collection) is imported from the checkout's top."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
