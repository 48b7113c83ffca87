"""Deploys the real ``template.yaml`` into a running moto server.

The SAM template is translated offline by ``aws-sam-translator`` and created by moto's
CloudFormation, then the gaps listed in ``docs/local-stack.md`` are bridged:

- state machines are recreated in moto's *executing* Step Functions backend, with the
  template's ``DefinitionSubstitutions`` resolved against the created stack;
- bucket ``NotificationConfiguration`` (S3 events to Lambda) is applied by API;
- HttpApi resources are left out (moto has no execute-api data plane: ``local.front``
  routes by the template's HttpApi events instead);
- event source mappings are left out (moto would invoke the function inside each write)
  and polled by ``local.event_sources`` instead, from their definitions here.
"""

from __future__ import annotations

import copy
import io
import json
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from samtranslator.translator.transform import transform

from local.event_sources import MappingSpec
from local.lambda_runtime import FunctionCode, InProcessRuntime
from local.template import ACCOUNT_ID, load_template

DEPLOY_BUCKET = "local-sam-artifacts"
# moto's CloudFormation has no HttpApi data plane and does not model bucket policies; the
# front (local.front) stands in for the API, and moto never enforces bucket policies anyway.
# The API is served by local/front.py; the alarms, their topic and the dashboard watch
# metrics nothing publishes locally (metrics are disabled), and moto's CloudFormation knows
# neither dashboards nor topic policies.
_SKIPPED_TYPES = (
    "AWS::ApiGatewayV2::",
    "AWS::S3::BucketPolicy",
    "AWS::CloudWatch::",
    "AWS::SNS::",
    "AWS::Lambda::EventSourceMapping",
)
_SUB_PATTERN = re.compile(r"\$\{([^}!]+)\}")


@dataclass
class DeployedStack:
    stack_name: str
    region: str
    outputs: dict[str, str]
    physical_ids: dict[str, str]
    function_names: dict[str, str] = field(default_factory=dict)
    state_machine_arns: dict[str, str] = field(default_factory=dict)
    template: dict[str, Any] = field(default_factory=dict)
    resource_types: dict[str, str] = field(default_factory=dict)
    event_sources: list[MappingSpec] = field(default_factory=list)

    def function_name(self, logical_id: str) -> str:
        return self.function_names[logical_id]


class _ManagedPolicies:
    """The few AWS managed policies SAM attaches by name (X-Ray for Tracing: Active)."""

    def load(self) -> dict[str, str]:
        return {
            "AWSXrayWriteOnlyAccess": "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess",
            "AWSXRayDaemonWriteAccess": "arn:aws:iam::aws:policy/AWSXRayDaemonWriteAccess",
            "AWSLambdaBasicExecutionRole": (
                "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
            ),
        }


