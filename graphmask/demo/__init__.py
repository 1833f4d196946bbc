"""``graphmask demo``: a masked character-level language model (``run``) and its data
(``data``, generated in the package, nothing downloaded)."""
