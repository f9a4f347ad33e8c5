// The construct: infra/template.yaml instantiated inside a CDK stack. Plain CloudFormation
// resources (roles, table, alarm, rejitter mapping) are taken from the template as they are,
// evaluated for the props; the template's two SAM resource types are translated here.
import * as fs from 'fs';
import * as path from 'path';
import { Aws, CfnOutput, CfnResource, Duration, Stack, Token, ArnFormat } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as events from 'aws-cdk-lib/aws-events';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { BreakerSettings, InvalidSettingError, checkConfiguration, parameterValues } from './settings';
import {
  Context, Json, MappingLookupError, REPOSITORY_ROOT, ResolvedResource, TEMPLATE_PATH,
  Template, condition, evaluate, loadTemplate,
} from './template';

/** The code of the breaker's functions, by the template's logical ids' binaries. */
export interface BreakerCode {
  /** The controller's `bootstrap`. */
  readonly controller: lambda.Code;
  /** The rejitter's `bootstrap` (used with `rejitterEnabled`). */
  readonly rejitter: lambda.Code;
}

export interface SqsCircuitBreakerProps extends BreakerSettings {
  /** The consumer: it must have exactly one event source mapping from `queue`. */
  readonly consumer: lambda.IFunction;
  /** The queue the consumer reads. A FIFO queue is refused with `rejitterEnabled`. */
  readonly queue: sqs.IQueue;
  /** QueueKmsKeyArn: the queue's customer-managed key. Default: the queue's own key, if it is a key (not an alias). */
  readonly queueKey?: kms.IKey;
  /** AlarmArn: an existing alarm whose ALARM opens the circuit. Default: an alarm on the consumer's errors is created. */
  readonly alarm?: cloudwatch.IAlarm;
  /** HealthCheckFunctionName: the function `emptyQueuePolicy: 'health-check'` invokes. */
  readonly healthCheck?: lambda.IFunction;
  /** PermissionsBoundaryArn: the permissions boundary of every role the breaker creates. Default none. */
  readonly permissionsBoundary?: iam.IManagedPolicy;
  /**
   * What the SAM template takes from its stack name: the functions are `<name>-controller`
   * and `<name>-rejitter`, the state machine `<name>-circuit-breaker`. At most 53 characters.
   * Default: `<stack name>-<construct id>`.
   */
  readonly breakerName?: string;
  /**
   * The functions' code. Default: the repository's build (`make lambdas`, one `cargo lambda
   * build` of every Lambda binary) run at synth time, and its `target/lambda/<binary>`.
   */
  readonly code?: BreakerCode;
  /**
   * Give the stack the template's outputs (`StateMachineArn`, `AlarmName`, `CircuitTableName`,
   * `ControllerFunctionName`, ...) under their own names, so that the operator command finds
   * the breaker with `--stack <this stack>`. One breaker per stack can. Default true.
   */
  readonly stackOutputs?: boolean;
}

/** The binary each SAM function of the template runs (the Makefile's `build-<LogicalId>`). */
const BINARIES: Record<string, keyof BreakerCode> = {
  ControllerFunction: 'controller',
  RejitterFunction: 'rejitter',
};

/** The repository's build of the Lambda binaries, run once per synth. */
export function repositoryBuild(binary: string): lambda.Code {
  const target = process.env.CARGO_TARGET_DIR ?? path.join(REPOSITORY_ROOT, 'target');
  return lambda.Code.fromCustomCommand(path.join(target, 'lambda', binary), ['make', '-C', REPOSITORY_ROOT, 'lambdas']);
}

/** The template's managed policy for the operator command. */
const OPERATOR_POLICY = 'OperatorPolicy';

/** A deploy the template would refuse, refused at synth time. */
export class RefusedError extends Error {}

