"""Write patch_sheets.csv: SYNTHETIC patch sheets (which audio equipment a show uses).

No public data set of live-sound patch sheets exists that we could ship, so this script makes
one, seeded. A patch sheet is one show's list of equipment: the mics and DIs on each input,
the console, the monitoring, the wireless. The structure a recommender should find is built in
the way engineers actually assemble sheets:

* a sheet is one kind of show (rock band, jazz combo, singer-songwriter, podcast, conference,
  theatre, orchestra/choir, DJ set, worship service), and each kind has its usual inputs
  (a drum kit brings kick, snare, toms and overhead mics; a conference brings lavaliers,
  headsets and a lectern mic);
* for each input position the engineer picks one of a few interchangeable models (a kick mic
  is a Beta 52A, a D112 or a D6), with a personal preference that repeats over their sheets;
* the console and the monitoring follow the venue size, and engineers stay loyal to a console
  family;
* newer equipment (digital wireless released in 2019-2021) replaces older models over time;
* quantities: e.g. 4 x SM57 on one sheet.

Columns: sheet_id, engineer, created_at, equipment, category, brand, quantity. Every row is
one item on one sheet; the item metadata (category, brand) is the same on every row of an item.
Run: python make_data.py (writes patch_sheets.csv beside this file).
"""

from __future__ import annotations

import csv
from datetime import date, timedelta
from pathlib import Path

import numpy as np

SEED = 15
N_SHEETS = 700
N_ENGINEERS = 60

# equipment -> (category, brand, first year on sheets)
CATALOGUE = {
    "Shure Beta 52A": ("microphone", "Shure", 2015),
    "AKG D112 MkII": ("microphone", "AKG", 2015),
    "Audix D6": ("microphone", "Audix", 2015),
    "Shure Beta 91A": ("microphone", "Shure", 2015),
    "Shure SM57": ("microphone", "Shure", 2015),
    "Sennheiser e906": ("microphone", "Sennheiser", 2015),
    "Sennheiser e604": ("microphone", "Sennheiser", 2015),
    "Audix D2": ("microphone", "Audix", 2015),
    "Shure Beta 98AMP": ("microphone", "Shure", 2015),
    "AKG C414 XLS": ("microphone", "AKG", 2015),
    "Rode NT5": ("microphone", "Rode", 2015),
    "Neumann KM 184": ("microphone", "Neumann", 2015),
    "Shure SM81": ("microphone", "Shure", 2015),
    "Shure SM58": ("microphone", "Shure", 2015),
    "Shure Beta 58A": ("microphone", "Shure", 2015),
    "Sennheiser e935": ("microphone", "Sennheiser", 2015),
    "Neumann KMS 105": ("microphone", "Neumann", 2015),
    "Shure SM7B": ("microphone", "Shure", 2015),
    "Electro-Voice RE20": ("microphone", "Electro-Voice", 2015),
    "Rode PodMic": ("microphone", "Rode", 2019),
    "Royer R-121": ("microphone", "Royer", 2015),
    "Sennheiser MD 421 II": ("microphone", "Sennheiser", 2015),
    "DPA 4099": ("microphone", "DPA", 2015),
    "Schoeps CMC 6 MK4": ("microphone", "Schoeps", 2015),
    "DPA 4011A": ("microphone", "DPA", 2015),
    "Shure MX412 gooseneck": ("microphone", "Shure", 2015),
    "Radial J48": ("di box", "Radial", 2015),
    "Radial ProDI": ("di box", "Radial", 2015),
    "BSS AR-133": ("di box", "BSS", 2015),
    "Radial ProD2": ("di box", "Radial", 2015),
    "Radial JDI": ("di box", "Radial", 2015),
    "DPA 4060": ("lavalier", "DPA", 2015),
    "Sennheiser ME 2-II": ("lavalier", "Sennheiser", 2015),
    "DPA 4088": ("headset", "DPA", 2015),
    "Countryman E6": ("headset", "Countryman", 2015),
    "Shure ULXD2/B58": ("wireless", "Shure", 2015),
    "Shure ULXD1 bodypack": ("wireless", "Shure", 2015),
    "Shure Axient Digital AD2": ("wireless", "Shure", 2019),
    "Shure Axient Digital AD1": ("wireless", "Shure", 2019),
    "Sennheiser ew 100 G4 handheld": ("wireless", "Sennheiser", 2015),
    "Sennheiser ew 100 G4 bodypack": ("wireless", "Sennheiser", 2015),
    "Sennheiser EW-D handheld": ("wireless", "Sennheiser", 2020),
    "Sennheiser EW-D bodypack": ("wireless", "Sennheiser", 2020),
    "Yamaha CL5": ("console", "Yamaha", 2015),
    "Yamaha QL1": ("console", "Yamaha", 2015),
    "Yamaha DM7": ("console", "Yamaha", 2023),
    "Allen & Heath SQ-6": ("console", "Allen & Heath", 2017),
    "Allen & Heath dLive S5000": ("console", "Allen & Heath", 2015),
    "Allen & Heath CQ-20B": ("console", "Allen & Heath", 2021),
    "DiGiCo SD9": ("console", "DiGiCo", 2015),
    "DiGiCo Quantum 338": ("console", "DiGiCo", 2019),
    "Midas M32": ("console", "Midas", 2015),
    "Behringer X32 Compact": ("console", "Behringer", 2015),
    "RODECaster Pro II": ("console", "Rode", 2022),
    "RODECaster Pro": ("console", "Rode", 2018),
    "Yamaha Rio3224-D2": ("stage box", "Yamaha", 2016),
    "Allen & Heath DX168": ("stage box", "Allen & Heath", 2016),
    "DiGiCo SD-Rack": ("stage box", "DiGiCo", 2015),
    "Midas DL32": ("stage box", "Midas", 2015),
    "d&b M4 wedge": ("monitor", "d&b audiotechnik", 2015),
    "L-Acoustics X15 HiQ wedge": ("monitor", "L-Acoustics", 2015),
    "QSC K12.2": ("monitor", "QSC", 2019),
    "Shure PSM 1000 IEM": ("in-ear monitor", "Shure", 2015),
    "Sennheiser ew IEM G4": ("in-ear monitor", "Sennheiser", 2015),
    "Behringer P16-M personal mixer": ("in-ear monitor", "Behringer", 2015),
    "Beyerdynamic DT 770 Pro": ("headphones", "Beyerdynamic", 2015),
    "Sony MDR-7506": ("headphones", "Sony", 2015),
    "Pioneer CDJ-3000": ("dj", "Pioneer DJ", 2020),
    "Pioneer CDJ-2000NXS2": ("dj", "Pioneer DJ", 2015),
    "Pioneer DJM-900NXS2": ("dj", "Pioneer DJ", 2015),
    "Pioneer DJM-V10": ("dj", "Pioneer DJ", 2019),
    "Technics SL-1200MK7": ("dj", "Technics", 2019),
    "K&M 210/9 boom stand": ("stand", "K&M", 2015),
    "K&M 25950 short stand": ("stand", "K&M", 2015),
    "K&M 259 lectern mic stand": ("stand", "K&M", 2015),
    "Lectern mic clip": ("accessory", "K&M", 2015),
    "Rode PSA1 boom arm": ("stand", "Rode", 2015),
    "Drum clip mount": ("accessory", "Shure", 2015),
    "Click track/playback interface": ("playback", "Focusrite", 2015),
    "QLab playback Mac": ("playback", "Apple", 2015),
}

