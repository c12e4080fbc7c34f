#!/usr/bin/env python3
"""Summarise labelled fixtures: per attempt kind, the message shapes its lines had.

usage: summary.py tests/fixtures/real/SCENARIO [...]

Shapes: the MSG of each line with addresses, ports, pids, numbers, session ids, key
fingerprints and time stamps replaced by placeholders. For each kind it prints how many
attempts it had, and for each shape: in how many of those attempts it appeared, how many
lines in all, and whether the line contains the attempt's source address. Attempts that
produced no line at all are listed.
"""
import collections
import csv
import os
import re
import sys

SUBS = [
    (re.compile(r"\d{4}[-/]\d\d[-/]\d\d[ T]\d\d:\d\d:\d\d(?:\.\d+)?(?: UTC)?"), "<TIME>"),
    (re.compile(r"\[\d{2}/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\]"), "[<TIME>]"),
    (re.compile(r"\b\w{3} [ \d]\d \d\d:\d\d:\d\d\b"), "<TIME>"),
    (re.compile(r"SHA256:[A-Za-z0-9+/=]+"), "SHA256:<FP>"),
    (re.compile(r"session=<[^>]*>"), "session=<ID>"),
    (re.compile(r"::ffff:(?:\d+\.){3}\d+"), "<ADDR-V4MAPPED>"),
    (re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b"), "<ADDR-V4>"),
    (re.compile(r"(?<![\w:])[0-9a-fA-F]{1,4}(?::[0-9a-fA-F]{1,4})*::(?:[0-9a-fA-F]{1,4}(?::[0-9a-fA-F]{1,4})*)?(?![\w:])"),
     "<ADDR-V6>"),
    (re.compile(r"\b[0-9A-F]{10,12}\b"), "<QID>"),
    (re.compile(r"(?<![A-Za-z<-])\d+"), "N"),
]


def parse(line):
    parts = line.split(" ", 6)
    app, procid, rest = parts[3], parts[4], parts[6]
    msg = rest[2:] if rest.startswith("- ") else rest
    return app, msg


def shape(msg):
    for rx, rep in SUBS:
        msg = rx.sub(rep, msg)
    return msg.strip()


def main(dirs):
    for d in dirs:
        lines = open(os.path.join(d, "lines.log"), encoding="utf-8", errors="replace").read().splitlines()
        labels = [r["attempt"] for r in csv.DictReader(open(os.path.join(d, "labels.tsv")), delimiter="\t")]
        attempts = {r["id"]: r for r in csv.DictReader(open(os.path.join(d, "attempts.tsv")), delimiter="\t")}
        print(f"=== {os.path.basename(d.rstrip('/'))}: {len(lines)} lines, {len(attempts)} attempts")
        by_att = collections.defaultdict(list)
        for line, lab in zip(lines, labels):
            by_att[lab].append(line)
        kinds = collections.OrderedDict()
        for aid, a in attempts.items():
            kinds.setdefault((a["role"], a["kind"]), []).append(aid)
        for (role, kind), ids in kinds.items():
            print(f"--- {role} {kind}: {len(ids)} attempts ({', '.join(ids)}); lines per attempt: "
                  f"{[len(by_att[i]) for i in ids]}")
            shapes = collections.OrderedDict()
            for i in ids:
                src = attempts[i]["source"]
                for line in by_att[i]:
                    app, msg = parse(line)
                    k = (app, shape(msg))
                    s = shapes.setdefault(k, dict(att=set(), n=0, addr=0, ex=line))
                    s["att"].add(i)
                    s["n"] += 1
                    s["addr"] += src in msg
            for (app, sh), s in shapes.items():
                print(f"  [{len(s['att'])}/{len(ids)} att, {s['n']} lines, addr in {s['addr']}] {app}: {sh}")
            empty = [i for i in ids if not by_att[i]]
            if empty:
                print(f"  NO LINES for {', '.join(empty)}")
        if by_att.get("-"):
            print(f"--- unlabelled: {len(by_att['-'])} lines")
            for line in by_att["-"]:
                app, msg = parse(line)
                print(f"  {app}: {shape(msg)}")
        print()


if __name__ == "__main__":
    main(sys.argv[1:])