export class SqsCircuitBreaker extends Construct {
  /** The breaker's workflow; one execution per opened circuit. */
  public readonly stateMachine: sfn.IStateMachine;
  /** The alarm whose ALARM opens the circuit (created, or the one given). */
  public readonly alarm: cloudwatch.IAlarm;
  /** The table holding the circuit's state. */
  public readonly circuitTable: dynamodb.ITable;
  /** The controller, which runs every step of the workflow. */
  public readonly controller: lambda.IFunction;
  /** The rejitter, with `rejitterEnabled`. */
  public readonly rejitter?: lambda.IFunction;
  /** The workflow in the Step Functions console. */
  public readonly consoleUrl: string;
  /** See the prop. */
  public readonly breakerName: string;
  /** The template's outputs, evaluated (an output whose condition does not hold is absent). */
  public readonly outputs: Record<string, string>;
  /** The managed policy with what the operator command needs on this breaker (`grantOperator` attaches it). */
  public readonly operatorPolicy: iam.IManagedPolicy;

  private readonly props: SqsCircuitBreakerProps;
  private readonly context: Context;
  private readonly template: Template;
  private readonly created = new Map<string, ResolvedResource>();
  private readonly functions = new Map<string, lambda.Function>();
  private readonly constructs = new Map<string, Construct>();
  private readonly operators: Record<'Roles' | 'Users' | 'Groups', string[]> = { Roles: [], Users: [], Groups: [] };

  constructor(scope: Construct, id: string, props: SqsCircuitBreakerProps) {
    super(scope, id);
    this.props = props;
    this.template = loadTemplate();
    const stack = Stack.of(this);
    this.breakerName = props.breakerName ?? `${stack.stackName}-${id}`;
    if (!Token.isUnresolved(this.breakerName) && this.breakerName.length > 53) {
      throw new InvalidSettingError(
        `breakerName ${this.breakerName} is longer than 53 characters: give a shorter breakerName`,
      );
    }
    const queueKey = props.queueKey ?? ownKey(props.queue);
    const parameters = parameterValues(this.template, props, {
      ConsumerFunctionName: props.consumer.functionName,
      QueueArn: props.queue.queueArn,
      QueueKmsKeyArn: queueKey?.keyArn,
      AlarmArn: props.alarm?.alarmArn,
      HealthCheckFunctionName: props.healthCheck?.functionName,
      PermissionsBoundaryArn: props.permissionsBoundary?.managedPolicyArn,
    });
    checkConfiguration(parameters, props.queue.fifo);
    this.context = {
      template: this.template,
      parameters,
      pseudo: {
        'AWS::Partition': Aws.PARTITION,
        'AWS::Region': stack.region,
        'AWS::AccountId': stack.account,
        'AWS::URLSuffix': Aws.URL_SUFFIX,
        'AWS::StackName': this.breakerName,
        // The stack the breaker is deployed with: its status events run the configuration check.
        'AWS::StackId': stack.stackId,
      },
      resource: (logicalId) => this.resource(logicalId),
    };
    this.checkRules();
    for (const logicalId of Object.keys(this.template.Resources)) {
      if (this.included(logicalId)) this.resource(logicalId);
    }

    this.outputs = evaluate(this.context, Object.fromEntries(
      Object.entries(this.template.Outputs)
        .filter(([, o]) => o.Condition === undefined || condition(this.context, o.Condition))
        .map(([k, o]) => [k, o.Value]),
    ));
    if (props.stackOutputs ?? true) {
      for (const [key, value] of Object.entries(this.outputs)) {
        const output = new CfnOutput(this, `Output${key}`, {
          value, description: this.template.Outputs[key].Description,
        });
        output.overrideLogicalId(key);
      }
    }
    this.stateMachine = sfn.StateMachine.fromStateMachineArn(this, 'StateMachineRef', this.outputs.StateMachineArn);
    this.consoleUrl = this.outputs.StateMachineConsoleUrl;
    this.alarm = props.alarm ?? cloudwatch.Alarm.fromAlarmArn(this, 'AlarmRef', stack.formatArn({
      service: 'cloudwatch', resource: 'alarm', resourceName: this.outputs.AlarmName,
      arnFormat: ArnFormat.COLON_RESOURCE_NAME,
    }));
    this.circuitTable = dynamodb.Table.fromTableName(this, 'CircuitTableRef', this.outputs.CircuitTableName);
    this.controller = this.functions.get('ControllerFunction')!;
    this.rejitter = this.functions.get('RejitterFunction');
    this.operatorPolicy = iam.ManagedPolicy.fromManagedPolicyArn(this, 'OperatorPolicyRef', this.outputs.OperatorPolicyArn);
  }

