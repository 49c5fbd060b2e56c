"""User-facing errors: the CLI prints them as one line and exits 2 (no traceback)."""


class SvgapError(Exception):
    """Bad input or an unusable environment, phrased as one line that names the problem."""
