"""Storage elements: where job outputs live beyond the agent's work area (posix, xrootd)."""
