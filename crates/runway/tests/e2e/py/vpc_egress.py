"""Switches a service to a VPC connector and dual stack with boto3 (the AWS CLI v2 on
Debian predates IpAddressType), and prints the deployment's operation id."""
import os

from common import client

out = client().update_service(
    ServiceArn=os.environ["SERVICE_ARN"],
    NetworkConfiguration={
        "EgressConfiguration": {"EgressType": "VPC", "VpcConnectorArn": os.environ["CONNECTOR_ARN"]},
        "IpAddressType": "DUAL_STACK",
    },
)
assert out["Service"]["NetworkConfiguration"]["IpAddressType"] == "DUAL_STACK", out
print(out["OperationId"])