# An input position: (the interchangeable models, how many of it, the chance it is on a sheet).
Position = tuple[tuple[str, ...], tuple[int, int], float]
KICK = ("Shure Beta 52A", "AKG D112 MkII", "Audix D6")
SNARE = ("Shure SM57", "Audix D2")
TOMS = ("Sennheiser e604", "Audix D2", "Shure Beta 98AMP", "Sennheiser MD 421 II")
OVERHEADS = ("AKG C414 XLS", "Rode NT5", "Neumann KM 184")
GUITAR_CAB = ("Shure SM57", "Sennheiser e906", "Royer R-121")
VOCAL = ("Shure SM58", "Shure Beta 58A", "Sennheiser e935", "Neumann KMS 105")
DI = ("Radial J48", "Radial ProDI", "BSS AR-133", "Radial JDI")
STEREO_DI = ("Radial ProD2", "BSS AR-133")
WIRELESS_HH = (
    "Shure ULXD2/B58",
    "Shure Axient Digital AD2",
    "Sennheiser ew 100 G4 handheld",
    "Sennheiser EW-D handheld",
)
WIRELESS_BP = (
    "Shure ULXD1 bodypack",
    "Shure Axient Digital AD1",
    "Sennheiser ew 100 G4 bodypack",
    "Sennheiser EW-D bodypack",
)
SMALL_DESK = (
    "Allen & Heath SQ-6",
    "Midas M32",
    "Behringer X32 Compact",
    "Yamaha QL1",
    "Allen & Heath CQ-20B",
)
LARGE_DESK = (
    "Yamaha CL5",
    "DiGiCo SD9",
    "DiGiCo Quantum 338",
    "Allen & Heath dLive S5000",
    "Yamaha DM7",
)
STAGE_BOX = {
    "Yamaha": "Yamaha Rio3224-D2",
    "Allen & Heath": "Allen & Heath DX168",
    "DiGiCo": "DiGiCo SD-Rack",
    "Midas": "Midas DL32",
    "Behringer": "Midas DL32",
}
WEDGE = ("d&b M4 wedge", "L-Acoustics X15 HiQ wedge", "QSC K12.2")
IEM = ("Shure PSM 1000 IEM", "Sennheiser ew IEM G4")

