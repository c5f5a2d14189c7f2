"""Secrets Manager through boto3: versions and staging labels, binary values, partial ARNs,
pagination and filters, deletion and restore, batch reads, and AWS's error types. The
secret values appear only in the answers of the operations that return values."""
import base64

from common import Answers, done, error, service_client

sm = service_client("secretsmanager")
raw = service_client("secretsmanager", validate=False)
answers = Answers(sm, raw)
VALUE = "sm-value-7f3a9c1e"

created = sm.create_secret(Name="app/db", SecretString=VALUE, Description="the database",
                           Tags=[{"Key": "team", "Value": "core"}])
arn = created["ARN"]
assert arn.startswith("arn:aws:secretsmanager:us-east-1:000000000000:secret:app/db-"), arn
assert len(arn.rsplit("-", 1)[1]) == 6, arn
v1 = created["VersionId"]
partial = arn.rsplit("-", 1)[0]
for secret_id in ["app/db", arn, partial]:
    got = sm.get_secret_value(SecretId=secret_id)
    assert got["SecretString"] == VALUE and got["VersionStages"] == ["AWSCURRENT"], got

# Rotation by hand: a pending version, promoted with UpdateSecretVersionStage.
pending = sm.put_secret_value(SecretId="app/db", SecretString=VALUE + "-2",
                              VersionStages=["AWSPENDING"], ClientRequestToken="p" * 32)
assert pending["VersionStages"] == ["AWSPENDING"], pending
assert sm.get_secret_value(SecretId="app/db")["SecretString"] == VALUE
assert sm.get_secret_value(SecretId="app/db", VersionStage="AWSPENDING")["VersionId"] == "p" * 32
code, msg = error(sm.update_secret_version_stage, SecretId="app/db", VersionStage="AWSCURRENT",
                  MoveToVersionId="p" * 32)
assert code == "InvalidParameterException", (code, msg)
sm.update_secret_version_stage(SecretId="app/db", VersionStage="AWSCURRENT",
                               RemoveFromVersionId=v1, MoveToVersionId="p" * 32)
stages = sm.describe_secret(SecretId="app/db")["VersionIdsToStages"]
assert stages == {"p" * 32: ["AWSPENDING", "AWSCURRENT"], v1: ["AWSPREVIOUS"]}, stages
assert sm.get_secret_value(SecretId="app/db", VersionStage="AWSPREVIOUS")["SecretString"] == VALUE
# The same token and value again does nothing; another value under it is refused.
again = sm.put_secret_value(SecretId="app/db", SecretString=VALUE + "-2", ClientRequestToken="p" * 32)
assert again["VersionId"] == "p" * 32
code, _ = error(sm.put_secret_value, SecretId="app/db", SecretString="other", ClientRequestToken="p" * 32)
assert code == "ResourceExistsException", code

versions = sm.list_secret_version_ids(SecretId="app/db")["Versions"]
assert {v["VersionId"] for v in versions} == {v1, "p" * 32}, versions
assert all(v["KmsKeyIds"] for v in versions), versions

# Binary secrets, and UpdateSecret making a new current version.
sm.create_secret(Name="app/cert", SecretBinary=b"\x00\x01binary\xff")
assert sm.get_secret_value(SecretId="app/cert")["SecretBinary"] == b"\x00\x01binary\xff"
updated = sm.update_secret(SecretId="app/cert", SecretBinary=b"second", Description="cert")
assert sm.get_secret_value(SecretId="app/cert")["VersionId"] == updated["VersionId"]
assert sm.describe_secret(SecretId="app/cert")["Description"] == "cert"

# A customer managed key.
kms = service_client("kms")
key = kms.create_key(Description="secrets key")["KeyMetadata"]
kms.create_alias(AliasName="alias/app-secrets", TargetKeyId=key["KeyId"])
sm.create_secret(Name="app/keyed", SecretString=VALUE, KmsKeyId="alias/app-secrets")
assert sm.describe_secret(SecretId="app/keyed")["KmsKeyId"] == "alias/app-secrets"
keyed_versions = sm.list_secret_version_ids(SecretId="app/keyed")["Versions"]
assert keyed_versions[0]["KmsKeyIds"] == [key["Arn"]], keyed_versions
kms.disable_key(KeyId=key["KeyId"])
assert error(sm.get_secret_value, SecretId="app/keyed")[0] == "DecryptionFailure"
assert error(sm.put_secret_value, SecretId="app/keyed", SecretString="x")[0] == "EncryptionFailure"
kms.enable_key(KeyId=key["KeyId"])
assert sm.get_secret_value(SecretId="app/keyed")["SecretString"] == VALUE
# The key's rotation keeps what it sealed before readable.
kms.rotate_key_on_demand(KeyId=key["KeyId"])
sm.put_secret_value(SecretId="app/keyed", SecretString=VALUE + "-rotated")
assert sm.get_secret_value(SecretId="app/keyed")["SecretString"] == VALUE + "-rotated"
assert sm.get_secret_value(SecretId="app/keyed", VersionStage="AWSPREVIOUS")["SecretString"] == VALUE
assert error(sm.create_secret, Name="app/nokey", SecretString="x",
             KmsKeyId="alias/missing")[0] == "EncryptionFailure"

# Pagination and filters over 23 more secrets.
for i in range(23):
    sm.create_secret(Name=f"bulk/item-{i:02d}", SecretString=f"bulk-{i}",
                     Tags=[{"Key": "parity", "Value": "even" if i % 2 == 0 else "odd"}])
seen, token, pages = [], None, 0
while True:
    kwargs = {"MaxResults": 5, "SortOrder": "asc"}
    if token:
        kwargs["NextToken"] = token
    page = sm.list_secrets(**kwargs)
    seen += [s["Name"] for s in page["SecretList"]]
    pages += 1
    token = page.get("NextToken")
    if not token:
        break
