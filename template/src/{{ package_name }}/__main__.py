"""``python -m <package>``: the service's command line (train, serve, drift, ...)."""

from mlgen_runtime.cli import main as run


def main(argv: list[str] | None = None) -> int:
    return run(argv, package=__package__)


if __name__ == "__main__":
    raise SystemExit(main())
