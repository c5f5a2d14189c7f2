"""Calls ListServices COUNT times as fast as it can with one access key, from wherever it
runs (a test runs it in a network namespace, as another machine), and prints each answer
as a JSON line: [HTTP status, error code or "", Retry-After or ""].

Usage: signin.py ENDPOINT CA_FILE REGION KEY_ID SECRET COUNT"""
import json
import sys

import boto3
import botocore.exceptions
from botocore.config import Config

endpoint, ca, region, key_id, secret, count = sys.argv[1:7]
apprunner = boto3.client(
    "apprunner",
    endpoint_url=endpoint,
    region_name=region,
    aws_access_key_id=key_id,
    aws_secret_access_key=secret,
    verify=ca,
    # Every answer is reported, none retried.
    config=Config(retries={"total_max_attempts": 1}),
)
for _ in range(int(count)):
    try:
        response = apprunner.list_services()
        print(json.dumps([response["ResponseMetadata"]["HTTPStatusCode"], "", ""]))
    except botocore.exceptions.ClientError as e:
        meta = e.response["ResponseMetadata"]
        print(json.dumps([
            meta["HTTPStatusCode"],
            e.response["Error"]["Code"],
            meta.get("HTTPHeaders", {}).get("retry-after", ""),
        ]))
    sys.stdout.flush()
