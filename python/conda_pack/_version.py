from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("conda-pack-rs")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.10.0"
