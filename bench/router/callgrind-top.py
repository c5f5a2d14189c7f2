#!/usr/bin/env python3
"""Instructions per request by function from a profile kept by callgrind.sh (KEEP=file).

callgrind_annotate 3.19 shows these dumps (taken after --zero) as one inclusive total
under `clone`; this reads the file itself (names compressed or not).

    bench/router/callgrind-top.py PROFILE REQUESTS            # top 70, inclusive and self
    bench/router/callgrind-top.py PROFILE REQUESTS 'REGEX'    # those functions' callees

Inclusive figures are approximate where functions recurse.
"""
import collections
import re
import sys

path, requests = sys.argv[1], int(sys.argv[2])
pattern = sys.argv[3] if len(sys.argv) > 3 else None
names = {}


def name(spec):
    m = re.match(r"\((\d+)\)\s*(.*)", spec)
    if not m:
        return spec
    if m.group(2):
        names[m.group(1)] = m.group(2)
    return names.get(m.group(1), "?" + m.group(1))


fn = cfn = None
pending = None
calls = collections.Counter()
call_cost = collections.Counter()
own = collections.Counter()
for line in open(path):
    line = line.rstrip("\n")
    if line.startswith("fn="):
        fn = name(line[3:])
    elif line.startswith("cfn="):
        cfn = name(line[4:])
    elif line.startswith("calls="):
        pending = int(line[6:].split()[0])
    elif line and (line[0].isdigit() or line[0] in "+-*"):
        parts = line.split()
        if len(parts) < 2:
            continue
        if pending is not None:
            calls[(fn, cfn)] += pending
            call_cost[(fn, cfn)] += int(parts[1])
            pending = None
        else:
            own[fn] += int(parts[1])

inclusive = collections.Counter(own)
for (caller, callee), cost in call_cost.items():
    if caller != callee:
        inclusive[caller] += cost
if pattern:
    for f in [f for f in inclusive if re.search(pattern, f)]:
        print(f"== {f[:150]}: self {own[f] / requests:.0f}, inclusive {inclusive[f] / requests:.0f}")
        for (caller, callee), cost in sorted(call_cost.items(), key=lambda x: -x[1]):
            if caller == f and cost / requests >= 20:
                print(f"   {cost / requests:7.0f} {calls[(caller, callee)] / requests:5.2f}x -> {callee[:140]}")
else:
    print(" inclusive   self  function (instructions per request)")
    for f, cost in inclusive.most_common(70):
        print(f"{cost / requests:10.0f} {own[f] / requests:6.0f}  {f[:150]}")
