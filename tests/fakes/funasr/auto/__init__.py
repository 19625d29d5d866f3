"""Stand-in for funasr.auto (see the package docstring)."""
