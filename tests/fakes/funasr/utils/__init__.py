"""Stand-in for funasr.utils (see the package docstring)."""
