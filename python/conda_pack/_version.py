# The package's version, written out: reading it from the installed distribution's
# metadata (importlib.metadata) cost a fifth of `conda-pack`'s start-up. A test keeps it
# equal to pyproject.toml's.
__version__ = "0.10.0"
