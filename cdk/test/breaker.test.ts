import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { App, Stack } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import {
  REPOSITORY_ROOT, RESOURCE_PARAMETERS, SETTINGS, SqsCircuitBreaker, SqsCircuitBreakerProps,
  loadTemplate, parameterName,
} from '../lib';

// Bundling skipped: one empty bootstrap stands for both binaries.
const codeDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sqscb-code-'));
fs.writeFileSync(path.join(codeDir, 'bootstrap'), '');
/** A new Code per stack (CDK ties an asset to one stack). */
const code = () => ({ controller: lambda.Code.fromAsset(codeDir), rejitter: lambda.Code.fromAsset(codeDir) });

interface Built {
  stack: Stack;
  breaker: SqsCircuitBreaker;
  template: Template;
}

function build(
  props: Partial<SqsCircuitBreakerProps> = {},
  queueProps: sqs.QueueProps = {},
  more?: (stack: Stack) => Partial<SqsCircuitBreakerProps>,
): Built {
  const app = new App();
  const stack = new Stack(app, 'Orders', { env: { account: '123456789012', region: 'eu-west-1' } });
  const consumer = lambda.Function.fromFunctionArn(stack, 'Consumer', 'arn:aws:lambda:eu-west-1:123456789012:function:orders-consumer');
  const queue = new sqs.Queue(stack, 'Queue', queueProps);
  const breaker = new SqsCircuitBreaker(stack, 'Breaker', {
    consumer, queue, code: code(), ...props, ...(more ? more(stack) : {}),
  });
  return { stack, breaker, template: Template.fromStack(stack) };
}

function only(template: Template, type: string): { logicalId: string; properties: any } {
  const found = template.findResources(type);
  const ids = Object.keys(found);
  assert.equal(ids.length, 1, `one ${type}: ${ids.join(', ')}`);
  return { logicalId: ids[0], properties: found[ids[0]].Properties };
}

function controllerEnvironment(template: Template): Record<string, unknown> {
  const functions = template.findResources('AWS::Lambda::Function', {
    Properties: { FunctionName: 'Orders-Breaker-controller' },
  });
  return Object.values(functions)[0].Properties.Environment.Variables;
}

function rolePolicy(template: Template, policyName: string): any[] {
  const roles = template.findResources('AWS::IAM::Role');
  for (const role of Object.values(roles)) {
    for (const policy of role.Properties.Policies ?? []) {
      if (policy.PolicyName === policyName) return policy.PolicyDocument.Statement;
    }
  }
  throw new Error(`no role with policy ${policyName}`);
}

const sids = (statements: any[]) => statements.map((s) => s.Sid);

test('every parameter of infra/template.yaml is a prop, and every plain setting a parameter', () => {
  const parameters = Object.keys(loadTemplate().Parameters);
  const props = new Set([...Object.keys(SETTINGS).map(parameterName), ...Object.keys(RESOURCE_PARAMETERS)]);
  const missing = parameters.filter((p) => !props.has(p));
  assert.deepEqual(missing, [], `template parameters the construct lacks (add them to BreakerSettings and SETTINGS): ${missing}`);
  const extra = [...props].filter((p) => !parameters.includes(p));
  assert.deepEqual(extra, [], `props with no template parameter: ${extra}`);
});

