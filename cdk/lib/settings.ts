// The breaker's settings: one prop per parameter of infra/template.yaml, named after it in
// lowerCamelCase, with the template's default, and checked against the template's own
// constraints. Pure: no construct is created here.
import { Token } from 'aws-cdk-lib';
import { Template, TemplateParameter } from './template';

/**
 * Every plain setting of the SAM template (see docs/parameters.md for each one's meaning).
 * Omitted: the template's default. A new template parameter is one line here and one in
 * `SETTINGS` below (the compiler asks for it).
 */
export interface BreakerSettings {
  /**
   * AlarmSignal: what the created alarm watches (docs/alarm-signals.md). any: failed records
   * or a stalled consumer (a composite alarm); failed-records: the share of received messages
   * not deleted; error-share: the share of invocations that raised an error; errors: the
   * consumer's Errors count. Default any.
   */
  readonly alarmSignal?: 'any' | 'failed-records' | 'error-share' | 'errors';
  /** AlarmFailurePercent: any, failed-records, error-share: a period breaches from this percentage (1 to 100). Default 20. */
  readonly alarmFailurePercent?: number;
  /** AlarmMinimumCount: any, failed-records, error-share: a period counts only with at least this many messages (or invocations). Default 10. */
  readonly alarmMinimumCount?: number;
  /** AlarmHangPeriods: any: consecutive periods with messages in flight and none deleted that count as a hang. Default 3. */
  readonly alarmHangPeriods?: number;
  /** AlarmThreshold: errors: the created alarm breaches when the consumer's Errors (Sum) per period reach this. Default 1. */
  readonly alarmThreshold?: number;
  /** AlarmPeriodSeconds: period of the created alarm. Default 60. */
  readonly alarmPeriodSeconds?: 10 | 30 | 60 | 120 | 180 | 300 | 600 | 900 | 1800 | 3600;
  /** AlarmEvaluationPeriods: periods the created alarm evaluates. Default 3. */
  readonly alarmEvaluationPeriods?: number;
  /** AlarmDatapointsToAlarm: breaching periods among those that put the created alarm in ALARM. Default 2. */
  readonly alarmDatapointsToAlarm?: number;
  /** BackoffBaseSeconds: ceiling of the first wait between probes. Default 5. */
  readonly backoffBaseSeconds?: number;
  /** BackoffCapSeconds: highest ceiling of the wait between probes (at least backoffBaseSeconds). Default 300. */
  readonly backoffCapSeconds?: number;
  /** MaxProbeAttempts: probe rounds before giving up; 0 = unlimited. Default 0. */
  readonly maxProbeAttempts?: number;
  /** MaxOpenSeconds: time open before giving up; 0 = unlimited. Default 0. */
  readonly maxOpenSeconds?: number;
  /** EmptyQueuePolicy: what a probe does on an empty queue. Default close. */
  readonly emptyQueuePolicy?: 'close' | 'wait' | 'health-check';
  /** GiveUpPolicy: on a limit, re-enable the consumer (restore) or keep it disabled (leave-open). Default restore. */
  readonly giveUpPolicy?: 'restore' | 'leave-open';
  /** RetentionMarginSeconds: give up this long before the oldest queued message would expire. Default 3600. */
  readonly retentionMarginSeconds?: number;
  /** SettleTimeoutSeconds: how long one controller invocation waits for the mapping to settle. Default 60. */
  readonly settleTimeoutSeconds?: number;
  /** MaxCircuitsPerHour: at most this many circuits in any hour; 0 = no bound. Default 6. */
  readonly maxCircuitsPerHour?: number;
  /** EventBusName: the bus (this account and region) for the breaker's events. Default "default". */
  readonly eventBusName?: string;
  /** MetricsNamespace: CloudWatch namespace of the breaker's metrics. Default SqsCircuitBreaker. */
  readonly metricsNamespace?: string;
  /** RejitterEnabled: spread the backlog before re-enabling the consumer (standard queues only). Default false. */
  readonly rejitterEnabled?: boolean;
  /** MinDelaySeconds: shortest rejitter delay (at most maxDelaySeconds). Default 0. */
  readonly minDelaySeconds?: number;
  /** MaxDelaySeconds: longest rejitter delay. Default 900. */
  readonly maxDelaySeconds?: number;
  /** RejitterMaxSeconds: longest rejitter phase. Default 900. */
  readonly rejitterMaxSeconds?: number;
  /** SlowStartSeconds: the half-open slow start's length; 0 closes at full concurrency at once. Default 0. */
  readonly slowStartSeconds?: number;
  /** SlowStartConcurrency: the slow start's first MaximumConcurrency. Default 2. */
  readonly slowStartConcurrency?: number;
  /**
   * AlertTopic: create an SNS topic (output AlertTopicArn) for "Circuit Gave Up" and "Breaker
   * Misconfigured" events and the breaker's health alarms. Default false.
   */
  readonly alertTopic?: boolean;
  /**
   * LogRetentionDays: days the functions' logs (log groups owned by the stack) are kept; one
   * of CloudWatch Logs' values (a `logs.RetentionDays` other than INFINITE). Default 30.
   */
  readonly logRetentionDays?: number;
}

