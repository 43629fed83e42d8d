"""cuecast: one camera captured once, corrected once, fanned out to independent consumers."""

__version__ = "0.1.0"