test('the defaults: one workflow, one controller, the created alarms, the template defaults in the environment', () => {
  const { template } = build();
  template.resourceCountIs('AWS::StepFunctions::StateMachine', 1);
  // The circuits, and the consumers attached to this deployment.
  template.resourceCountIs('AWS::DynamoDB::Table', 2);
  // AlarmSignal any: the error share, failed records and stalled, under a composite.
  template.resourceCountIs('AWS::CloudWatch::Alarm', 3);
  template.resourceCountIs('AWS::CloudWatch::CompositeAlarm', 1);
  // The alarm's, the recovery's and the configuration check's on deploy.
  template.resourceCountIs('AWS::Events::Rule', 3);
  template.resourceCountIs('AWS::Logs::LogGroup', 1);
  template.resourceCountIs('AWS::IAM::ManagedPolicy', 1);
  template.resourceCountIs('AWS::SNS::Topic', 0);
  template.resourceCountIs('AWS::Lambda::EventSourceMapping', 0);
  template.resourceCountIs('AWS::Lambda::Function', 1);
  template.hasResourceProperties('AWS::Lambda::Function', {
    FunctionName: 'Orders-Breaker-controller', Runtime: 'provided.al2023', Architectures: ['x86_64'],
    MemorySize: 128, Timeout: 900, Handler: 'bootstrap',
  });
  const env = controllerEnvironment(template);
  const declared = Object.keys(loadTemplate().Resources.ControllerFunction.Properties.Environment.Variables);
  assert.deepEqual(Object.keys(env).sort(), declared.sort());
  assert.equal(env.BACKOFF_BASE_SECONDS, '5');
  assert.equal(env.BACKOFF_CAP_SECONDS, '300');
  assert.equal(env.GIVE_UP_POLICY, 'restore');
  assert.equal(env.EMPTY_QUEUE_POLICY, 'close');
  assert.equal(env.MAX_CIRCUITS_PER_HOUR, '6');
  assert.equal(env.STATE_MACHINE_NAME, 'Orders-Breaker-circuit-breaker');
  assert.equal(env.REJITTER_FUNCTION_NAME, '');
  assert.equal(env.CONSUMER_FUNCTION_NAME, 'orders-consumer');
  assert.equal(env.ALARM_SIGNAL, 'any');
  assert.equal(env.ALARM_FAILURE_PERCENT, '20');
  assert.equal(env.ALARM_HANG_PERIODS, '3');
  assert.equal(env.MIN_DELAY_SECONDS, '0');
  assert.equal(env.MAX_DELAY_SECONDS, '900');
  const composite = only(template, 'AWS::CloudWatch::CompositeAlarm');
  assert.deepEqual(env.ALARM_NAME, { Ref: composite.logicalId });
  assert.equal(composite.properties.AlarmName, 'Orders-Breaker-consumer-failing');
  // The controller's log group is the stack's, with the retention, created before it.
  const logGroup = only(template, 'AWS::Logs::LogGroup');
  assert.equal(logGroup.properties.LogGroupName, '/aws/lambda/Orders-Breaker-controller');
  assert.equal(logGroup.properties.RetentionInDays, '30');
  const controller = Object.values(template.findResources('AWS::Lambda::Function', {
    Properties: { FunctionName: 'Orders-Breaker-controller' },
  }))[0];
  assert.ok([controller.DependsOn].flat().includes(logGroup.logicalId), 'the controller depends on its log group');
});

test('the errors signal: one alarm on the consumer\'s Errors, with the alarm props', () => {
  const { template } = build({ alarmSignal: 'errors' });
  template.resourceCountIs('AWS::CloudWatch::CompositeAlarm', 0);
  const env = controllerEnvironment(template);
  const alarm = only(template, 'AWS::CloudWatch::Alarm');
  assert.deepEqual(env.ALARM_NAME, { Ref: alarm.logicalId });
  assert.equal(env.ALARM_SIGNAL, 'errors');
  assert.equal(alarm.properties.AlarmName, 'Orders-Breaker-consumer-errors');
  assert.equal(alarm.properties.MetricName, 'Errors');
  assert.equal(alarm.properties.Period, '60');
  assert.equal(alarm.properties.EvaluationPeriods, '3');
  assert.equal(alarm.properties.DatapointsToAlarm, '2');
  assert.equal(alarm.properties.Threshold, '1');
});