  /**
   * Grants `grantee` what the operator command (`sqs-circuit-breaker status`, `watch`,
   * `open`, `close`, `history`) needs on this breaker: the template's operator policy
   * (docs/operator-command.md#permissions), attached to a role, user or group (imported ones
   * too: the policy names them).
   */
  public grantOperator(grantee: iam.IGrantable): iam.Grant {
    const principal = grantee.grantPrincipal as Partial<iam.IRole & iam.IUser & iam.IGroup>;
    const attach = (key: keyof typeof this.operators, name: string) => {
      this.operators[key].push(name);
      this.operatorPolicyResource().addPropertyOverride(key, [...this.operators[key]]);
      return iam.Grant.drop(grantee, `attach ${this.outputs.OperatorPolicyArn}`);
    };
    if (principal.roleArn !== undefined && principal.roleName !== undefined) return attach('Roles', principal.roleName);
    if (principal.userArn !== undefined && principal.userName !== undefined) return attach('Users', principal.userName);
    if (principal.groupArn !== undefined && principal.groupName !== undefined) return attach('Groups', principal.groupName);
    throw new InvalidSettingError(
      `${this.node.path}: grantOperator attaches a managed policy: give a role, a user or a group, not ${principal}`,
    );
  }

  private operatorPolicyResource(): CfnResource {
    const policy = this.constructs.get(OPERATOR_POLICY);
    if (!(policy instanceof CfnResource)) throw new Error(`infra/template.yaml has no resource ${OPERATOR_POLICY}`);
    return policy;
  }

  private checkRules(): void {
    for (const [name, rule] of Object.entries(this.template.Rules)) {
      if (rule.RuleCondition !== undefined && !conditionOf(this.context, rule.RuleCondition)) continue;
      for (const assertion of rule.Assertions) {
        if (!conditionOf(this.context, assertion.Assert)) {
          throw new RefusedError(`${name}: ${assertion.AssertDescription ?? 'refused'}`);
        }
      }
    }
  }

  private included(logicalId: string): boolean {
    const c = this.template.Resources[logicalId].Condition;
    return c === undefined || condition(this.context, c);
  }

  private resource(logicalId: string): ResolvedResource {
    const existing = this.created.get(logicalId);
    if (existing) return existing;
    const definition = this.template.Resources[logicalId];
    if (definition === undefined) return this.generated(logicalId);
    if (!this.included(logicalId)) {
      throw new Error(`${logicalId} is referenced but its condition ${definition.Condition} does not hold`);
    }
    let made: ResolvedResource;
    const dependencies = [definition.DependsOn ?? []].flat().map((id) => {
      this.resource(id);
      return this.constructs.get(id)!;
    });
    try {
      switch (definition.Type) {
        case 'AWS::Serverless::Function':
          made = this.samFunction(logicalId, definition.Properties);
          break;
        case 'AWS::Serverless::StateMachine':
          made = this.samStateMachine(logicalId, definition.Properties);
          break;
        default: {
          const properties = evaluate(this.context, definition.Properties ?? {});
          const r = new CfnResource(this, logicalId, { type: definition.Type, properties });
          this.constructs.set(logicalId, r);
          made = { ref: r.ref, getAtt: (a) => r.getAtt(a).toString() };
        }
      }
    } catch (e) {
      if (e instanceof MappingLookupError) {
        throw new RefusedError(`${this.node.path}: refused as infra/template.yaml would refuse it (${logicalId}): ${e.message}`);
      }
      throw e;
    }
    for (const dependency of dependencies) this.constructs.get(logicalId)!.node.addDependency(dependency);
    this.created.set(logicalId, made);
    return made;
  }