SHOWS: dict[str, tuple[float, str, list[Position]]] = {
    # show: (share of sheets, desk size, positions)
    "rock band": (
        0.24,
        "large",
        [
            (KICK, (1, 1), 0.98),
            (SNARE, (1, 2), 0.95),
            (("Shure Beta 91A",), (1, 1), 0.35),
            (TOMS, (2, 4), 0.9),
            (OVERHEADS, (2, 2), 0.92),
            (GUITAR_CAB, (1, 3), 0.9),
            (DI, (1, 3), 0.85),
            (VOCAL, (2, 5), 0.97),
            (WEDGE, (3, 8), 0.7),
            (IEM, (2, 6), 0.45),
            (("K&M 210/9 boom stand",), (5, 12), 0.8),
            (("K&M 25950 short stand",), (2, 4), 0.6),
            (("Drum clip mount",), (2, 4), 0.5),
            (("Click track/playback interface",), (1, 1), 0.25),
        ],
    ),
    "jazz combo": (
        0.1,
        "small",
        [
            (KICK, (1, 1), 0.6),
            (OVERHEADS, (2, 2), 0.95),
            (("Royer R-121",), (1, 1), 0.3),
            (("DPA 4099",), (1, 3), 0.55),
            (("Electro-Voice RE20", "Sennheiser MD 421 II"), (1, 1), 0.5),
            (DI, (1, 2), 0.7),
            (VOCAL, (1, 1), 0.6),
            (WEDGE, (2, 4), 0.85),
            (("K&M 210/9 boom stand",), (3, 6), 0.8),
        ],
    ),
    "singer-songwriter": (
        0.14,
        "small",
        [
            (VOCAL, (1, 2), 0.98),
            (DI, (1, 2), 0.9),
            (("Shure SM81", "Neumann KM 184"), (1, 1), 0.45),
            (WEDGE, (1, 2), 0.9),
            (("K&M 210/9 boom stand",), (1, 3), 0.9),
            (("DPA 4099",), (1, 1), 0.15),
        ],
    ),
    "podcast": (
        0.12,
        "podcast",
        [
            (("Shure SM7B", "Rode PodMic", "Electro-Voice RE20"), (2, 4), 0.98),
            (("Rode PSA1 boom arm",), (2, 4), 0.85),
            (("Beyerdynamic DT 770 Pro", "Sony MDR-7506"), (2, 4), 0.9),
        ],
    ),
    "conference": (
        0.14,
        "small",
        [
            (("Shure MX412 gooseneck", "Shure Beta 58A"), (1, 2), 0.9),
            (("K&M 259 lectern mic stand",), (1, 1), 0.5),
            (("Lectern mic clip",), (1, 1), 0.4),
            (("DPA 4060", "Sennheiser ME 2-II"), (2, 6), 0.75),
            (("DPA 4088", "Countryman E6"), (1, 4), 0.55),
            (WIRELESS_HH, (2, 4), 0.8),
            (WIRELESS_BP, (2, 6), 0.85),
            (STEREO_DI, (1, 1), 0.8),
            (("QLab playback Mac",), (1, 1), 0.35),
        ],
    ),
    "theatre": (
        0.08,
        "large",
        [
            (("DPA 4060", "DPA 4088", "Countryman E6"), (6, 16), 0.98),
            (WIRELESS_BP, (6, 16), 0.98),
            (("Neumann KM 184", "Schoeps CMC 6 MK4"), (2, 4), 0.6),
            (("QLab playback Mac",), (1, 1), 0.85),
            (STEREO_DI, (1, 2), 0.7),
            (WEDGE, (2, 4), 0.4),
            (IEM, (1, 4), 0.3),
        ],
    ),
    "orchestra and choir": (
        0.07,
        "large",
        [
            (("Schoeps CMC 6 MK4", "DPA 4011A", "Neumann KM 184"), (4, 12), 0.95),
            (("DPA 4099",), (4, 12), 0.6),
            (("AKG C414 XLS",), (2, 4), 0.5),
            (("K&M 210/9 boom stand",), (6, 14), 0.9),
            (VOCAL, (1, 1), 0.3),
        ],
    ),
    "dj set": (
        0.06,
        "dj",
        [
            (("Pioneer CDJ-3000", "Pioneer CDJ-2000NXS2"), (2, 4), 0.95),
            (("Pioneer DJM-900NXS2", "Pioneer DJM-V10"), (1, 1), 0.98),
            (("Technics SL-1200MK7",), (2, 2), 0.3),
            (WEDGE, (1, 2), 0.9),
            (VOCAL, (1, 1), 0.5),
            (STEREO_DI, (1, 1), 0.3),
        ],
    ),
    "worship service": (
        0.05,
        "small",
        [
            (VOCAL, (2, 6), 0.95),
            (WIRELESS_HH, (1, 2), 0.8),
            (("DPA 4088", "Countryman E6"), (1, 1), 0.7),
            (WIRELESS_BP, (1, 1), 0.7),
            (DI, (2, 4), 0.9),
            (KICK, (1, 1), 0.5),
            (OVERHEADS, (2, 2), 0.5),
            (("Behringer P16-M personal mixer",), (2, 6), 0.55),
            (WEDGE, (2, 4), 0.6),
        ],
    ),
}


