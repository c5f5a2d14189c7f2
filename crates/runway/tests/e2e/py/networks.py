"""Private networks' bad input with boto3: every EC2 and App Runner error a user can
cause, each naming what is wrong, and none of them changing anything."""
import os

import boto3
from botocore.config import Config

from common import client, done, error

ec2 = boto3.client(
    "ec2",
    endpoint_url=os.environ["RUNWAY_ENDPOINT"],
    config=Config(retries={"max_attempts": 1}),
)
ar = client()


def check(call, code, mentions, **params):
    got, message = error(call, **params)
    assert got == code, f"{call.__name__}({params}): {got} {message}, expected {code}"
    assert mentions in message, f"{call.__name__}: {message!r} should mention {mentions!r}"


def snapshot():
    """Everything a failed call must leave as it was."""
    return (
        ec2.describe_vpcs()["Vpcs"],
        ec2.describe_subnets()["Subnets"],
        ec2.describe_security_groups()["SecurityGroups"],
        ec2.describe_network_interfaces()["NetworkInterfaces"],
        ec2.describe_vpc_endpoints()["VpcEndpoints"],
        ar.list_vpc_connectors()["VpcConnectors"],
        ar.list_vpc_ingress_connections()["VpcIngressConnectionSummaryList"],
    )


vpc = ec2.create_vpc(CidrBlock="10.40.0.0/16")["Vpc"]["VpcId"]
other_vpc = ec2.create_vpc(CidrBlock="10.41.0.0/16")["Vpc"]["VpcId"]
subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.40.1.0/24")["Subnet"]["SubnetId"]
other_subnet = ec2.create_subnet(VpcId=other_vpc, CidrBlock="10.41.1.0/24")["Subnet"]["SubnetId"]
group = ec2.create_security_group(GroupName="db", Description="db", VpcId=vpc)["GroupId"]
other_group = ec2.create_security_group(GroupName="db", Description="db", VpcId=other_vpc)["GroupId"]
default_group = ec2.describe_security_groups(
    Filters=[{"Name": "vpc-id", "Values": [vpc]}, {"Name": "group-name", "Values": ["default"]}]
)["SecurityGroups"][0]["GroupId"]
pg = [{"IpProtocol": "tcp", "FromPort": 5432, "ToPort": 5432, "IpRanges": [{"CidrIp": "10.40.1.0/24"}]}]
ec2.authorize_security_group_egress(GroupId=group, IpPermissions=pg)
connector = ar.create_vpc_connector(VpcConnectorName="pgconn", Subnets=[subnet], SecurityGroups=[group])["VpcConnector"]
svc = ar.create_service(
    ServiceName="uses-pgconn",
    SourceConfiguration={"ImageRepository": {"ImageIdentifier": "127.0.0.1:5000/app:v1", "ImageRepositoryType": "ECR"}},
    NetworkConfiguration={"EgressConfiguration": {"EgressType": "VPC", "VpcConnectorArn": connector["VpcConnectorArn"]}},
)["Service"]
endpoint = ec2.create_vpc_endpoint(
    VpcId=vpc,
    VpcEndpointType="Interface",
    ServiceName="com.amazonaws.us-east-1.apprunner.requests",
    SubnetIds=[subnet],
)["VpcEndpoint"]
assert [g["GroupId"] for g in endpoint["Groups"]] == [default_group], endpoint
ingress = ar.create_vpc_ingress_connection(
    ServiceArn=svc["ServiceArn"],
    VpcIngressConnectionName="pg-in",
    IngressVpcConfiguration={"VpcId": vpc, "VpcEndpointId": endpoint["VpcEndpointId"]},
)["VpcIngressConnection"]