class TemplateDeployer:
    def __init__(self, root: Path, runtime: InProcessRuntime, region: str) -> None:
        self.root = root
        self.runtime = runtime
        self.region = region
        self._s3 = boto3.client("s3", region_name=region)
        self._cfn = boto3.client("cloudformation", region_name=region)
        self._lambda = boto3.client("lambda", region_name=region)
        self._sfn = boto3.client("stepfunctions", region_name=region)

    def deploy(self, stack_name: str, parameters: dict[str, str]) -> DeployedStack:
        sam = load_template(self.root / "template.yaml")
        self._s3.create_bucket(Bucket=DEPLOY_BUCKET)
        codes = self._package(sam)
        definitions = self._inline_state_machines(sam)
        cfn = transform(copy.deepcopy(sam), parameters, _ManagedPolicies())
        skipped = [k for k, v in cfn["Resources"].items() if _skipped(v["Type"])]
        mappings = {
            k: v
            for k, v in cfn["Resources"].items()
            if v["Type"] == "AWS::Lambda::EventSourceMapping"
            and _condition_holds(cfn, v.get("Condition"), parameters)
        }
        for logical_id in skipped:
            del cfn["Resources"][logical_id]
        outputs = cfn.get("Outputs", {})
        for name in [n for n, o in outputs.items() if _refers_to(o, set(skipped))]:
            del outputs[name]
        cfn["Resources"] = {
            k: v for k, v in cfn["Resources"].items() if not _invoked_by_http_api(v)
        }
        self._cfn.create_stack(
            StackName=stack_name,
            TemplateBody=json.dumps(cfn),
            Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
            Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"],
        )
        stack = self._cfn.describe_stacks(StackName=stack_name)["Stacks"][0]
        if stack["StackStatus"] != "CREATE_COMPLETE":
            raise RuntimeError(f"local stack creation failed: {stack['StackStatus']}")
        resources = self._cfn.describe_stack_resources(StackName=stack_name)["StackResources"]
        deployed = DeployedStack(
            stack_name=stack_name,
            region=self.region,
            outputs={o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])},
            physical_ids={
                r["LogicalResourceId"]: r["PhysicalResourceId"]
                for r in resources
                if "LogicalResourceId" in r and "PhysicalResourceId" in r
            },
            template=sam,
            resource_types={k: v["Type"] for k, v in cfn["Resources"].items()},
        )
        resolver = _Resolver(deployed, parameters, self._lambda)
        for logical_id, code in codes.items():
            if logical_id not in deployed.physical_ids:
                continue  # its Condition is false (the webhook function without WebhookUrl)
            name = deployed.physical_ids[logical_id]
            deployed.function_names[logical_id] = name
            self.runtime.register(name, code)
        self._create_state_machines(deployed, cfn, definitions, resolver)
        self._apply_bucket_notifications(cfn, resolver)
        deployed.event_sources = [
            MappingSpec(
                logical_id=logical_id,
                source_arn=resolver.resolve(props["EventSourceArn"]),
                function_name=resolver.resolve(props["FunctionName"]),
                batch_size=int(props.get("BatchSize", 10)),
                filters=tuple(
                    f["Pattern"] for f in props.get("FilterCriteria", {}).get("Filters", [])
                ),
                report_batch_item_failures="ReportBatchItemFailures"
                in props.get("FunctionResponseTypes", []),
            )
            for logical_id, props in ((k, v["Properties"]) for k, v in mappings.items())
        ]
        return deployed

    # -- packaging ----------------------------------------------------------------------

    def _package(self, sam: dict[str, Any]) -> dict[str, FunctionCode]:
        handler_default = sam.get("Globals", {}).get("Function", {}).get("Handler")
        codes: dict[str, FunctionCode] = {}
        for logical_id, resource in sam["Resources"].items():
            props = resource.get("Properties", {})
            if resource["Type"] == "AWS::Serverless::Function":
                code_dir = (self.root / props["CodeUri"]).resolve()
                props["CodeUri"] = self._upload_zip(logical_id, code_dir)
                reserved = props.get("ReservedConcurrentExecutions", 0)
                codes[logical_id] = FunctionCode(
                    logical_id,
                    code_dir,
                    props.get("Handler", handler_default),
                    reserved if isinstance(reserved, int) else 0,
                )
            elif resource["Type"] == "AWS::Serverless::LayerVersion":
                layer_dir = (self.root / props["ContentUri"]).resolve()
                props["ContentUri"] = self._upload_zip(logical_id, layer_dir)
                self.runtime.add_layer(layer_dir)
        return codes

    def _upload_zip(self, logical_id: str, folder: Path) -> str:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            for path in sorted(folder.rglob("*.py")):
                archive.write(path, path.relative_to(folder).as_posix())
        key = f"{logical_id}.zip"
        self._s3.put_object(Bucket=DEPLOY_BUCKET, Key=key, Body=buffer.getvalue())
        return f"s3://{DEPLOY_BUCKET}/{key}"

    def _inline_state_machines(self, sam: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """Read each DefinitionUri, keeping the raw definition and its substitutions."""
        found: dict[str, dict[str, Any]] = {}
        for logical_id, resource in sam["Resources"].items():
            if resource["Type"] != "AWS::Serverless::StateMachine":
                continue
            props = resource["Properties"]
            definition = json.loads((self.root / props.pop("DefinitionUri")).read_text())
            props["Definition"] = definition
            found[logical_id] = {
                "definition": definition,
                "substitutions": props.get("DefinitionSubstitutions", {}),
            }
        return found

    # -- the gaps moto's CloudFormation leaves -------------------------------------------

    def _create_state_machines(
        self,
        deployed: DeployedStack,
        cfn: dict[str, Any],
        definitions: dict[str, dict[str, Any]],
        resolver: _Resolver,
    ) -> None:
        for logical_id, spec in definitions.items():
            substitutions = {k: str(resolver.resolve(v)) for k, v in spec["substitutions"].items()}
            text = _substitute(json.dumps(spec["definition"]), substitutions)
            name = deployed.physical_ids[logical_id].rsplit(":", 1)[-1]
            role = resolver.resolve(cfn["Resources"][logical_id]["Properties"]["RoleArn"])
            arn = self._sfn.create_state_machine(name=name, definition=text, roleArn=role)[
                "stateMachineArn"
            ]
            deployed.state_machine_arns[logical_id] = arn

    def _apply_bucket_notifications(self, cfn: dict[str, Any], resolver: _Resolver) -> None:
        for logical_id, resource in cfn["Resources"].items():
            if resource["Type"] != "AWS::S3::Bucket":
                continue
            notification = resource["Properties"].get("NotificationConfiguration")
            if not notification:
                continue
            configs = []
            for index, entry in enumerate(notification.get("LambdaConfigurations", [])):
                config: dict[str, Any] = {
                    "Id": f"{logical_id}-{index}",
                    "LambdaFunctionArn": resolver.resolve(entry["Function"]),
                    "Events": [entry["Event"]],
                }
                if "Filter" in entry:
                    rules = entry["Filter"]["S3Key"]["Rules"]
                    config["Filter"] = {
                        "Key": {
                            "FilterRules": [{"Name": r["Name"], "Value": r["Value"]} for r in rules]
                        }
                    }
                configs.append(config)
            self._s3.put_bucket_notification_configuration(
                Bucket=resolver.resolve({"Ref": logical_id}),
                NotificationConfiguration={"LambdaFunctionConfigurations": configs},
            )


def _skipped(resource_type: str) -> bool:
    return resource_type.startswith(_SKIPPED_TYPES)


def _condition_holds(
    cfn: dict[str, Any], condition: str | None, parameters: dict[str, str]
) -> bool:
    """Whether a resource's Condition holds (when not, moto's CloudFormation leaves it out).
    The only conditions on mappings compare a parameter with a value, perhaps negated."""
    if condition is None:
        return True
    spec = cfn.get("Conditions", {})[condition]
    negated = "Fn::Not" in spec
    equals = (spec["Fn::Not"][0] if negated else spec)["Fn::Equals"]
    same = parameters.get(equals[0]["Ref"], "") == equals[1]
    return same != negated


def _refers_to(node: Any, logical_ids: set[str]) -> bool:
    """Whether a template fragment names one of these resources (Ref, GetAtt or Sub)."""
    if isinstance(node, list):
        return any(_refers_to(item, logical_ids) for item in node)
    if not isinstance(node, dict):
        return False
    if node.get("Ref") in logical_ids:
        return True
    att = node.get("Fn::GetAtt")
    if att is not None:
        name = att[0] if isinstance(att, list) else str(att).split(".", 1)[0]
        if name in logical_ids:
            return True
    sub = node.get("Fn::Sub")
    if sub is not None:
        text = sub if isinstance(sub, str) else sub[0]
        if any(m.split(".", 1)[0] in logical_ids for m in _SUB_PATTERN.findall(text)):
            return True
    return any(_refers_to(value, logical_ids) for value in node.values())


def _invoked_by_http_api(resource: dict[str, Any]) -> bool:
    """Lambda permissions for HttpApi routes point at the API we leave out."""
    if resource["Type"] != "AWS::Lambda::Permission":
        return False
    return "execute-api" in json.dumps(resource["Properties"].get("SourceArn", ""))


def _substitute(text: str, values: dict[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise KeyError(f"state machine definition uses ${{{name}}} with no substitution")
        return values[name]

    return _SUB_PATTERN.sub(replace, text)


class _Resolver:
    """Resolves the intrinsic functions that substitutions and notifications use."""

    def __init__(self, deployed: DeployedStack, parameters: dict[str, str], lambda_client: Any):
        self.deployed = deployed
        self.parameters = parameters
        self._lambda = lambda_client

    def pseudo(self) -> dict[str, str]:
        return {
            "AWS::Region": self.deployed.region,
            "AWS::AccountId": ACCOUNT_ID,
            "AWS::StackName": self.deployed.stack_name,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
        }

    def resolve(self, value: Any) -> Any:
        if isinstance(value, str):
            return value
        if isinstance(value, dict) and len(value) == 1:
            ((fn, arg),) = value.items()
            if fn == "Ref":
                return self._ref(arg)
            if fn == "Fn::GetAtt":
                logical, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
                return self._get_att(logical, attribute)
            if fn == "Fn::Sub":
                return self._sub(arg)
        raise ValueError(f"local stack cannot resolve {value!r}")

    def _ref(self, name: str) -> str:
        if name in self.parameters:
            return self.parameters[name]
        if name in self.pseudo():
            return self.pseudo()[name]
        if name in self.deployed.state_machine_arns:
            return self.deployed.state_machine_arns[name]
        return self.deployed.physical_ids[name]

    def _get_att(self, logical: str, attribute: str) -> str:
        physical = self.deployed.physical_ids[logical]
        if attribute == "StreamArn":
            stream: str = boto3.client("dynamodb", region_name=self.deployed.region).describe_table(
                TableName=physical
            )["Table"]["LatestStreamArn"]
            return stream
        if attribute != "Arn":
            raise ValueError(f"local stack cannot resolve {logical}.{attribute}")
        if physical.startswith("arn:"):
            return physical
        resource_type = self.deployed.resource_types[logical]
        if resource_type == "AWS::IAM::Role":
            return f"arn:aws:iam::{ACCOUNT_ID}:role/{physical}"
        if resource_type == "AWS::Lambda::Function":
            arn: str = self._lambda.get_function(FunctionName=physical)["Configuration"][
                "FunctionArn"
            ]
            return arn
        if resource_type == "AWS::S3::Bucket":
            return f"arn:aws:s3:::{physical}"
        if resource_type == "AWS::DynamoDB::Table":
            return f"arn:aws:dynamodb:{self.deployed.region}:{ACCOUNT_ID}:table/{physical}"
        if resource_type == "AWS::SQS::Queue":
            return f"arn:aws:sqs:{self.deployed.region}:{ACCOUNT_ID}:{physical.rsplit('/', 1)[-1]}"
        raise ValueError(f"local stack cannot resolve {logical}.Arn ({resource_type})")

    def _sub(self, arg: Any) -> str:
        template, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in variables:
                return str(self.resolve(variables[name]))
            if "." in name and not name.startswith("AWS::"):
                logical, attribute = name.split(".", 1)
                return self._get_att(logical, attribute)
            return self._ref(name)

        return _SUB_PATTERN.sub(replace, template)
