"""The runtime's EASE with the SLIT part's weight as given (0: without it).

python ease.py W [...] [--test]
"""

import sys

from harness import evaluate, np, runtime_scorer, sp  # noqa: F401

which = ("val", "test") if "--test" in sys.argv else ("val",)
print("popularity", evaluate(runtime_scorer("popularity", {}), which), flush=True)
for arg in (a for a in sys.argv[1:] if not a.startswith("--")):
    print(
        "ease transition",
        arg,
        evaluate(runtime_scorer("ease", {"transition": float(arg)}), which),
        flush=True,
    )