test('the workflow is statemachine/circuit-breaker.asl.json, run by the controller', () => {
  const { template } = build();
  const machine = only(template, 'AWS::StepFunctions::StateMachine');
  const asl = fs.readFileSync(path.join(REPOSITORY_ROOT, 'statemachine', 'circuit-breaker.asl.json'), 'utf8');
  assert.equal(machine.properties.DefinitionString, asl);
  assert.equal(machine.properties.StateMachineName, 'Orders-Breaker-circuit-breaker');
  assert.equal(machine.properties.StateMachineType, 'STANDARD');
  const controller = Object.keys(template.findResources('AWS::Lambda::Function', {
    Properties: { FunctionName: 'Orders-Breaker-controller' },
  }))[0];
  assert.deepEqual(machine.properties.DefinitionSubstitutions, { ControllerFunctionArn: { 'Fn::GetAtt': [controller, 'Arn'] } });
  const statements = rolePolicy(template, 'CircuitBreakerStateMachineRolePolicy0');
  assert.deepEqual(statements, [{
    Sid: 'RunTheController', Effect: 'Allow', Action: 'lambda:InvokeFunction', Resource: { 'Fn::GetAtt': [controller, 'Arn'] },
  }]);
  // The alarm's ALARM transitions start it.
  const alarm = only(template, 'AWS::CloudWatch::CompositeAlarm').logicalId;
  template.hasResourceProperties('AWS::Events::Rule', {
    EventPattern: {
      source: ['aws.cloudwatch'], 'detail-type': ['CloudWatch Alarm State Change'],
      resources: [{ 'Fn::GetAtt': [alarm, 'Arn'] }], detail: { state: { value: ['ALARM'] } },
    },
    Targets: [Match.objectLike({ Arn: { Ref: machine.logicalId } })],
  });
});

test("the controller's IAM is the template's, statement for statement, for the same inputs", () => {
  const tpl = loadTemplate();
  const declared = tpl.Resources.ControllerRole.Properties.Policies[0].PolicyDocument.Statement;
  // Without a key or a health check, the conditional statement is dropped (as CloudFormation does).
  const unconditional = declared.filter((s: any) => s.Sid !== undefined).map((s: any) => s.Sid);
  const { template } = build();
  const statements = rolePolicy(template, 'controller');
  assert.deepEqual(sids(statements), unconditional);
  const bySid = Object.fromEntries(statements.map((s: any) => [s.Sid, s]));
  const queue = only(template, 'AWS::SQS::Queue').logicalId;
  assert.deepEqual(bySid.TakeOneProbeMessage.Resource, { 'Fn::GetAtt': [queue, 'Arn'] });
  assert.equal(JSON.stringify(bySid.ProbeTheConsumer.Resource).includes(':function:orders-consumer:*'), true);
  assert.equal(bySid.ProbeTheConsumer.Resource.length, 2);
  assert.deepEqual(bySid.PublishBreakerMetrics.Condition, { StringEquals: { 'cloudwatch:namespace': 'SqsCircuitBreaker' } });
  assert.equal(bySid.DisableAndEnableTheConsumersMapping.Condition.ArnLike['lambda:FunctionArn'].length, 2);
  assert.ok(JSON.stringify(bySid.CheckTheBreakersExecutions.Resource).includes(':execution:Orders-Breaker-circuit-breaker:*'));
  assert.ok(JSON.stringify(bySid.WriteItsOwnLogStreams.Resource).includes(':log-group:/aws/lambda/Orders-Breaker-controller:*'));
  // The created composite and its children: what the controller re-arms.
  const alarms = [...Object.keys(template.findResources('AWS::CloudWatch::Alarm')),
    ...Object.keys(template.findResources('AWS::CloudWatch::CompositeAlarm'))];
  assert.deepEqual(bySid.ResetTheAlarm.Resource.map((r: any) => r['Fn::GetAtt'][0]).sort(), alarms.sort());
  // No managed policy: logs only to its own group.
  const role = only({ findResources: (t: string) => template.findResources(t, { Properties: { Policies: [{ PolicyName: 'controller' }] } }) } as any, 'AWS::IAM::Role');
  assert.equal(role.properties.ManagedPolicyArns, undefined);
});

