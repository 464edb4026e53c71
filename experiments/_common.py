"""What the experiment scripts share: where results go, and writing a table as CSV and Markdown."""

import csv
import os

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def write_table(rows, folder, stem):
    """Write `rows` (dicts with the same keys) to folder/stem.csv and folder/stem.md."""
    os.makedirs(folder, exist_ok=True)
    header = list(rows[0])
    with open(os.path.join(folder, f"{stem}.csv"), "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(row[h]) for h in header) + " |" for row in rows]
    with open(os.path.join(folder, f"{stem}.md"), "w") as handle:
        handle.write("\n".join(lines) + "\n")
