"""Switches a service to dual stack, and to a VPC connector if CONNECTOR_ARN is set
(default egress otherwise), with boto3 (the AWS CLI v2 on Debian predates
IpAddressType), and prints the deployment's operation id."""
import os

from common import client

egress = {"EgressType": "DEFAULT"}
if os.environ.get("CONNECTOR_ARN"):
    egress = {"EgressType": "VPC", "VpcConnectorArn": os.environ["CONNECTOR_ARN"]}
out = client().update_service(
    ServiceArn=os.environ["SERVICE_ARN"],
    NetworkConfiguration={"EgressConfiguration": egress, "IpAddressType": "DUAL_STACK"},
)
network = out["Service"]["NetworkConfiguration"]
assert network["IpAddressType"] == "DUAL_STACK", out
assert network["EgressConfiguration"]["EgressType"] == egress["EgressType"], out
print(out["OperationId"])