def choose(options: tuple[str, ...], rng: np.random.Generator, me: dict, created: date) -> str:
    """One of the interchangeable ``options``: the engineer's favourite when loyal (newer
    models often replacing it), else any model, newer ones weighted up over the years."""
    usable = [o for o in options if CATALOGUE[o][2] <= created.year]
    recency = np.array(
        [1.0 + max(0, created.year - 2018) * (CATALOGUE[o][2] >= 2019) for o in usable]
    )
    if rng.random() < me["loyalty"]:
        favourite = usable[int(me["taste"] * len(usable)) % len(usable)]
        if CATALOGUE[favourite][2] < 2019 and recency.max() > 2 and rng.random() < 0.5:
            return usable[int(np.argmax(recency))]
        return favourite
    return usable[rng.choice(len(usable), p=recency / recency.sum())]


def main() -> None:
    rng = np.random.default_rng(SEED)
    engineers = [f"eng-{i:03d}" for i in range(1, N_ENGINEERS + 1)]
    # Each engineer: a favourite console brand, a favourite model per list of alternatives,
    # the kinds of show they mix (a few, by weight), and how busy they are.
    shows = list(SHOWS)
    share = np.array([SHOWS[s][0] for s in shows])
    profile = {}
    for name in engineers:
        focus = rng.dirichlet(share * 4)
        profile[name] = {
            "focus": focus,
            "desk": rng.choice(
                ["Yamaha", "Allen & Heath", "DiGiCo", "Midas", "Behringer"],
                p=[0.3, 0.3, 0.15, 0.15, 0.1],
            ),
            "taste": rng.random(),  # picks among alternatives: same index when loyal
            "loyalty": rng.uniform(0.5, 0.95),
            "busy": rng.pareto(1.5) + 1,
        }
    busy = np.array([profile[e]["busy"] for e in engineers])
    start, end = date(2019, 1, 1), date(2024, 12, 31)
    days = (end - start).days
    rows = []
    for sheet in range(1, N_SHEETS + 1):
        engineer = engineers[rng.choice(len(engineers), p=busy / busy.sum())]
        me = profile[engineer]
        show = shows[rng.choice(len(shows), p=me["focus"])]
        created = start + timedelta(days=int(rng.integers(0, days + 1)))
        _, size, positions = SHOWS[show]
        items: dict[str, int] = {}

        for options, (low, high), chance in positions:
            if rng.random() < chance:
                item = choose(options, rng, me, created)
                items[item] = items.get(item, 0) + int(rng.integers(low, high + 1))
        if size in ("small", "large"):
            desks = SMALL_DESK if size == "small" else LARGE_DESK
            own = [
                d
                for d in desks
                if CATALOGUE[d][1] == me["desk"] and CATALOGUE[d][2] <= created.year
            ]
            desk = own[0] if own and rng.random() < 0.8 else choose(desks, rng, me, created)
            items[desk] = 1
            if size == "large" or rng.random() < 0.5:
                box = STAGE_BOX.get(CATALOGUE[desk][1])
                if box:
                    items[box] = int(rng.integers(1, 3))
        elif size == "podcast":
            items[choose(("RODECaster Pro", "RODECaster Pro II"), rng, me, created)] = 1
        if not items:
            items[choose(VOCAL, rng, me, created)] = 1
        for item, quantity in items.items():
            category, brand, _ = CATALOGUE[item]
            rows.append(
                (f"PS-{sheet:04d}", engineer, created.isoformat(), item, category, brand, quantity)
            )
    rows.sort(key=lambda row: (row[2], row[0]))
    out = Path(__file__).with_name("patch_sheets.csv")
    with out.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["sheet_id", "engineer", "created_at", "equipment", "category", "brand", "quantity"]
        )
        writer.writerows(rows)
    print(
        f"{out.name}: {len(rows)} rows, {N_SHEETS} sheets, "
        f"{len({r[3] for r in rows})} items, {len({r[1] for r in rows})} engineers"
    )


if __name__ == "__main__":
    main()
