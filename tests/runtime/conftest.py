"""Fixtures of the runtime tests: the export variants are shared (tests/fixtures_export.py, in_graph_onnx)."""

from __future__ import annotations

import sys
from pathlib import Path

# The helpers live beside this file.
sys.path.insert(0, str(Path(__file__).parent))
