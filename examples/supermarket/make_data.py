"""Write supermarket.csv: real shopping baskets (which departments one purchase used together).

Weka's `supermarket.arff` is one month of a New Zealand supermarket's transactions: 4,627
baskets, each marking which of 216 departments ("bread and cake", "tea", "frozen foods", ...;
some are anonymised as "department1" ...) it bought from, and a `total` of low or high. It is
the basket-like interaction set of the recommendation kind (issue 15): items used together, as
patch sheets are, with no users across baskets and no times. It ships in Debian's `weka`
package (`/usr/share/doc/weka/examples/`); this script takes it from there when weka is
installed, else from the package file that `apt-get download weka` fetches (6.6 MB, no Java
needed: the file is unpacked with dpkg-deb), and never from anywhere else.

Columns written: `basket` (the row number of the transaction: the "user"), `department` (the
item), `total` (the basket's low/high total). One row per department in a basket, in the file's
order. The CSV is not committed: the data is Weka's (GPL), so it is made where it is used.

Run: python make_data.py [--out supermarket.csv]
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
from pathlib import Path

import pandas as pd

INSTALLED = Path("/usr/share/doc/weka/examples/supermarket.arff")
MEMBER = "./usr/share/doc/weka/examples/supermarket.arff"
HERE = Path(__file__).resolve().parent
#: A recommendation service's settings for this file: baskets, no time, no weight, no metadata;
#: a random share of the rows held out (complete each basket from the rest of it).
RECOMMENDATION = {
    "user_column": "basket",
    "item_column": "department",
    "time_column": None,
    "weight_column": None,
    "item_columns": [],
    "split": "random",
}


def arff_text() -> str:
    """supermarket.arff from the installed weka package, or from its downloaded package file."""
    if INSTALLED.is_file():
        return INSTALLED.read_text(encoding="latin-1")
    with tempfile.TemporaryDirectory() as folder:
        download = ["apt-get", "download", "-qq", "weka"]
        if subprocess.run(download, cwd=folder, capture_output=True).returncode != 0:
            # A fresh machine has no package lists yet.
            subprocess.run(["apt-get", "update", "-qq"], check=True, capture_output=True)
            subprocess.run(download, cwd=folder, check=True, capture_output=True)
        package = next(Path(folder).glob("weka_*.deb"))
        archive = subprocess.run(
            ["dpkg-deb", "--fsys-tarfile", str(package)], check=True, capture_output=True
        ).stdout
        member = subprocess.run(
            ["tar", "-xO", MEMBER], input=archive, check=True, capture_output=True
        ).stdout
    return member.decode("latin-1")


def baskets(text: str | None = None) -> pd.DataFrame:
    """(basket, department, total) rows: one per department a basket bought from."""
    text = arff_text() if text is None else text
    header, _, data = text.partition("@data")
    names = [
        line.split("'")[1] if "'" in line else line.split()[1]
        for line in header.splitlines()
        if line.lower().startswith("@attribute")
    ]
    rows = []
    for basket, line in enumerate(line for line in data.splitlines() if line.strip()):
        values = line.strip().split(",")
        if len(values) != len(names):
            raise ValueError(
                f"supermarket.arff row {basket} has {len(values)} values, not {len(names)}"
            )
        total = values[-1]
        rows += [(basket, names[i], total) for i, value in enumerate(values[:-1]) if value == "t"]
    return pd.DataFrame(rows, columns=["basket", "department", "total"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "supermarket.csv")
    args = parser.parse_args()
    frame = baskets()
    frame.to_csv(args.out, index=False)
    print(f"wrote {args.out}: {frame['basket'].nunique()} baskets, {len(frame)} rows")


if __name__ == "__main__":
    main()
