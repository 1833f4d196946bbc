"""graphmask: sequence models as symbolic graphs with explicit padding masks."""
__version__ = "0.1.0"