  /**
   * A resource SAM generates, which the template may reference by SAM's logical id: an
   * event's rule (`<resource><event>`), a state machine's role (`<resource>Role`).
   */
  private generated(logicalId: string): ResolvedResource {
    const owner = Object.entries(this.template.Resources).find(([id, r]) => {
      const suffix = logicalId.slice(id.length);
      return r.Type.startsWith('AWS::Serverless::') && logicalId.startsWith(id)
        && (r.Properties?.Events?.[suffix] !== undefined || (suffix === 'Role' && r.Type === 'AWS::Serverless::StateMachine'));
    });
    if (owner !== undefined) this.resource(owner[0]);
    const made = this.created.get(logicalId);
    if (made === undefined) throw new Error(`infra/template.yaml has no resource ${logicalId}`);
    return made;
  }

  /** AWS::Serverless::Function, as SAM translates the template's use of it. */
  private samFunction(logicalId: string, p: Json): ResolvedResource {
    untranslated(logicalId, p, ['Description', 'CodeUri', 'Handler', 'Runtime', 'Architectures', 'MemorySize',
      'Timeout', 'Environment', 'FunctionName', 'Role', 'Events']);
    const v = evaluate(this.context, {
      Description: p.Description, FunctionName: p.FunctionName, Role: p.Role,
      Environment: p.Environment ?? {},
    });
    const binary = BINARIES[logicalId];
    if (binary === undefined) throw new Error(`the construct has no code for ${logicalId}`);
    const fn = new lambda.Function(this, logicalId, {
      code: this.props.code?.[binary] ?? repositoryBuild(binary),
      handler: p.Handler,
      runtime: new lambda.Runtime(p.Runtime, lambda.RuntimeFamily.OTHER),
      architecture: (p.Architectures ?? ['x86_64'])[0] === 'arm64' ? lambda.Architecture.ARM_64 : lambda.Architecture.X86_64,
      memorySize: p.MemorySize,
      timeout: Duration.seconds(p.Timeout),
      description: v.Description,
      functionName: v.FunctionName,
      role: iam.Role.fromRoleArn(this, `${logicalId}Role`, v.Role, { mutable: false }),
      environment: v.Environment.Variables ?? {},
    });
    this.functions.set(logicalId, fn);
    this.constructs.set(logicalId, fn);
    for (const [name, event] of Object.entries<Json>(p.Events ?? {})) {
      const rule = this.eventRule(`${logicalId}${name}`, event, { Arn: fn.functionArn, Id: `${logicalId}${name}LambdaTarget` });
      new lambda.CfnPermission(this, `${logicalId}${name}Permission`, {
        action: 'lambda:InvokeFunction', functionName: fn.functionName,
        principal: 'events.amazonaws.com', sourceArn: rule.attrArn,
      });
    }
    return { ref: fn.functionName, getAtt: (a) => attribute(logicalId, a, { Arn: fn.functionArn }) };
  }

