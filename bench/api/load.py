"""Drives runway's API the way 200 users creating services at once do, and measures how
the API answers meanwhile: a prober sends DescribeService and ListServices back to back
(one at a time, signed with SigV4 like the AWS CLI) and records each latency, first on
an idle server, then while N services are created at once, then while they are all
deleted at once; ROUNDS=R (default 1) repeats the creates and deletes R times. 30 s after
each round's deletes it reads the server's anonymous memory (SERVER_PID). Prints one JSON
object; bench/api/run.sh reads it.

The prober runs in a process of its own (not beside the N creating threads, whose
interpreter lock it would wait for) and, when allowed (root), in real time like the
API's own threads: it measures the API, not its own wait for a CPU among the instances
starting.

usage: SERVER_PID=PID [ROUNDS=R] load.py API_URL CREDENTIALS_FILE IMAGE N
"""

import json
import multiprocessing
import os
import sys
import threading
import time
import urllib.request

import botocore.auth
import botocore.awsrequest
import botocore.credentials

API, CREDENTIALS, IMAGE, N = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
ROUNDS = int(os.environ.get("ROUNDS", "1"))
SERVER_PID = os.environ["SERVER_PID"]


def credentials():
    key = secret = None
    for line in open(CREDENTIALS):
        k, _, v = line.partition("=")
        if k.strip() == "aws_access_key_id":
            key = v.strip()
        elif k.strip() == "aws_secret_access_key":
            secret = v.strip()
    return botocore.credentials.Credentials(key, secret)


CREDS = credentials()


def call(operation, body, timeout=600):
    """One signed call; (seconds, status, decoded answer)."""
    data = json.dumps(body).encode()
    req = botocore.awsrequest.AWSRequest(
        method="POST",
        url=API + "/",
        data=data,
        headers={
            "Content-Type": "application/x-amz-json-1.0",
            "X-Amz-Target": "AppRunner." + operation,
        },
    )
    botocore.auth.SigV4Auth(CREDS, "apprunner", "us-east-1").add_auth(req)
    http = urllib.request.Request(API + "/", data=data, headers=dict(req.headers), method="POST")
    t0 = time.monotonic()
    try:
        with urllib.request.urlopen(http, timeout=timeout) as r:
            status, answer = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, answer = e.code, e.read()
    return time.monotonic() - t0, status, json.loads(answer or b"{}")


def percentile(xs, p):
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def summary(xs):
    ms = [x * 1000 for x in xs]
    return {"n": len(ms), "p50_ms": percentile(ms, 50), "p99_ms": percentile(ms, 99), "max_ms": max(ms) if ms else None}


def probe(arn, stop, out):
    """Reads the API back to back until `stop` is set; sends every latency to `out`."""
    try:
        os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(1))
        realtime = True
    except OSError:
        realtime = False
    latencies, errors, i = [], 0, 0
    while not stop.is_set():
        op, body = ("DescribeService", {"ServiceArn": arn}) if i % 2 else ("ListServices", {"MaxResults": 20})
        secs, status, _ = call(op, body)
        latencies.append(secs)
        errors += status != 200
        i += 1
    out.send((latencies, errors, realtime))


def probe_while(arn, work):
    fork = multiprocessing.get_context("fork")
    stop = fork.Event()
    received, sent = fork.Pipe(duplex=False)
    prober = fork.Process(target=probe, args=(arn, stop, sent), daemon=True)
    prober.start()
    started = time.monotonic()
    extra = work()
    took = time.monotonic() - started
    stop.set()
    latencies, errors, realtime = received.recv()
    prober.join()
    return {"probe": summary(latencies), "probe_errors": errors, "probe_realtime": realtime,
            "seconds": round(took, 1), **extra}


def statuses():
    counts, token = {}, None
    while True:
        body = {"MaxResults": 20, **({"NextToken": token} if token else {})}
        _, _, page = call("ListServices", body)
        for s in page["ServiceSummaryList"]:
            counts[s["Status"]] = counts.get(s["Status"], 0) + 1
        token = page.get("NextToken")
        if not token:
            return counts


def wait_all(status, n):
    while statuses().get(status, 0) < n:
        time.sleep(1)


def wait_listed(n):
    """Until ListServices lists `n` services (deleted ones are not listed)."""
    while sum(statuses().values()) > n:
        time.sleep(1)


def at_once(n, f):
    out = [None] * n
    threads = [threading.Thread(target=lambda i=i: out.__setitem__(i, f(i))) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def create(name):
    body = {
        "ServiceName": name,
        "SourceConfiguration": {"ImageRepository": {
            "ImageIdentifier": IMAGE, "ImageRepositoryType": "ECR",
            "ImageConfiguration": {"Port": "8080"}}},
        "HealthCheckConfiguration": {"Protocol": "HTTP", "Path": "/healthz", "Interval": 5},
    }
    return call("CreateService", body)


def anonymous_mib():
    """The server's anonymous resident memory (heap, stacks), MiB."""
    for line in open(f"/proc/{SERVER_PID}/status"):
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    return None


def main():
    _, status, probe = create("load-probe")
    assert status == 200, probe
    arn = probe["Service"]["ServiceArn"]
    wait_all("RUNNING", 1)
    results = {"idle": probe_while(arn, lambda: (time.sleep(10), {})[1]), "after_mib": []}
    for r in range(ROUNDS):
        created, deleted = burst(arn, r)
        # The first round's latencies are the figures; later rounds show whether memory
        # left behind adds up.
        if r == 0:
            results["create"], results["delete"] = created, deleted
        time.sleep(30)
        results["after_mib"].append(anonymous_mib())
    print(json.dumps(results))


def burst(arn, r):
    """N services created at once, then deleted at once, each while the prober runs."""
    created = []

    def create_all():
        answers = at_once(N, lambda i: create(f"load-{r}-{i:03d}"))
        created.extend(a[2]["Service"]["ServiceArn"] for a in answers if a[1] == 200)
        calls = [a[0] for a in answers]
        wait_all("RUNNING", N + 1)
        return {"calls": summary(calls), "call_errors": sum(a[1] != 200 for a in answers)}

    creates = probe_while(arn, create_all)

    def delete_all():
        answers = at_once(len(created), lambda i: call("DeleteService", {"ServiceArn": created[i]}))
        wait_listed(1)
        return {"calls": summary([a[0] for a in answers]), "call_errors": sum(a[1] != 200 for a in answers)}

    return creates, probe_while(arn, delete_all)


main()
