"""SSM Parameter Store through boto3: types, versions, labels and selectors, paths,
DescribeParameters filters, pagination, deletion and SSM's error types. A SecureString's
value appears only in answers asked to decrypt."""
from common import Answers, done, error, service_client

ssm = service_client("ssm")
raw = service_client("ssm", validate=False)
answers = Answers(ssm, raw)
SECRET = "ssm-secure-5b2e8d41"

first = ssm.put_parameter(Name="/app/db/url", Value="postgres://db:5432/app", Type="String")
assert (first["Version"], first["Tier"]) == (1, "Standard"), first
second = ssm.put_parameter(Name="/app/db/url", Value="postgres://db:5432/app2", Overwrite=True)
assert second["Version"] == 2, second
ssm.put_parameter(Name="/app/db/password", Value=SECRET, Type="SecureString", Description="db pw")
ssm.put_parameter(Name="/app/hosts", Value="a,b,c", Type="StringList")
ssm.put_parameter(Name="/app/deep/er/flag", Value="on", Type="String")
ssm.put_parameter(Name="plain", Value="top level", Type="String")

url = ssm.get_parameter(Name="/app/db/url")["Parameter"]
assert (url["Value"], url["Version"], url["Type"]) == ("postgres://db:5432/app2", 2, "String"), url
assert url["ARN"] == "arn:aws:ssm:us-east-1:000000000000:parameter/app/db/url", url
assert ssm.get_parameter(Name="/app/db/url:1")["Parameter"]["Value"] == "postgres://db:5432/app"
assert ssm.get_parameter(Name="plain")["Parameter"]["ARN"].endswith(":parameter/plain")
hidden = ssm.get_parameter(Name="/app/db/password")["Parameter"]["Value"]
assert hidden != SECRET and SECRET not in hidden
shown = ssm.get_parameter(Name="arn:aws:ssm:us-east-1:000000000000:parameter/app/db/password",
                          WithDecryption=True)["Parameter"]
assert shown["Value"] == SECRET, shown

# Labels move between versions; selectors read them.
ssm.put_parameter(Name="/app/db/password", Value=SECRET + "-v2", Overwrite=True)
labelled = ssm.label_parameter_version(Name="/app/db/password", ParameterVersion=1,
                                       Labels=["stable", "9lives", "awsy"])
assert labelled["InvalidLabels"] == ["9lives", "awsy"] and labelled["ParameterVersion"] == 1, labelled
got = ssm.get_parameter(Name="/app/db/password:stable", WithDecryption=True)["Parameter"]
assert (got["Value"], got["Selector"]) == (SECRET, ":stable"), got
ssm.label_parameter_version(Name="/app/db/password", Labels=["stable"])
assert ssm.get_parameter(Name="/app/db/password:stable", WithDecryption=True)["Parameter"]["Version"] == 2
history = ssm.get_parameter_history(Name="/app/db/password", WithDecryption=True)["Parameters"]
assert [(h["Version"], h["Labels"]) for h in history] == [(1, []), (2, ["stable"])], history
assert history[0]["Description"] == "db pw" and history[0]["KeyId"] == "alias/aws/ssm", history[0]
encrypted = ssm.get_parameter_history(Name="/app/db/password")["Parameters"]
assert all(SECRET not in h["Value"] for h in encrypted)
removed = ssm.unlabel_parameter_version(Name="/app/db/password", ParameterVersion=2, Labels=["stable", "x"])
assert (removed["RemovedLabels"], removed["InvalidLabels"]) == (["stable"], ["x"]), removed

many = ssm.get_parameters(Names=["/app/hosts", "/app/missing", "/app/db/password:1"], WithDecryption=True)
assert [p["Name"] for p in many["Parameters"]] == ["/app/hosts", "/app/db/password"], many
assert many["InvalidParameters"] == ["/app/missing"], many

# Paths: one level or all, with filters and pages.
one = ssm.get_parameters_by_path(Path="/app")["Parameters"]
assert [p["Name"] for p in one] == ["/app/hosts"], one
everything = ssm.get_parameters_by_path(Path="/app", Recursive=True, WithDecryption=True)["Parameters"]
assert [p["Name"] for p in everything] == ["/app/db/password", "/app/db/url", "/app/deep/er/flag",
                                           "/app/hosts"], everything
secure = ssm.get_parameters_by_path(Path="/", Recursive=True, ParameterFilters=[
    {"Key": "Type", "Option": "Equals", "Values": ["SecureString"]}])["Parameters"]