test('a key, a health check and the rejitter add exactly their statements', () => {
  const { template } = build(
    { rejitterEnabled: true, emptyQueuePolicy: 'health-check', minDelaySeconds: 5, maxDelaySeconds: 20 },
    {},
    (stack) => ({
      queueKey: new kms.Key(stack, 'Key'),
      healthCheck: lambda.Function.fromFunctionArn(stack, 'Health', 'arn:aws:lambda:eu-west-1:123456789012:function:orders-health'),
    }),
  );
  const statements = rolePolicy(template, 'controller');
  const bySid = Object.fromEntries(statements.map((s: any) => [s.Sid, s]));
  assert.ok(bySid.UseTheQueuesKey, 'the key statement');
  assert.deepEqual(bySid.UseTheQueuesKey.Action, ['kms:Decrypt', 'kms:GenerateDataKey']);
  assert.equal(bySid.ProbeTheConsumer.Resource.length, 4);
  assert.ok(JSON.stringify(bySid.ProbeTheConsumer.Resource).includes(':function:orders-health:*'));
  const rejitter = Object.keys(template.findResources('AWS::Lambda::Function', {
    Properties: { FunctionName: 'Orders-Breaker-rejitter' },
  }))[0];
  assert.ok(rejitter, 'the rejitter function');
  assert.deepEqual(
    bySid.DisableAndEnableTheConsumersMapping.Condition.ArnLike['lambda:FunctionArn'][2],
    { 'Fn::GetAtt': [rejitter, 'Arn'] },
  );
  assert.deepEqual(sids(rolePolicy(template, 'rejitter')), ['RejitterTheQueue', 'UseTheQueuesKey', 'WriteItsOwnLogStreams']);
  const rejitterFunction = template.findResources('AWS::Lambda::Function', { Properties: { FunctionName: 'Orders-Breaker-rejitter' } });
  const rejitterLog = Object.keys(template.findResources('AWS::Logs::LogGroup', {
    Properties: { LogGroupName: '/aws/lambda/Orders-Breaker-rejitter' },
  }));
  assert.equal(rejitterLog.length, 1);
  assert.deepEqual(Object.values(rejitterFunction)[0].DependsOn, rejitterLog);
  template.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
    Enabled: false, BatchSize: 10, FunctionResponseTypes: ['ReportBatchItemFailures'], FunctionName: { Ref: rejitter },
  });
  template.hasResourceProperties('AWS::Lambda::Function', {
    FunctionName: 'Orders-Breaker-rejitter', Timeout: 15,
    Environment: { Variables: Match.objectLike({ MIN_DELAY_SECONDS: '5', MAX_DELAY_SECONDS: '20' }) },
  });
  const env = controllerEnvironment(template);
  assert.deepEqual(env.REJITTER_FUNCTION_NAME, { Ref: rejitter });
  assert.equal(env.EMPTY_QUEUE_POLICY, 'health-check');
  assert.equal(env.HEALTH_CHECK_FUNCTION, 'orders-health');
});

test('props map to the controller environment', () => {
  const { template } = build({
    backoffBaseSeconds: 1, backoffCapSeconds: 2, maxProbeAttempts: 7, maxOpenSeconds: 600, giveUpPolicy: 'leave-open',
    retentionMarginSeconds: 60, settleTimeoutSeconds: 20, maxCircuitsPerHour: 0, eventBusName: 'ops',
    metricsNamespace: 'Orders', slowStartSeconds: 120, slowStartConcurrency: 4, rejitterMaxSeconds: 300,
  });
  const env = controllerEnvironment(template);
  assert.deepEqual(
    [env.BACKOFF_BASE_SECONDS, env.BACKOFF_CAP_SECONDS, env.MAX_PROBE_ATTEMPTS, env.MAX_OPEN_SECONDS, env.GIVE_UP_POLICY,
      env.RETENTION_MARGIN_SECONDS, env.SETTLE_TIMEOUT_SECONDS, env.MAX_CIRCUITS_PER_HOUR, env.EVENT_BUS_NAME,
      env.METRICS_NAMESPACE, env.SLOW_START_SECONDS, env.SLOW_START_CONCURRENCY, env.REJITTER_MAX_SECONDS],
    ['1', '2', '7', '600', 'leave-open', '60', '20', '0', 'ops', 'Orders', '120', '4', '300'],
  );
  const bySid = Object.fromEntries(rolePolicy(template, 'controller').map((s: any) => [s.Sid, s]));
  assert.ok(JSON.stringify(bySid.SendEventsAndAlerts.Resource).includes(':event-bus/ops'));
});