assert len(seen) == 26 and len(set(seen)) == 26 and pages == 6, (seen, pages)
assert seen[:2] == ["app/db", "app/cert"], seen
paginated = [s["Name"] for p in sm.get_paginator("list_secrets").paginate(PaginationConfig={"PageSize": 4})
             for s in p["SecretList"]]
assert sorted(paginated) == sorted(seen), paginated
odd = sm.list_secrets(Filters=[{"Key": "tag-value", "Values": ["odd"]}])["SecretList"]
assert len(odd) == 11, len(odd)
not_bulk = sm.list_secrets(Filters=[{"Key": "name", "Values": ["!bulk/"]}])["SecretList"]
assert sorted(s["Name"] for s in not_bulk) == ["app/cert", "app/db", "app/keyed"], not_bulk
described = sm.list_secrets(Filters=[{"Key": "description", "Values": ["THE DATA"]}])["SecretList"]
assert [s["Name"] for s in described] == ["app/db"], described
by_name = sm.list_secrets(SortBy="name", SortOrder="asc", MaxResults=3)["SecretList"]
assert [s["Name"] for s in by_name] == ["app/cert", "app/db", "app/keyed"], by_name
assert error(sm.list_secrets, NextToken="forged")[0] == "InvalidNextTokenException"

batch = sm.batch_get_secret_value(SecretIdList=["app/db", "bulk/item-03", "missing"])
assert [v["Name"] for v in batch["SecretValues"]] == ["app/db", "bulk/item-03"], batch
assert batch["Errors"][0]["SecretId"] == "missing"
assert batch["Errors"][0]["ErrorCode"] == "ResourceNotFoundException", batch
filtered = sm.batch_get_secret_value(Filters=[{"Key": "tag-value", "Values": ["even"]}], MaxResults=5)
assert len(filtered["SecretValues"]) == 5 and "NextToken" in filtered, filtered
rest = sm.batch_get_secret_value(Filters=[{"Key": "tag-value", "Values": ["even"]}], MaxResults=20,
                                 NextToken=filtered["NextToken"])
assert len(rest["SecretValues"]) == 7 and "NextToken" not in rest, rest
assert error(sm.batch_get_secret_value, SecretIdList=["a"],
             Filters=[{"Key": "name", "Values": ["a"]}])[0] == "InvalidParameterException"

# Tags.
sm.tag_resource(SecretId="app/db", Tags=[{"Key": "env", "Value": "prod"}])
sm.untag_resource(SecretId="app/db", TagKeys=["team"])
assert sm.describe_secret(SecretId="app/db")["Tags"] == [{"Key": "env", "Value": "prod"}]

# Deletion: a recovery window, restore, force.
code, _ = error(sm.delete_secret, SecretId="bulk/item-00", RecoveryWindowInDays=7,
                ForceDeleteWithoutRecovery=True)
assert code == "InvalidParameterException", code
assert error(sm.delete_secret, SecretId="bulk/item-00", RecoveryWindowInDays=3)[0] == "InvalidParameterException"
deleted = sm.delete_secret(SecretId="bulk/item-00", RecoveryWindowInDays=7)
assert (deleted["DeletionDate"] - sm.describe_secret(SecretId="bulk/item-00")["DeletedDate"]).days == 7
assert error(sm.get_secret_value, SecretId="bulk/item-00")[0] == "InvalidRequestException"
assert error(sm.create_secret, Name="bulk/item-00", SecretString="x")[0] == "InvalidRequestException"
listed = [s["Name"] for s in sm.list_secrets(MaxResults=100)["SecretList"]]
assert "bulk/item-00" not in listed
listed = [s["Name"] for s in sm.list_secrets(MaxResults=100, IncludePlannedDeletion=True)["SecretList"]]
assert "bulk/item-00" in listed
sm.restore_secret(SecretId="bulk/item-00")
assert sm.get_secret_value(SecretId="bulk/item-00")["SecretString"] == "bulk-0"
sm.delete_secret(SecretId="bulk/item-01", ForceDeleteWithoutRecovery=True)
assert error(sm.describe_secret, SecretId="bulk/item-01")[0] == "ResourceNotFoundException"
sm.create_secret(Name="bulk/item-01", SecretString="reborn")

# Errors AWS gives, with messages that name the field.
assert error(sm.create_secret, Name="app/db", SecretString="x")[0] == "ResourceExistsException"
assert error(sm.get_secret_value, SecretId="nope")[0] == "ResourceNotFoundException"
assert error(sm.get_secret_value, SecretId="app/db", VersionStage="NOPE")[0] == "ResourceNotFoundException"
code, msg = error(raw.create_secret, Name="bad name!", SecretString="x")
assert code == "ValidationException" and "Name" in msg, (code, msg)
code, _ = error(raw.create_secret, Name="both", SecretString="x", SecretBinary=b"y")
assert code == "InvalidParameterException", code
code, _ = error(raw.put_secret_value, SecretId="app/db")
assert code == "InvalidRequestException", code
code, msg = error(raw.get_secret_value)
assert code == "ValidationException" and "secretId" in msg, (code, msg)
code, _ = error(raw.list_secrets, MaxResults=101)
assert code == "ValidationException", code
code, _ = error(raw.create_secret, Name="big", SecretString="x" * 65537)
assert code == "ValidationException", code

# Where the value shows: only in what returns values.
getters = {"GetSecretValue", "BatchGetSecretValue"}
holding = set(answers.holding(VALUE))
assert holding and holding <= getters, holding
done("secretsmanager")