assert [p["Name"] for p in secure] == ["/app/db/password"], secure
assert error(ssm.get_parameters_by_path, Path="/", ParameterFilters=[
    {"Key": "Name", "Values": ["x"]}])[0] == "InvalidFilterKey"
for i in range(23):
    ssm.put_parameter(Name=f"/bulk/p{i:02d}", Value=f"v{i}", Type="String")
names, token, pages = [], None, 0
while True:
    kwargs = {"Path": "/bulk", "MaxResults": 10}
    if token:
        kwargs["NextToken"] = token
    page = ssm.get_parameters_by_path(**kwargs)
    names += [p["Name"] for p in page["Parameters"]]
    pages += 1
    token = page.get("NextToken")
    if not token:
        break
assert names == [f"/bulk/p{i:02d}" for i in range(23)] and pages == 3, (names, pages)
described = [p["Name"] for page in ssm.get_paginator("describe_parameters").paginate(
    ParameterFilters=[{"Key": "Name", "Option": "BeginsWith", "Values": ["/bulk/p1"]}],
    PaginationConfig={"PageSize": 4}) for p in page["Parameters"]]
assert described == [f"/bulk/p{i}" for i in range(10, 20)], described
meta = ssm.describe_parameters(Filters=[{"Key": "Type", "Values": ["SecureString"]}])["Parameters"]
assert [(m["Name"], m["KeyId"], m["Version"]) for m in meta] == [("/app/db/password", "alias/aws/ssm", 2)], meta
assert error(ssm.describe_parameters, ParameterFilters=[
    {"Key": "Type", "Option": "Contains", "Values": ["String"]}])[0] == "InvalidFilterOption"
assert error(ssm.get_parameters_by_path, Path="/bulk", NextToken="forged")[0] == "InvalidNextToken"

# A customer managed key, and a disabled one.
kms = service_client("kms")
key = kms.create_key()["KeyMetadata"]
ssm.put_parameter(Name="/app/keyed", Value=SECRET, Type="SecureString", KeyId=key["Arn"])
assert ssm.get_parameter(Name="/app/keyed", WithDecryption=True)["Parameter"]["Value"] == SECRET
assert error(ssm.put_parameter, Name="/app/k2", Value="v", Type="SecureString",
             KeyId="alias/none")[0] == "InvalidKeyId"

# Errors SSM gives.
assert error(ssm.put_parameter, Name="/app/hosts", Value="x", Type="String")[0] == "ParameterAlreadyExists"
assert error(ssm.get_parameter, Name="/app/nope")[0] == "ParameterNotFound"
assert error(ssm.get_parameter, Name="/app/hosts:7")[0] == "ParameterVersionNotFound"
assert error(ssm.put_parameter, Name="/aws/mine", Value="x", Type="String")[0] == "ValidationException"
assert error(ssm.put_parameter, Name="new-one", Value="x")[0] == "ValidationException"
assert error(ssm.put_parameter, Name="/" + "/".join("l" * 16), Value="x",
             Type="String")[0] == "HierarchyLevelLimitExceededException"
code, msg = error(ssm.put_parameter, Name="/app/num", Value="12a", Type="String", AllowedPattern=r"^\d+$")
assert code == "ParameterPatternMismatchException" and "12a" not in msg, (code, msg)
assert error(ssm.put_parameter, Name="/app/big", Value="x" * 4097, Type="String")[0] == "ValidationException"
assert ssm.put_parameter(Name="/app/big", Value="x" * 4097, Type="String", Tier="Advanced")["Tier"] == "Advanced"
assert error(ssm.put_parameter, Name="/app/tagged", Value="x", Type="String", Overwrite=True,
             Tags=[{"Key": "a", "Value": "b"}])[0] == "ValidationException"
code, msg = error(raw.get_parameter)
assert code == "ValidationException" and "name" in msg, (code, msg)

ssm.delete_parameter(Name="/app/hosts")
assert error(ssm.delete_parameter, Name="/app/hosts")[0] == "ParameterNotFound"
gone = ssm.delete_parameters(Names=["/bulk/p00", "/bulk/p01", "/bulk/none"])
assert (gone["DeletedParameters"], gone["InvalidParameters"]) == (["/bulk/p00", "/bulk/p01"], ["/bulk/none"])

decrypting = {"GetParameter", "GetParameters", "GetParametersByPath", "GetParameterHistory"}
holding = set(answers.holding(SECRET))
assert holding and holding <= decrypting, holding
done("ssm")