test('an existing alarm: none created, its ARN starts the workflow and its name is ALARM_NAME', () => {
  const { template, breaker } = build({}, {}, (stack) => ({
    alarm: cloudwatch.Alarm.fromAlarmArn(stack, 'Mine', 'arn:aws:cloudwatch:eu-west-1:123456789012:alarm:orders-age'),
  }));
  template.resourceCountIs('AWS::CloudWatch::Alarm', 0);
  assert.equal(controllerEnvironment(template).ALARM_NAME, 'orders-age');
  template.hasResourceProperties('AWS::Events::Rule', {
    EventPattern: Match.objectLike({ resources: ['arn:aws:cloudwatch:eu-west-1:123456789012:alarm:orders-age'] }),
  });
  assert.equal(breaker.alarm.alarmArn, 'arn:aws:cloudwatch:eu-west-1:123456789012:alarm:orders-age');
  template.hasOutput('AlarmName', { Value: 'orders-age' });
});

test('the refusals of the template, at synth time', () => {
  // What the controller's configuration check would refuse (CloudFormation cannot).
  assert.throws(() => build({ rejitterEnabled: true }, { fifo: true }), /rejitterEnabled needs a standard queue/);
  assert.doesNotThrow(() => build({}, { fifo: true }));
  assert.throws(() => build({ minDelaySeconds: 30, maxDelaySeconds: 20 }), /minDelaySeconds \(30\) must not exceed maxDelaySeconds \(20\)/);
  assert.doesNotThrow(() => build({ minDelaySeconds: 20, maxDelaySeconds: 20 }));
  assert.throws(() => build({ backoffBaseSeconds: 10, backoffCapSeconds: 5 }), /backoffBaseSeconds \(10\) must not exceed backoffCapSeconds \(5\)/);
  assert.throws(() => build({ alarmDatapointsToAlarm: 4, alarmEvaluationPeriods: 3 }), /must not exceed alarmEvaluationPeriods/);
  assert.throws(() => build({ emptyQueuePolicy: 'health-check' }), /requires HealthCheckFunctionName/);
  assert.throws(() => build({ alarmPeriodSeconds: 45 as any }), /alarmPeriodSeconds \(AlarmPeriodSeconds\) must be one of/);
  assert.throws(() => build({ maxDelaySeconds: 901 }), /must be at most 900/);
  assert.throws(() => build({ backoffBaseSeconds: 1.5 }), /whole number/);
  assert.throws(() => build({ breakerName: 'x'.repeat(54) }), /longer than 53/);
  assert.throws(() => build({ alarmSignal: 'hangs' as any }), /alarmSignal \(AlarmSignal\) must be one of any, failed-records, error-share, errors/);
  assert.throws(() => build({ alarmFailurePercent: 101 }), /must be at most 100/);
  assert.throws(() => build({ logRetentionDays: 9999 }), /logRetentionDays \(LogRetentionDays\) must be one of/);
});

test('outputs: the properties a CDK user reads, and the stack outputs the operator command reads', () => {
  const { template, breaker, stack } = build();
  const outputs = loadTemplate().Outputs;
  for (const [key, output] of Object.entries(outputs)) {
    if (output.Condition === undefined) template.hasOutput(key, {});
  }
  assert.equal(breaker.outputs.AlertTopicArn, undefined, 'AlertTopicArn only with alertTopic');
  const policy = only(template, 'AWS::IAM::ManagedPolicy').logicalId;
  template.hasOutput('OperatorPolicyArn', { Value: { Ref: policy } });
  template.hasResourceProperties('AWS::Events::Rule', {
    EventPattern: Match.objectLike({ source: ['aws.cloudformation'], detail: { 'stack-id': [{ Ref: 'AWS::StackId' }], 'status-details': Match.anyValue() } }),
  });
  const machine = only(template, 'AWS::StepFunctions::StateMachine').logicalId;
  assert.deepEqual(stack.resolve(breaker.stateMachine.stateMachineArn), { Ref: machine });
  const tables = Object.keys(template.findResources('AWS::DynamoDB::Table'));
  const circuits = tables.filter((id) => id.includes('CircuitTable'));
  assert.equal(circuits.length, 1, `one circuit table: ${tables.join(', ')}`);
  const table = circuits[0];
  assert.deepEqual(stack.resolve(breaker.circuitTable.tableName), { Ref: table });
  assert.ok(JSON.stringify(stack.resolve(breaker.consoleUrl)).includes('#/statemachines/view/'));
  const alarm = only(template, 'AWS::CloudWatch::CompositeAlarm').logicalId;
  assert.ok(JSON.stringify(stack.resolve(breaker.alarm.alarmName)).includes(alarm));
  assert.ok(breaker.controller.functionArn);
});

