"""Auto scaling configurations through boto3: revisions, Latest, partial ARNs, the
default, services using them, deletion of one and of all revisions, quotas."""
import re

from common import client, done, error, image_source

c = client()

summaries = c.list_auto_scaling_configurations()["AutoScalingConfigurationSummaryList"]
defaults = [s for s in summaries if s["IsDefault"]]
assert [s["AutoScalingConfigurationName"] for s in defaults] == ["DefaultConfiguration"], summaries
builtin_arn = defaults[0]["AutoScalingConfigurationArn"]
builtin = c.describe_auto_scaling_configuration(AutoScalingConfigurationArn=builtin_arn)["AutoScalingConfiguration"]
assert (builtin["MaxConcurrency"], builtin["MinSize"], builtin["MaxSize"]) == (100, 1, 25), builtin

def create(name, **limits):
    return c.create_auto_scaling_configuration(AutoScalingConfigurationName=name, **limits)["AutoScalingConfiguration"]

r1 = create("high-availability", MaxConcurrency=30, MinSize=3, MaxSize=12, Tags=[{"Key": "tier", "Value": "gold"}])
assert re.fullmatch(r"arn:aws:apprunner:us-east-1:000000000000:autoscalingconfiguration/high-availability/1/[0-9a-f]{32}",
                    r1["AutoScalingConfigurationArn"]), r1
assert r1["Latest"] and r1["Status"] == "ACTIVE" and not r1["IsDefault"] and not r1["HasAssociatedService"], r1
assert (r1["MaxConcurrency"], r1["MinSize"], r1["MaxSize"]) == (30, 3, 12)
r2 = create("high-availability", MaxConcurrency=40)
r3 = create("high-availability")
assert [r["AutoScalingConfigurationRevision"] for r in (r1, r2, r3)] == [1, 2, 3]
by_name = r1["AutoScalingConfigurationArn"].rsplit("/1/", 1)[0]

latest = c.describe_auto_scaling_configuration(AutoScalingConfigurationArn=by_name)["AutoScalingConfiguration"]
assert latest["AutoScalingConfigurationRevision"] == 3 and latest["Latest"], latest
second = c.describe_auto_scaling_configuration(AutoScalingConfigurationArn=by_name + "/2")["AutoScalingConfiguration"]
assert second["AutoScalingConfigurationRevision"] == 2 and not second["Latest"], second
first = c.describe_auto_scaling_configuration(AutoScalingConfigurationArn=r1["AutoScalingConfigurationArn"])["AutoScalingConfiguration"]
assert first == {**r1, "Latest": False}, (first, r1)

names = [s["AutoScalingConfigurationName"] for s in
         c.list_auto_scaling_configurations(LatestOnly=True)["AutoScalingConfigurationSummaryList"]]
assert sorted(names) == ["DefaultConfiguration", "high-availability"], names
revs = [s["AutoScalingConfigurationRevision"] for s in
        c.list_auto_scaling_configurations(AutoScalingConfigurationName="high-availability")["AutoScalingConfigurationSummaryList"]]
assert revs == [1, 2, 3], revs
tags = c.list_tags_for_resource(ResourceArn=r1["AutoScalingConfigurationArn"])["Tags"]
assert tags == [{"Key": "tier", "Value": "gold"}], tags

# The default: new services without a configuration get it.
made_default = c.update_default_auto_scaling_configuration(AutoScalingConfigurationArn=by_name + "/2")["AutoScalingConfiguration"]
assert made_default["IsDefault"] and made_default["AutoScalingConfigurationRevision"] == 2, made_default
old_default = c.describe_auto_scaling_configuration(AutoScalingConfigurationArn=builtin_arn)["AutoScalingConfiguration"]
assert not old_default["IsDefault"]
svc = c.create_service(ServiceName="scaled", SourceConfiguration=image_source())["Service"]
summary = svc["AutoScalingConfigurationSummary"]
assert summary["AutoScalingConfigurationArn"] == r2["AutoScalingConfigurationArn"] and summary["IsDefault"], summary
users = c.list_services_for_auto_scaling_configuration(AutoScalingConfigurationArn=by_name + "/2")["ServiceArnList"]
assert users == [svc["ServiceArn"]], users
assert c.describe_auto_scaling_configuration(AutoScalingConfigurationArn=by_name + "/2")["AutoScalingConfiguration"]["HasAssociatedService"]

