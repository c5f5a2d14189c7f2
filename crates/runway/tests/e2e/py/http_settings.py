"""boto3 with its own validation on keeps working on a service with runway's HTTP
settings, and runway's extension operation is called the way a Python user without a
runway SDK would: botocore's SigV4 signer and a plain HTTPS POST.

Sets the service "timeouts"'s HTTP configuration to a 2 s request timeout and a 1024-byte
body limit, and prints {"OperationId": ...}."""
import json
import os
import urllib.error
import urllib.request

import botocore.session
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest

from common import client, done


def runway(operation, body):
    """Calls Runway.<operation>; (HTTP status, JSON answer)."""
    url = os.environ["RUNWAY_ENDPOINT"] + "/"
    request = AWSRequest(
        method="POST",
        url=url,
        data=json.dumps(body).encode(),
        headers={
            "Content-Type": "application/x-amz-json-1.0",
            "X-Amz-Target": f"Runway.{operation}",
        },
    )
    credentials = botocore.session.get_session().get_credentials()
    SigV4Auth(credentials, "apprunner", os.environ["AWS_DEFAULT_REGION"]).add_auth(request)
    prepared = request.prepare()
    http = urllib.request.Request(url, data=prepared.body, headers=dict(prepared.headers), method="POST")
    try:
        with urllib.request.urlopen(http) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


apprunner = client(validate=True)
service = next(
    s for s in apprunner.list_services()["ServiceSummaryList"] if s["ServiceName"] == "timeouts"
)
arn = service["ServiceArn"]

status, answer = runway(
    "UpdateServiceHttpConfiguration",
    {"ServiceArn": arn, "HttpConfiguration": {"RequestTimeoutSeconds": 99999}},
)
assert status == 400 and answer["__type"] == "InvalidRequestException", answer
assert "HttpConfiguration.RequestTimeoutSeconds" in answer["Message"], answer

status, answer = runway(
    "UpdateServiceHttpConfiguration",
    {"ServiceArn": arn, "HttpConfiguration": {"RequestTimeoutSeconds": 2, "MaxRequestBodyBytes": 1024}},
)
assert status == 200, answer
assert answer["HttpConfiguration"] == {"RequestTimeoutSeconds": 2, "MaxRequestBodyBytes": 1024}, answer

# App Runner's own operations, with boto3's validation, are unchanged.
described = apprunner.describe_service(ServiceArn=arn)["Service"]
assert described["ServiceName"] == "timeouts", described
assert described["Status"] == "OPERATION_IN_PROGRESS", described
print(json.dumps({"OperationId": answer["OperationId"]}))
done("http_settings")
