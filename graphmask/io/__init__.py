"""Files: graphmask's own model archive (``graphmask.io.saving``).

The public names are in ``graphmask.saving``.
"""