code, message = error(c.delete_auto_scaling_configuration, AutoScalingConfigurationArn=r2["AutoScalingConfigurationArn"])
assert code == "InvalidRequestException" and "default" in message, (code, message)
c.update_default_auto_scaling_configuration(AutoScalingConfigurationArn=builtin_arn)
code, message = error(c.delete_auto_scaling_configuration, AutoScalingConfigurationArn=r2["AutoScalingConfigurationArn"])
assert code == "InvalidRequestException" and "used" in message, (code, message)
code, _ = error(c.delete_auto_scaling_configuration, AutoScalingConfigurationArn=builtin_arn)
assert code == "InvalidRequestException"

# Moving the service to revision 1 frees revision 2.
c.update_service(ServiceArn=svc["ServiceArn"], AutoScalingConfigurationArn=by_name + "/1")
assert c.list_services_for_auto_scaling_configuration(AutoScalingConfigurationArn=by_name + "/2")["ServiceArnList"] == []

# Deleting by name removes the latest active revision.
gone = c.delete_auto_scaling_configuration(AutoScalingConfigurationArn=by_name)["AutoScalingConfiguration"]
assert gone["AutoScalingConfigurationRevision"] == 3 and gone["Status"] == "INACTIVE" and not gone["Latest"], gone
assert "DeletedAt" in gone
latest = c.describe_auto_scaling_configuration(AutoScalingConfigurationArn=by_name)["AutoScalingConfiguration"]
assert latest["AutoScalingConfigurationRevision"] == 2 and latest["Latest"], latest
code, _ = error(c.delete_auto_scaling_configuration, AutoScalingConfigurationArn=r3["AutoScalingConfigurationArn"])
assert code == "InvalidRequestException"

# DeleteAllRevisions wants .../name, and removes every active revision.
# MinSize 0 (scale to zero) is runway's extension; botocore's own check stops at 1.
raw = client(validate=False)
zero = raw.create_auto_scaling_configuration(AutoScalingConfigurationName="spiky", MinSize=0, MaxSize=4)["AutoScalingConfiguration"]
assert zero["MinSize"] == 0, zero
for _ in range(2):
    create("spiky", MaxSize=4)
spiky = c.list_auto_scaling_configurations(AutoScalingConfigurationName="spiky")["AutoScalingConfigurationSummaryList"]
spiky_name = spiky[0]["AutoScalingConfigurationArn"].rsplit("/1/", 1)[0]
code, _ = error(c.delete_auto_scaling_configuration, AutoScalingConfigurationArn=spiky_name + "/1", DeleteAllRevisions=True)
assert code == "InvalidRequestException"
c.delete_auto_scaling_configuration(AutoScalingConfigurationArn=spiky_name, DeleteAllRevisions=True)
assert c.list_auto_scaling_configurations(AutoScalingConfigurationName="spiky")["AutoScalingConfigurationSummaryList"] == []
code, _ = error(c.describe_auto_scaling_configuration, AutoScalingConfigurationArn=spiky_name)
assert code == "ResourceNotFoundException"
assert create("spiky")["AutoScalingConfigurationRevision"] == 4, "revision numbers are never reused"

# Quotas: five active revisions per name.
for _ in range(4):
    create("spiky")
code, _ = error(c.create_auto_scaling_configuration, AutoScalingConfigurationName="spiky")
assert code == "ServiceQuotaExceededException", code

done("autoscaling")
