"""A tabular prediction service: training, registry, HTTP serving and monitoring.

Run ``python -m <package> --help`` for the commands.
"""

__version__ = "0.1.0"
