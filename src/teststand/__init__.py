"""teststand: orchestration of detector-module test stands."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("teststand")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"
