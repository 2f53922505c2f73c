"""mlgen's runtime: the engine of a generated service, versioned and released with mlgen.

A service wires it with two lines (``mlgen_runtime.cli.main`` for its command line and
``mlgen_runtime.serving.app.create_app`` for its HTTP app); everything problem-specific is
read from the service's ``configs/config.yaml`` and its ``custom_features.py``.
"""

__version__ = "0.2.0"
