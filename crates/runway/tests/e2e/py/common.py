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
