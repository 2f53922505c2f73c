"""Synthesise spoken command words with espeak-ng and sox: an offline audio classification set.

Each clip is one word spoken by one *voice* (an espeak-ng English voice with a variant, e.g.
``en-us+f2``) at a drawn speed and pitch, then degraded by sox with reverb and pink noise at a
drawn level, and written at 16 kHz mono. The voice is the clip's group: a split that holds
voices out measures what a service meets in production, speakers it never heard.

    python examples/spoken-commands/make_clips.py --out data/clips --voices 24 --takes 3

writes ``<out>/<word>/<voice>_<take>.wav`` (``--format flac``: ``.flac``, half the bytes) and
``<out>/manifest.csv`` (path,label,group).
Same arguments and seed: the same clips (espeak-ng and sox are deterministic; every random
choice comes from the seed). Needs the Debian packages espeak-ng and sox.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import random
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

WORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
# English voices of espeak-ng (accents), and its variants (timbre, gender).
LANGUAGES = (
    "en", "en-us", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-gb-x-gbclan",
    "en-gb-x-gbcwmd", "en-us-nyc",
)
VARIANTS = (
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5",
    "croak", "klatt", "klatt2", "whisper",
)
RATE = 16_000


def voices(count: int, seed: int) -> list[str]:
    """``count`` distinct language+variant voices, drawn with ``seed``."""
    every = [f"{lang}+{variant}" for lang, variant in itertools.product(LANGUAGES, VARIANTS)]
    if count > len(every):
        sys.exit(f"--voices at most {len(every)}")
    return random.Random(seed).sample(every, count)


def synthesise(word: str, voice: str, take: int, out: Path, seed: int,
               suffix: str = "wav") -> Path:
    """One clip: espeak-ng at a drawn speed and pitch, then sox reverb, noise and 16 kHz."""
    draw = random.Random(f"{seed}/{word}/{voice}/{take}")
    speed, pitch = draw.randint(110, 210), draw.randint(20, 80)
    reverb, noise = draw.randint(0, 60), draw.uniform(0.002, 0.03)
    target = out / word / f"{voice.replace('+', '-')}_{take}.{suffix}"
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        speech = Path(tmp) / "speech.wav"
        subprocess.run(
            ["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(speech),
             word],
            check=True, capture_output=True,
        )
        clean = Path(tmp) / "clean.wav"
        # Mono at 16 kHz with reverb, a drawn silence before the word, 1.2 s in all.
        lead = draw.uniform(0.0, 0.25)
        subprocess.run(
            ["sox", str(speech), "-r", str(RATE), "-c", "1", str(clean), "reverb", str(reverb),
             "pad", f"{lead:.3f}", "1.2", "trim", "0", "1.2"],
            check=True, capture_output=True,
        )
        _mix_noise(clean, target, noise)
    return target


def _mix_noise(clean: Path, target: Path, level: float) -> None:
    """``clean`` with sox's pink noise at amplitude ``level`` mixed in, as 16-bit PCM (``-R``:
    sox's repeatable random numbers)."""
    with tempfile.TemporaryDirectory() as tmp:
        noise = Path(tmp) / "noise.wav"
        subprocess.run(
            ["sox", "-R", "-n", "-r", str(RATE), "-c", "1", str(noise), "synth", "1.2",
             "pinknoise", "vol", f"{level:.4f}"],
            check=True, capture_output=True,
        )
        subprocess.run(
            ["sox", "-m", str(clean), str(noise), "-b", "16", str(target)],
            check=True, capture_output=True,
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path, help="folder to write (replaced)")
    parser.add_argument("--words", default=",".join(WORDS), help="comma-separated words")
    parser.add_argument("--voices", type=int, default=24, help="distinct voices (groups)")
    parser.add_argument("--takes", type=int, default=2, help="clips per word and voice")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--format", choices=("wav", "flac"), default="wav",
                        help="file format of the clips (16-bit either way)")
    args = parser.parse_args(argv)
    for tool in ("espeak-ng", "sox"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed: apt-get install espeak-ng sox")
    if args.out.exists():
        shutil.rmtree(args.out)
    jobs = [
        (word, voice, take)
        for word in args.words.split(",")
        for voice in voices(args.voices, args.seed)
        for take in range(args.takes)
    ]
    with ThreadPoolExecutor(max_workers=4) as pool:
        paths = list(pool.map(lambda job: synthesise(*job, args.out, args.seed, args.format),
                              jobs))
    with (args.out / "manifest.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "group"])
        for (word, voice, _), path in zip(jobs, paths, strict=True):
            writer.writerow([path.relative_to(args.out).as_posix(), word, voice])
    print(f"{len(paths)} clips of {len(set(j[0] for j in jobs))} words by {args.voices} voices "
          f"in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