before = snapshot()
for call, code, mentions, params in [
    (ec2.create_vpc, "InvalidVpc.Range", "10.0.0.0/8", {"CidrBlock": "10.0.0.0/8"}),
    (ec2.create_vpc, "InvalidVpc.Range", "host bits", {"CidrBlock": "10.42.0.1/16"}),
    (ec2.create_subnet, "InvalidVpcID.NotFound", "vpc-00000000", {"VpcId": "vpc-00000000", "CidrBlock": "10.40.2.0/24"}),
    (ec2.create_subnet, "InvalidSubnet.Range", "10.41.2.0/24", {"VpcId": vpc, "CidrBlock": "10.41.2.0/24"}),
    (ec2.create_subnet, "InvalidSubnet.Conflict", subnet, {"VpcId": vpc, "CidrBlock": "10.40.1.128/25"}),
    (ec2.create_subnet, "InvalidParameterValue", "interface name",
     {"VpcId": vpc, "CidrBlock": "10.40.3.0/24",
      "TagSpecifications": [{"ResourceType": "subnet", "Tags": [{"Key": "runway:interface", "Value": "no such/name"}]}]}),
    (ec2.describe_subnets, "InvalidSubnetID.NotFound", "subnet-00000000", {"SubnetIds": ["subnet-00000000"]}),
    (ec2.describe_subnets, "InvalidParameterValue", "no-such-filter", {"Filters": [{"Name": "no-such-filter", "Values": ["x"]}]}),
    (ec2.create_security_group, "InvalidGroup.Duplicate", "db", {"GroupName": "db", "Description": "again", "VpcId": vpc}),
    (ec2.create_security_group, "InvalidVpcID.NotFound", "vpc-00000000", {"GroupName": "x", "Description": "x", "VpcId": "vpc-00000000"}),
    (ec2.authorize_security_group_egress, "InvalidPermission.Duplicate", "10.40.1.0/24", {"GroupId": group, "IpPermissions": pg}),
    (ec2.authorize_security_group_egress, "InvalidParameterValue", "70000",
     {"GroupId": group, "IpPermissions": [{"IpProtocol": "udp", "FromPort": 1, "ToPort": 70000, "IpRanges": [{"CidrIp": "10.40.1.0/24"}]}]}),
    (ec2.authorize_security_group_egress, "InvalidParameterValue", "Unknown protocol",
     {"GroupId": group, "IpPermissions": [{"IpProtocol": "sctpx", "IpRanges": [{"CidrIp": "10.40.1.0/24"}]}]}),
    (ec2.authorize_security_group_egress, "InvalidParameterValue", "IPv4 ranges",
     {"GroupId": group, "IpPermissions": [{"IpProtocol": "-1", "Ipv6Ranges": [{"CidrIpv6": "::/0"}]}]}),
    (ec2.authorize_security_group_ingress, "InvalidGroup.NotFound", "sg-00000000",
     {"GroupId": "sg-00000000", "IpProtocol": "tcp", "FromPort": 1, "ToPort": 1, "CidrIp": "10.0.0.0/8"}),
    (ec2.revoke_security_group_egress, "InvalidPermission.NotFound", "10.40.9.0/24",
     {"GroupId": group, "IpPermissions": [{"IpProtocol": "tcp", "FromPort": 1, "ToPort": 1, "IpRanges": [{"CidrIp": "10.40.9.0/24"}]}]}),
    (ec2.delete_security_group, "CannotDelete", default_group, {"GroupId": default_group}),
    (ec2.delete_security_group, "DependencyViolation", connector["VpcConnectorArn"], {"GroupId": group}),
    (ec2.delete_subnet, "DependencyViolation", endpoint["VpcEndpointId"], {"SubnetId": subnet}),
    (ec2.delete_vpc, "DependencyViolation", subnet, {"VpcId": vpc}),
    (ec2.create_vpc_endpoint, "InvalidServiceName", "com.amazonaws.us-east-1.s3",
     {"VpcId": vpc, "VpcEndpointType": "Interface", "ServiceName": "com.amazonaws.us-east-1.s3", "SubnetIds": [subnet]}),
    (ec2.create_vpc_endpoint, "InvalidParameterValue", other_subnet,
     {"VpcId": vpc, "VpcEndpointType": "Interface", "ServiceName": "com.amazonaws.us-east-1.apprunner.requests", "SubnetIds": [other_subnet]}),
    (ec2.create_vpc_endpoint, "InvalidParameterValue", "Interface",
     {"VpcId": vpc, "ServiceName": "com.amazonaws.us-east-1.apprunner.requests", "SubnetIds": [subnet]}),
    (ar.create_vpc_connector, "InvalidRequestException", "subnet-00000000", {"VpcConnectorName": "pgconn", "Subnets": ["subnet-00000000"]}),
    (ar.create_vpc_connector, "InvalidRequestException", "one VPC", {"VpcConnectorName": "pgconn", "Subnets": [subnet, other_subnet]}),
    (ar.create_vpc_connector, "InvalidRequestException", other_group,
     {"VpcConnectorName": "pgconn", "Subnets": [subnet], "SecurityGroups": [other_group]}),
    (ar.create_vpc_connector, "InvalidRequestException", "VpcConnectorName", {"VpcConnectorName": "a b c", "Subnets": [subnet]}),
    (ar.create_vpc_connector, "InvalidRequestException", "egress addresses",
     {"VpcConnectorName": "pgconn", "Subnets": [subnet], "Tags": [{"Key": "runway:egress-address", "Value": "192.0.2.200"}]}),
    (ar.tag_resource, "InvalidRequestException", "new revision",
     {"ResourceArn": connector["VpcConnectorArn"], "Tags": [{"Key": "runway:egress-address", "Value": "192.0.2.200"}]}),
    (ar.delete_vpc_connector, "InvalidRequestException", "uses-pgconn", {"VpcConnectorArn": connector["VpcConnectorArn"]}),
    (ar.describe_vpc_connector, "ResourceNotFoundException", "nosuch",
     {"VpcConnectorArn": connector["VpcConnectorArn"].replace("pgconn", "nosuch")}),
    (ar.create_vpc_ingress_connection, "InvalidRequestException", "belongs to",
     {"ServiceArn": svc["ServiceArn"], "VpcIngressConnectionName": "pg-in-2",
      "IngressVpcConfiguration": {"VpcId": other_vpc, "VpcEndpointId": endpoint["VpcEndpointId"]}}),
    (ar.create_vpc_ingress_connection, "InvalidStateException", ingress["VpcIngressConnectionArn"],
     {"ServiceArn": svc["ServiceArn"], "VpcIngressConnectionName": "pg-in-2",
      "IngressVpcConfiguration": {"VpcId": vpc, "VpcEndpointId": endpoint["VpcEndpointId"]}}),
    (ar.create_vpc_ingress_connection, "InvalidRequestException", "already exists",
     {"ServiceArn": svc["ServiceArn"], "VpcIngressConnectionName": "pg-in",
      "IngressVpcConfiguration": {"VpcId": vpc, "VpcEndpointId": endpoint["VpcEndpointId"]}}),
    (ar.describe_vpc_ingress_connection, "ResourceNotFoundException", "does not exist",
     {"VpcIngressConnectionArn": ingress["VpcIngressConnectionArn"][:-32] + "0" * 32}),
]:
    check(call, code, mentions, **params)
