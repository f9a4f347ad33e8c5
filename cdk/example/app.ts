// An example CDK app: a queue, its dead-letter queue and the repository's example consumer
// (as infra/example.yaml has them), with the breaker attached in three lines.
//
//   npm run build && node dist/example/app.js      # synthesizes to cdk.out (or CDK_OUTDIR)
//   npx cdk deploy --app "node dist/example/app.js" # with the AWS CDK CLI, against AWS
//
// Context (`-c key=value`, or CDK_CONTEXT_JSON): `stackName` (default sqscb-cdk-example),
// `breaker` (a JSON object of SqsCircuitBreaker settings, e.g. {"backoffBaseSeconds":1}),
// `visibilityTimeoutSeconds` (60), `consumerTimeoutSeconds` (10), `maxReceiveCount` (5).
import { App, CfnOutput, Duration, Stack } from 'aws-cdk-lib';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { SqsEventSource } from 'aws-cdk-lib/aws-lambda-event-sources';
import { BreakerSettings, SqsCircuitBreaker, repositoryBuild } from '../lib';

const app = new App();
const context = (key: string, fallback: string): string => String(app.node.tryGetContext(key) ?? fallback);
const settings = app.node.tryGetContext('breaker') ?? {};
const breakerSettings: BreakerSettings = typeof settings === 'string' ? JSON.parse(settings) : settings;

const stack = new Stack(app, 'Example', { stackName: context('stackName', 'sqscb-cdk-example') });

const deadLetters = new sqs.Queue(stack, 'DeadLetterQueue', { retentionPeriod: Duration.days(14) });
const ordersQueue = new sqs.Queue(stack, 'Queue', {
  visibilityTimeout: Duration.seconds(Number(context('visibilityTimeoutSeconds', '60'))),
  retentionPeriod: Duration.days(4),
  deadLetterQueue: { queue: deadLetters, maxReceiveCount: Number(context('maxReceiveCount', '5')) },
});
const ordersFn = new lambda.Function(stack, 'Consumer', {
  code: repositoryBuild('example-consumer'),
  handler: 'bootstrap',
  runtime: lambda.Runtime.PROVIDED_AL2023,
  architecture: lambda.Architecture.X86_64,
  memorySize: 128,
  timeout: Duration.seconds(Number(context('consumerTimeoutSeconds', '10'))),
  environment: { SHOULD_ERROR: 'false', FAILURE_RATE: '0', LATENCY_MS: '0', POISON_MARKER: '', RUST_LOG: 'info' },
});
const mapping = new SqsEventSource(ordersQueue, { batchSize: 10, reportBatchItemFailures: true });
ordersFn.addEventSource(mapping);

// The breaker: the consumer and its queue, and any settings.
new SqsCircuitBreaker(stack, 'OrdersBreaker', { consumer: ordersFn, queue: ordersQueue, ...breakerSettings });

new CfnOutput(stack, 'QueueUrl', { value: ordersQueue.queueUrl });
new CfnOutput(stack, 'QueueArn', { value: ordersQueue.queueArn });
new CfnOutput(stack, 'DeadLetterQueueUrl', { value: deadLetters.queueUrl });
new CfnOutput(stack, 'ConsumerFunctionName', { value: ordersFn.functionName });
new CfnOutput(stack, 'EventSourceMappingId', { value: mapping.eventSourceMappingId });
app.synth();