  /** AWS::Serverless::StateMachine, as SAM translates the template's use of it. */
  private samStateMachine(logicalId: string, p: Json): ResolvedResource {
    untranslated(logicalId, p, ['Name', 'Type', 'PermissionsBoundary', 'DefinitionUri', 'DefinitionSubstitutions',
      'Policies', 'Events']);
    // SAM gives the roles it creates for the state machine (its own and its events') the boundary.
    const boundary = evaluate(this.context, { b: p.PermissionsBoundary }).b;
    const role = new iam.CfnRole(this, `${logicalId}Role`, {
      assumeRolePolicyDocument: assumedBy('states.amazonaws.com'),
      permissionsBoundary: boundary,
      policies: (p.Policies ?? []).map((policy: Json, i: number) => {
        if (typeof policy !== 'object' || !('Statement' in policy)) {
          throw new Error(`${logicalId}: only inline policy documents are translated`);
        }
        return { policyName: `${logicalId}RolePolicy${i}`, policyDocument: evaluate(this.context, policy) };
      }),
    });
    const definition = fs.readFileSync(path.resolve(path.dirname(TEMPLATE_PATH), p.DefinitionUri), 'utf8');
    const machine = new sfn.CfnStateMachine(this, logicalId, {
      stateMachineName: evaluate(this.context, p.Name),
      stateMachineType: p.Type,
      definitionString: definition,
      definitionSubstitutions: evaluate(this.context, p.DefinitionSubstitutions ?? {}),
      roleArn: role.attrArn,
    });
    this.constructs.set(logicalId, machine);
    this.created.set(`${logicalId}Role`, { ref: role.ref, getAtt: (a) => attribute(`${logicalId}Role`, a, { Arn: role.attrArn }) });
    for (const [name, event] of Object.entries<Json>(p.Events ?? {})) {
      const startRole = new iam.CfnRole(this, `${logicalId}${name}Role`, {
        assumeRolePolicyDocument: assumedBy('events.amazonaws.com'),
        permissionsBoundary: boundary,
        policies: [{
          policyName: `${logicalId}${name}RoleStartExecutionPolicy`,
          policyDocument: {
            Version: '2012-10-17',
            Statement: [{ Effect: 'Allow', Action: 'states:StartExecution', Resource: machine.ref }],
          },
        }],
      });
      this.eventRule(`${logicalId}${name}`, event, {
        Arn: machine.ref, Id: `${logicalId}${name}StepFunctionsTarget`, RoleArn: startRole.attrArn,
      });
    }
    return { ref: machine.ref, getAtt: (a) => attribute(logicalId, a, { Arn: machine.ref, Name: machine.attrName }) };
  }

  private eventRule(id: string, event: Json, target: Json): events.CfnRule {
    if (event.Type !== 'EventBridgeRule') throw new Error(`${id}: event type ${event.Type} is not translated`);
    const unknown = Object.keys(event.Properties).filter((k) => k !== 'Pattern');
    if (unknown.length > 0) throw new Error(`${id}: EventBridgeRule properties ${unknown.join(', ')} are not translated`);
    const rule = new events.CfnRule(this, id, {
      eventPattern: evaluate(this.context, event.Properties.Pattern),
      state: 'ENABLED',
      targets: [{ arn: target.Arn, id: target.Id, roleArn: target.RoleArn }],
    });
    this.created.set(id, { ref: rule.ref, getAtt: (a) => attribute(id, a, { Arn: rule.attrArn }) });
    this.constructs.set(id, rule);
    return rule;
  }
}

function attribute(logicalId: string, name: string, known: Record<string, string>): string {
  const value = known[name];
  if (value === undefined) throw new Error(`${logicalId}.${name} is not translated`);
  return value;
}

/** A SAM property the construct does not translate fails the synth, naming it. */
function untranslated(logicalId: string, properties: Json, known: string[]): void {
  const unknown = Object.keys(properties ?? {}).filter((k) => !known.includes(k));
  if (unknown.length > 0) throw new Error(`${logicalId}: SAM properties ${unknown.join(', ')} are not translated by the construct`);
}

function assumedBy(service: string): Json {
  return {
    Version: '2012-10-17',
    Statement: [{ Effect: 'Allow', Principal: { Service: service }, Action: 'sts:AssumeRole' }],
  };
}

function ownKey(queue: sqs.IQueue): kms.IKey | undefined {
  const key = queue.encryptionMasterKey;
  // An alias (alias/aws/sqs) is not a key the template can name.
  return key && !('aliasName' in key) ? key : undefined;
}

/** A condition written inline (a rule's), evaluated as the template's conditions are. */
function conditionOf(ctx: Context, expression: Json): boolean {
  return evaluate({ ...ctx, template: { ...ctx.template, Conditions: { ...ctx.template.Conditions, '$': expression } } }, { Condition: '$' });
}
