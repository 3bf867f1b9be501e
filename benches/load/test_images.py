"""Prints the absolute paths of the first N (default 64) HAM10000 `test` images, one a line:
the images the load scripts send."""
import csv
import os
import sys

data = sys.argv[1]
count = int(sys.argv[2]) if len(sys.argv) > 2 else 64
rows = [r for r in csv.DictReader(open(os.path.join(data, "labels.csv"))) if r["split"] == "test"]
for r in rows[:count]:
    print(os.path.abspath(os.path.join(data, "images", r["image_id"] + ".jpg")))