test('the signals: metric math with the props in the expression, and the composite of three', () => {
  const share = build({ alarmSignal: 'error-share', alarmMinimumCount: 25, alarmFailurePercent: 40 }).template;
  const alarm = only(share, 'AWS::CloudWatch::Alarm');
  assert.equal(alarm.properties.AlarmName, 'Orders-Breaker-consumer-error-share');
  assert.equal(alarm.properties.Threshold, '40');
  const expression = alarm.properties.Metrics.find((m: any) => m.Expression).Expression;
  assert.equal(expression, 'IF(invocations >= 25, 100 * FILL(errors, 0) / invocations, 0)');
  assert.equal(controllerEnvironment(share).ALARM_SIGNAL, 'error-share');

  const failed = build({ alarmSignal: 'failed-records' }).template;
  const records = only(failed, 'AWS::CloudWatch::Alarm');
  assert.equal(records.properties.AlarmName, 'Orders-Breaker-consumer-failed-records');
  assert.deepEqual(controllerEnvironment(failed).ALARM_NAME, { Ref: records.logicalId });
  // The queue's name, from its ARN.
  const queue = only(failed, 'AWS::SQS::Queue').logicalId;
  assert.deepEqual(records.properties.Metrics[0].MetricStat.Metric.Dimensions[0].Value,
    { 'Fn::Select': [5, { 'Fn::Split': [':', { 'Fn::GetAtt': [queue, 'Arn'] }] }] });

  const any = build({ alarmHangPeriods: 5 }).template;
  const stalled = Object.entries(any.findResources('AWS::CloudWatch::Alarm', {
    Properties: { AlarmName: 'Orders-Breaker-consumer-stalled' },
  }))[0];
  assert.equal(stalled[1].Properties.EvaluationPeriods, '5');
  const composite = only(any, 'AWS::CloudWatch::CompositeAlarm');
  const rule = JSON.stringify(composite.properties.AlarmRule);
  assert.ok(rule.includes(stalled[0]) && rule.includes('ALARM'), rule);
  assert.equal(controllerEnvironment(any).ALARM_HANG_PERIODS, '5');
});

test('company-account options: a permissions boundary on every role, the log retention, the alert topic and health alarms', () => {
  const { template } = build({ alertTopic: true, logRetentionDays: 90, rejitterEnabled: true }, {}, (stack) => ({
    permissionsBoundary: iam.ManagedPolicy.fromManagedPolicyArn(stack, 'Boundary', 'arn:aws:iam::123456789012:policy/company-boundary'),
  }));
  const roles = Object.values(template.findResources('AWS::IAM::Role'));
  // The controller's, the rejitter's, the state machine's and its rule's.
  assert.equal(roles.length, 4);
  for (const role of roles) assert.equal(role.Properties.PermissionsBoundary, 'arn:aws:iam::123456789012:policy/company-boundary');
  for (const group of Object.values(template.findResources('AWS::Logs::LogGroup'))) {
    assert.equal(group.Properties.RetentionInDays, '90');
  }
  const topic = only(template, 'AWS::SNS::Topic').logicalId;
  template.hasOutput('AlertTopicArn', { Value: { Ref: topic } });
  template.resourceCountIs('AWS::SNS::TopicPolicy', 1);
  template.hasResourceProperties('AWS::Events::Rule', {
    EventPattern: Match.objectLike({ 'detail-type': ['Circuit Gave Up', 'Breaker Misconfigured'] }),
    Targets: [Match.objectLike({ Arn: { Ref: topic } })],
  });
  // Health alarms, the rule alarms naming the rules SAM would create (here the construct's).
  const health = Object.values(template.findResources('AWS::CloudWatch::Alarm', {
    Properties: { AlarmActions: [{ Ref: topic }] },
  }));
  assert.equal(health.length, 8);
  const ruleFailed = health.find((a) => a.Properties.AlarmName === 'Orders-Breaker-alarm-rule-failed')!;
  const ruleName = ruleFailed.Properties.Dimensions[0].Value.Ref;
  const rule = template.toJSON().Resources[ruleName];
  assert.equal(rule.Type, 'AWS::Events::Rule');
  assert.deepEqual(rule.Properties.EventPattern['detail-type'], ['CloudWatch Alarm State Change']);
});

