"""`python -m mlgen` runs the command line."""

from mlgen.cli import app

app(prog_name="mlgen")
