"""mlgen: turn a short brief about an ML problem into a working, production-shaped ML service."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("mlgen")
except PackageNotFoundError:  # running from a checkout that was never installed
    __version__ = "0.2.0"
