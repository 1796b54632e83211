"""Make the player importable as a plain module from the conformance tests."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
