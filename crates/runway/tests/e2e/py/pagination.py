"""NextToken and MaxResults on the list operations."""
from common import client, done, error, image_source

c = client()
names = [f"svc-{i:02d}" for i in range(25)]
arns = [c.create_service(ServiceName=n, SourceConfiguration=image_source())["Service"]["ServiceArn"] for n in names]

page = c.list_services()
assert len(page["ServiceSummaryList"]) == 20 and "NextToken" in page, len(page["ServiceSummaryList"])
rest = c.list_services(NextToken=page["NextToken"])
assert len(rest["ServiceSummaryList"]) == 5 and "NextToken" not in rest

seen, token, pages = [], None, 0
while True:
    kwargs = {"MaxResults": 7}
    if token:
        kwargs["NextToken"] = token
    page = c.list_services(**kwargs)
    seen += [s["ServiceName"] for s in page["ServiceSummaryList"]]
    pages += 1
    token = page.get("NextToken")
    if not token:
        break
assert seen == names and pages == 4, (seen, pages)

target = arns[0]
c.start_deployment(ServiceArn=target)
c.update_service(ServiceArn=target, HealthCheckConfiguration={"Protocol": "HTTP", "Path": "/healthz"})
kinds, token = [], None
while True:
    kwargs = {"ServiceArn": target, "MaxResults": 1}
    if token:
        kwargs["NextToken"] = token
    page = c.list_operations(**kwargs)
    kinds += [o["Type"] for o in page["OperationSummaryList"]]
    token = page.get("NextToken")
    if not token:
        break
assert kinds == ["UPDATE_SERVICE", "START_DEPLOYMENT", "CREATE_SERVICE"], kinds
health = c.describe_service(ServiceArn=target)["Service"]["HealthCheckConfiguration"]
assert health == {"Protocol": "HTTP", "Path": "/healthz", "Interval": 5, "Timeout": 2,
                  "HealthyThreshold": 1, "UnhealthyThreshold": 5}, health

for i in range(4):
    c.create_auto_scaling_configuration(AutoScalingConfigurationName=f"conf-{i}")
seen, token = [], None
while True:
    kwargs = {"MaxResults": 2}
    if token:
        kwargs["NextToken"] = token
    page = c.list_auto_scaling_configurations(**kwargs)
    seen += [s["AutoScalingConfigurationName"] for s in page["AutoScalingConfigurationSummaryList"]]
    token = page.get("NextToken")
    if not token:
        break
assert seen == ["DefaultConfiguration", "conf-0", "conf-1", "conf-2", "conf-3"], seen

code, message = error(c.list_services, NextToken="not-a-token")
assert code == "InvalidRequestException" and "NextToken" in message, (code, message)
done("pagination")
