#!/usr/bin/env python3
"""Print the watcher benchmark table (issue 6); `scripts/bench watcher` runs the same suite."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import watcher

if __name__ == "__main__":
    print(watcher.run())