/** The plain settings at run time (interfaces are erased): the compiler keeps it complete. */
export const SETTINGS: Record<keyof BreakerSettings, true> = {
  alarmSignal: true,
  alarmFailurePercent: true,
  alarmMinimumCount: true,
  alarmHangPeriods: true,
  alarmThreshold: true,
  alarmPeriodSeconds: true,
  alarmEvaluationPeriods: true,
  alarmDatapointsToAlarm: true,
  backoffBaseSeconds: true,
  backoffCapSeconds: true,
  maxProbeAttempts: true,
  maxOpenSeconds: true,
  emptyQueuePolicy: true,
  giveUpPolicy: true,
  retentionMarginSeconds: true,
  settleTimeoutSeconds: true,
  maxCircuitsPerHour: true,
  eventBusName: true,
  metricsNamespace: true,
  rejitterEnabled: true,
  minDelaySeconds: true,
  maxDelaySeconds: true,
  rejitterMaxSeconds: true,
  slowStartSeconds: true,
  slowStartConcurrency: true,
  alertTopic: true,
  logRetentionDays: true,
};

/**
 * The parameters that name a resource: given as construct objects (`consumer`, `queue`,
 * `queueKey`, `alarm`, `healthCheck`, `permissionsBoundary`), not as plain settings.
 */
export const RESOURCE_PARAMETERS: Record<string, string> = {
  ConsumerFunctionName: 'consumer',
  QueueArn: 'queue',
  QueueKmsKeyArn: 'queueKey',
  AlarmArn: 'alarm',
  HealthCheckFunctionName: 'healthCheck',
  PermissionsBoundaryArn: 'permissionsBoundary',
};

export function parameterName(setting: string): string {
  return setting[0].toUpperCase() + setting.slice(1);
}

export function settingName(parameter: string): string {
  return parameter[0].toLowerCase() + parameter.slice(1);
}

/** A setting the template would refuse, or a pair of settings the breaker would. */
export class InvalidSettingError extends Error {}

function check(name: string, value: string, p: TemplateParameter): void {
  if (Token.isUnresolved(value)) return;
  const fail = (why: string) => {
    throw new InvalidSettingError(`${name} (${parameterName(name)}) ${why}, got ${JSON.stringify(value)}`);
  };
  if (p.Type === 'Number') {
    const n = Number(value);
    if (value === '' || !Number.isInteger(n)) fail('must be a whole number');
    if (p.MinValue !== undefined && n < p.MinValue) fail(`must be at least ${p.MinValue}`);
    if (p.MaxValue !== undefined && n > p.MaxValue) fail(`must be at most ${p.MaxValue}`);
  } else {
    if (p.MinLength !== undefined && value.length < p.MinLength) fail(`must have at least ${p.MinLength} characters`);
    if (p.MaxLength !== undefined && value.length > p.MaxLength) fail(`must have at most ${p.MaxLength} characters`);
    if (p.AllowedPattern !== undefined && !new RegExp(p.AllowedPattern).test(value)) {
      fail(`must match ${p.AllowedPattern}`);
    }
  }
  if (p.AllowedValues !== undefined && !p.AllowedValues.map(String).includes(value)) {
    fail(`must be one of ${p.AllowedValues.join(', ')}`);
  }
}

/**
 * The template's parameter values for these settings and resource names (strings, as
 * CloudFormation passes them; tokens allowed): the template's defaults for what is not given,
 * each value checked against its parameter's constraints. Throws InvalidSettingError.
 */
export function parameterValues(
  template: Template,
  settings: BreakerSettings,
  resources: Record<string, string | undefined>,
): Record<string, string> {
  const values: Record<string, string> = {};
  for (const [parameter, definition] of Object.entries(template.Parameters)) {
    const setting = settingName(parameter);
    const given =
      parameter in RESOURCE_PARAMETERS
        ? resources[parameter]
        : (settings as Record<string, unknown>)[setting];
    if (given === undefined && definition.Default === undefined) {
      throw new InvalidSettingError(`${RESOURCE_PARAMETERS[parameter] ?? setting} is required`);
    }
    const value = String(given ?? definition.Default);
    check(RESOURCE_PARAMETERS[parameter] ?? setting, value, definition);
    values[parameter] = value;
  }
  for (const setting of Object.keys(settings)) {
    if (!(parameterName(setting) in template.Parameters) && setting in SETTINGS) {
      throw new InvalidSettingError(`${setting}: infra/template.yaml has no parameter ${parameterName(setting)}`);
    }
  }
  return values;
}

/**
 * What the controller's configuration check would refuse at cold start (and announce as
 * "Breaker Misconfigured"), and what CloudFormation cannot check: refused at synth time.
 * `values` are the template's parameter values; `queueIsFifo` comes from the IQueue.
 * Throws InvalidSettingError.
 */
export function checkConfiguration(values: Record<string, string>, queueIsFifo: boolean): void {
  const known = (v: string | undefined): v is string => v !== undefined && !Token.isUnresolved(v);
  const pair = (low: string, high: string) => {
    const [a, b] = [values[parameterName(low)], values[parameterName(high)]];
    if (known(a) && known(b) && Number(a) > Number(b)) {
      throw new InvalidSettingError(`${low} (${a}) must not exceed ${high} (${b})`);
    }
  };
  pair('backoffBaseSeconds', 'backoffCapSeconds');
  pair('alarmDatapointsToAlarm', 'alarmEvaluationPeriods');
  pair('minDelaySeconds', 'maxDelaySeconds');
  if (values.RejitterEnabled === 'true' && queueIsFifo) {
    throw new InvalidSettingError(
      'rejitterEnabled needs a standard queue: a FIFO queue cannot delay single messages (set rejitterEnabled to false)',
    );
  }
}
