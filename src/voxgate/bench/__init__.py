"""Load generation and measurement (``voxgate bench`` and bench/ scenarios)."""
