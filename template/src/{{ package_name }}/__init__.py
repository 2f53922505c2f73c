"""The service's own package: your feature code (custom_features.py) and the wiring.

The engine (training, registry, serving, monitoring) is the pinned ``mlgen-runtime`` package,
which reads ``configs/config.yaml``. ``python -m <this package> --help`` lists the commands.
"""

__version__ = "0.1.0"