failed = ec2.delete_vpc_endpoints(VpcEndpointIds=[endpoint["VpcEndpointId"], "vpce-00000000"])["Unsuccessful"]
assert [f["Error"]["Code"] for f in failed] == ["DependencyViolation", "InvalidVpcEndpointId.NotFound"], failed
assert snapshot() == before, "failed calls changed nothing"

# A second revision of a connector, deleted: INACTIVE, its address given back.
second = ar.create_vpc_connector(VpcConnectorName="pgconn", Subnets=[subnet])["VpcConnector"]
assert second["VpcConnectorRevision"] == 2 and second["Status"] == "ACTIVE", second
gone = ar.delete_vpc_connector(VpcConnectorArn=second["VpcConnectorArn"])["VpcConnector"]
assert gone["Status"] == "INACTIVE" and "DeletedAt" in gone, gone
assert ar.describe_vpc_connector(VpcConnectorArn=second["VpcConnectorArn"])["VpcConnector"]["Status"] == "INACTIVE"
assert len(ec2.describe_network_interfaces()["NetworkInterfaces"]) == len(before[3])

# Tags on EC2 resources; the interface tag belongs to the subnet's creation.
ec2.create_tags(Resources=[subnet, group], Tags=[{"Key": "Name", "Value": "db-net"}])
named = ec2.describe_subnets(Filters=[{"Name": "tag:Name", "Values": ["db-*"]}])["Subnets"]
assert [s["SubnetId"] for s in named] == [subnet], named
check(ec2.create_tags, "InvalidParameterValue", "runway:interface",
      Resources=[subnet], Tags=[{"Key": "runway:interface", "Value": "eth9"}])
ec2.delete_tags(Resources=[subnet], Tags=[{"Key": "Name"}])
assert ec2.describe_subnets(Filters=[{"Name": "tag:Name", "Values": ["db-*"]}])["Subnets"] == []

# An empty VPC goes with its default group.
spare = ec2.create_vpc(CidrBlock="10.43.0.0/16")["Vpc"]["VpcId"]
ec2.delete_vpc(VpcId=spare)
assert ec2.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [spare]}])["SecurityGroups"] == []
check(ec2.describe_vpcs, "InvalidVpcID.NotFound", spare, VpcIds=[spare])

done("networks")
