"""Deploys a synthesized CDK stack (a cloud assembly) to the endpoint in AWS_ENDPOINT_URL:
what `cdk deploy` does, without its bootstrap stack. Uploads the stack's file assets to the
buckets its asset manifest names, then creates the stack from its template (by URL when it
is too large to pass inline) and waits.

usage: python cdk_deploy.py <cloud assembly dir> <artifact id> <stack name>
"""
import io
import json
import os
import sys
import zipfile

import boto3

out, artifact, stack_name = sys.argv[1:4]
region = os.environ["AWS_REGION"]
account = boto3.client("sts").get_caller_identity()["Account"]
with open(os.path.join(out, f"{artifact}.template.json")) as f:
    template = json.load(f)
with open(os.path.join(out, f"{artifact}.assets.json")) as f:
    assets = json.load(f)


def package(source):
    path = os.path.join(out, source["path"])
    if source.get("packaging") != "zip":
        with open(path, "rb") as f:
            return f.read()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        for root, _, files in os.walk(path):
            for name in sorted(files):
                full = os.path.join(root, name)
                # ZipFile.write keeps the file's mode: bootstrap stays executable.
                z.write(full, os.path.relpath(full, path))
    return buffer.getvalue()


s3 = boto3.client("s3")
made = set()
for asset in assets.get("files", {}).values():
    body = package(asset["source"])
    for destination in asset["destinations"].values():
        bucket = (
            destination["bucketName"]
            .replace("${AWS::AccountId}", account)
            .replace("${AWS::Region}", region)
        )
        if bucket not in made:
            try:
                s3.create_bucket(Bucket=bucket)
            except s3.exceptions.BucketAlreadyOwnedByYou:
                pass
            made.add(bucket)
        s3.put_object(Bucket=bucket, Key=destination["objectKey"], Body=body)

# The bootstrap stack's version check: there is no bootstrap stack here.
template.get("Rules", {}).pop("CheckBootstrapVersion", None)
if not template.get("Rules"):
    template.pop("Rules", None)
template.get("Parameters", {}).pop("BootstrapVersion", None)

# As `cdk deploy` does: a template past CloudFormation's inline limit (51,200 bytes) goes
# through the assets' bucket and is passed by URL.
body = json.dumps(template)
source = {"TemplateBody": body}
if len(body.encode()) > 51200:
    if not made:
        sys.exit("the template is too large to pass inline and the assembly names no bucket")
    bucket, key = sorted(made)[0], f"{stack_name}.template.json"
    s3.put_object(Bucket=bucket, Key=key, Body=body.encode())
    source = {"TemplateURL": f"https://s3.{region}.amazonaws.com/{bucket}/{key}"}

cfn = boto3.client("cloudformation")
cfn.create_stack(
    StackName=stack_name,
    Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"],
    **source,
)
try:
    cfn.get_waiter("stack_create_complete").wait(
        StackName=stack_name, WaiterConfig={"Delay": 2, "MaxAttempts": 300}
    )
except Exception:
    for event in cfn.describe_stack_events(StackName=stack_name)["StackEvents"]:
        print(event["LogicalResourceId"], event["ResourceStatus"], event.get("ResourceStatusReason", ""))
    raise
print(f"created {stack_name}")
