"""Generate the synthetic SocioPatterns-format sample shipped in data/sociopatterns/.

Not real data: a primary school invented to exercise the importer, written in the
format of the SocioPatterns school data sets (tab-separated ``t i j Ci Cj`` lines,
``t`` in seconds at the end of a 20-second window, ``i < j``, sorted by ``t``):

* 300 people: 12 classes (grades 1-6, sections A/B) of 24 pupils and one teacher
  each (teachers have class ``Teachers``); ids are distinct random integers in
  [1000, 2000).
* 3 school days, 08:30-16:30 on each day's clock (day d adds d x 86400 s), with
  breaks 10:00-10:20 and 15:00-15:15 and lunch 12:00-13:30.
* Class time: every pair within a class (teacher included) starts Poisson(0.3)
  contact episodes per day. Breaks and lunch: 400 episodes per day between people
  present, same grade with probability 0.6; teachers meet at lunch.
  Episode lengths are geometric with mean 2 windows (40 s).
* Day 2: class 4A is on a field trip (no contacts), so the days' networks differ
  beyond chance.

Deterministic: ``numpy.random.default_rng(SEED)``. Run from the repository root:

    python scripts/make_sociopatterns_sample.py [--out data/sociopatterns/school_sample.dat]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

SEED = 20240611
RESOLUTION = 20
DAYS = 3
GRADES = 6
SECTIONS = ("A", "B")
PUPILS_PER_CLASS = 24
DAY_START, DAY_END = 8 * 3600 + 1800, 16 * 3600 + 1800
BREAKS = ((10 * 3600, 10 * 3600 + 1200), (12 * 3600, 13 * 3600 + 1800), (15 * 3600, 15 * 3600 + 900))
CLASS_RATE = 0.3        # episodes per pair and day, class time
BREAK_EPISODES = 400    # episodes per day, breaks and lunch
SAME_GRADE = 0.6
TEACHER_LUNCH_EPISODES = 30
MEAN_WINDOWS = 2.0
FIELD_TRIP = (2, "4A")  # (day, class)


def windows_between(start: int, end: int) -> np.ndarray:
    """End times of the 20 s windows in [start, end)."""
    return np.arange(start + RESOLUTION, end + 1, RESOLUTION)


def build(rng: np.random.Generator) -> list[tuple[int, int, int, str, str]]:
    classes = [f"{g}{s}" for g in range(1, GRADES + 1) for s in SECTIONS]
    n = len(classes) * (PUPILS_PER_CLASS + 1)
    ids = rng.choice(np.arange(1000, 2000), size=n, replace=False)
    label = {}
    members = {c: [] for c in classes}
    teachers = []
    k = 0
    for c in classes:
        for _ in range(PUPILS_PER_CLASS):
            label[int(ids[k])] = c
            members[c].append(int(ids[k]))
            k += 1
        label[int(ids[k])] = "Teachers"
        members[c].append(int(ids[k]))  # the class teacher
        teachers.append(int(ids[k]))
        k += 1
    grade = {c: c[0] for c in classes}

    break_windows = np.concatenate([windows_between(a, b) for a, b in BREAKS])
    in_break = np.isin(windows_between(DAY_START, DAY_END), break_windows)
    class_windows = windows_between(DAY_START, DAY_END)[~in_break]
    lunch_windows = windows_between(*BREAKS[1])

    records = set()

    def episode(day: int, a: int, b: int, starts: np.ndarray) -> None:
        start = int(rng.choice(starts))
        length = int(rng.geometric(1.0 / MEAN_WINDOWS))
        for w in range(length):
            t = start + w * RESOLUTION
            if t > DAY_END:
                break
            i, j = (a, b) if a < b else (b, a)
            records.add((day * 86400 + t, i, j))

    for day in range(DAYS):
        absent = FIELD_TRIP[1] if day == FIELD_TRIP[0] else None
        present_classes = [c for c in classes if c != absent]
        for c in present_classes:
            group = members[c]
            for x in range(len(group)):
                for y in range(x + 1, len(group)):
                    for _ in range(rng.poisson(CLASS_RATE)):
                        episode(day, group[x], group[y], class_windows)
        present = [p for c in present_classes for p in members[c]]
        by_grade = {}
        for c in present_classes:
            by_grade.setdefault(grade[c], []).extend(members[c])
        for _ in range(BREAK_EPISODES):
            a = int(rng.choice(present))
            c = label[a] if label[a] != "Teachers" else next(cc for cc in classes if a in members[cc])
            pool = by_grade[grade[c]] if rng.random() < SAME_GRADE else present
            b = int(rng.choice(pool))
            if a != b:
                episode(day, a, b, break_windows)
        for _ in range(TEACHER_LUNCH_EPISODES):
            a, b = rng.choice(teachers, size=2, replace=False)
            episode(day, int(a), int(b), lunch_windows)
    return [(t, i, j, label[i], label[j]) for t, i, j in sorted(records)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="data/sociopatterns/school_sample.dat")
    args = parser.parse_args()
    rows = build(np.random.default_rng(SEED))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(f"{t}\t{i}\t{j}\t{ci}\t{cj}\n" for t, i, j, ci, cj in rows))
    people = {r[1] for r in rows} | {r[2] for r in rows}
    days = sorted({r[0] // 86400 for r in rows})
    print(f"wrote {out}: {len(rows)} lines, {len(people)} people, days {days}")


if __name__ == "__main__":
    main()