test('grantOperator attaches the template\'s operator policy, which grants every action docs/operator-command.md lists', () => {
  const docs = fs.readFileSync(path.join(REPOSITORY_ROOT, 'docs', 'operator-command.md'), 'utf8');
  const table = docs.slice(docs.indexOf('## Permissions'), docs.indexOf('## Reading an execution'));
  const listed = [...table.matchAll(/`([a-z]+):([A-Za-z]+)`/g)].map((m) => `${m[1]}:${m[2]}`);
  assert.ok(listed.length > 15, `actions found in the table: ${listed}`);
  const app = new App();
  const stack = new Stack(app, 'Ops', { env: { account: '123456789012', region: 'eu-west-1' } });
  const consumer = lambda.Function.fromFunctionArn(stack, 'Consumer', 'arn:aws:lambda:eu-west-1:123456789012:function:orders-consumer');
  const dlq = new sqs.Queue(stack, 'Dlq');
  const queue = new sqs.Queue(stack, 'Queue', { deadLetterQueue: { queue: dlq, maxReceiveCount: 5 } });
  const breaker = new SqsCircuitBreaker(stack, 'Breaker', { consumer, queue, code: code() });
  const operator = new iam.Role(stack, 'Operator', { assumedBy: new iam.AccountRootPrincipal() });
  const imported = iam.Role.fromRoleArn(stack, 'Imported', 'arn:aws:iam::123456789012:role/ops');
  const user = new iam.User(stack, 'Person');
  breaker.grantOperator(operator);
  breaker.grantOperator(imported);
  breaker.grantOperator(user);
  const synthesized = Template.fromStack(stack);
  // One copy: the template's managed policy, attached; no statement of its own.
  synthesized.resourceCountIs('AWS::IAM::Policy', 0);
  const policy = only(synthesized, 'AWS::IAM::ManagedPolicy');
  const role = Object.keys(synthesized.findResources('AWS::IAM::Role', { Properties: { AssumeRolePolicyDocument: Match.objectLike({ Statement: [Match.objectLike({ Principal: { AWS: Match.anyValue() } })] }) } }))[0];
  assert.deepEqual(policy.properties.Roles, [{ Ref: role }, 'ops']);
  assert.deepEqual(policy.properties.Users, [{ Ref: only(synthesized, 'AWS::IAM::User').logicalId }]);
  assert.deepEqual(stack.resolve(breaker.operatorPolicy.managedPolicyArn), { Ref: policy.logicalId });
  const declared = loadTemplate().Resources.OperatorPolicy.Properties.PolicyDocument.Statement.map((st: any) => st.Sid);
  assert.deepEqual(sids(policy.properties.PolicyDocument.Statement), declared);
  const granted = new Set<string>(policy.properties.PolicyDocument.Statement.flatMap((st: any) => [st.Action].flat()));
  const missing = listed.filter((a) => !granted.has(a));
  assert.deepEqual(missing, [], 'documented actions the operator policy lacks');
  assert.ok(JSON.stringify(policy.properties).includes(':sqs:eu-west-1:123456789012:*'), 'the DLQ is readable');

  // A principal that is no role, user or group takes no managed policy.
  assert.throws(() => breaker.grantOperator(new iam.AccountRootPrincipal()), /a role, a user or a group/);
});
