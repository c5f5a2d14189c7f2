"""What the boto3 scenarios share: a client for the server under test and error capture."""
import os
import sys

import boto3
import botocore.exceptions
from botocore.config import Config


def client(validate=True):
    """An App Runner client for the runway server named by RUNWAY_ENDPOINT.

    With validate=False, boto3 sends whatever it is given, so the server's own validation
    is what answers."""
    return boto3.client(
        "apprunner",
        endpoint_url=os.environ["RUNWAY_ENDPOINT"],
        config=Config(parameter_validation=validate, retries={"max_attempts": 1}),
    )


def service_client(service, validate=True):
    """A client of another AWS service runway serves on the same endpoint (secretsmanager,
    ssm, kms)."""
    return boto3.client(
        service,
        endpoint_url=os.environ["RUNWAY_ENDPOINT"],
        config=Config(parameter_validation=validate, retries={"max_attempts": 1}),
    )


class Answers:
    """Records the raw body of every answer a client gets, to check where a secret shows."""

    def __init__(self, *clients):
        self.seen = []
        for c in clients:
            c.meta.events.register("after-call", self._record)

    def _record(self, http_response, model, **_):
        self.seen.append((model.name, http_response.content.decode("utf-8", "replace")))

    def holding(self, text):
        """The operations whose answers contained `text`."""
        return sorted({op for op, body in self.seen if text in body})


def error(call, **params):
    """Calls and returns (error code, message); fails if the call succeeds."""
    try:
        result = call(**params)
    except botocore.exceptions.ClientError as e:
        return e.response["Error"]["Code"], e.response["Error"].get("Message", "")
    raise AssertionError(f"{call.__name__}({params}) should have failed, got {result}")


def image_source(image="127.0.0.1:5000/hello:v1"):
    return {"ImageRepository": {"ImageIdentifier": image, "ImageRepositoryType": "ECR"}}


def done(name):
    print(f"{name}: ok")
    sys.exit(0)
