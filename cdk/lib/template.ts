// The SAM template (infra/template.yaml) as data, and a small evaluator of the intrinsic
// functions it uses. The construct reads its IAM, environment, alarm, rule patterns, refusals
// and outputs from that one file instead of keeping a copy of them.
import * as fs from 'fs';
import * as path from 'path';
import { Fn, Token } from 'aws-cdk-lib';
import { parseDocument, YAMLMap, YAMLSeq } from 'yaml';

/** The repository's root: this package lives in its `cdk/` folder (compiled to `cdk/dist/lib`). */
export const REPOSITORY_ROOT = path.resolve(__dirname, '..', '..', '..');
export const TEMPLATE_PATH = path.join(REPOSITORY_ROOT, 'infra', 'template.yaml');

export type Json = any; // eslint-disable-line @typescript-eslint/no-explicit-any

export interface TemplateParameter {
  readonly Type: 'String' | 'Number';
  readonly Default?: string | number;
  readonly MinValue?: number;
  readonly MaxValue?: number;
  readonly MinLength?: number;
  readonly MaxLength?: number;
  readonly AllowedValues?: Array<string | number>;
  readonly AllowedPattern?: string;
}

export interface TemplateResource {
  readonly Type: string;
  readonly Condition?: string;
  readonly DependsOn?: string | string[];
  readonly Properties?: Json;
}

export interface Template {
  readonly Parameters: Record<string, TemplateParameter>;
  readonly Conditions: Record<string, Json>;
  readonly Mappings: Record<string, Json>;
  readonly Rules: Record<string, { RuleCondition?: Json; Assertions: Array<{ Assert: Json; AssertDescription?: string }> }>;
  readonly Resources: Record<string, TemplateResource>;
  readonly Outputs: Record<string, { Value: Json; Description?: string; Condition?: string }>;
}

const FUNCTIONS = ['Sub', 'If', 'Equals', 'Not', 'And', 'Or', 'Join', 'Split', 'Select', 'FindInMap', 'Base64', 'GetAZs', 'ImportValue'];

/** The YAML short forms (`!Ref`, `!Sub`, ...) as their JSON forms. */
function cloudFormationTags() {
  const tags: Json[] = [
    { tag: '!Ref', resolve: (s: string) => ({ Ref: s }) },
    { tag: '!Condition', resolve: (s: string) => ({ Condition: s }) },
    { tag: '!GetAtt', resolve: (s: string) => ({ 'Fn::GetAtt': [s.slice(0, s.indexOf('.')), s.slice(s.indexOf('.') + 1)] }) },
    { tag: '!GetAtt', collection: 'seq', resolve: (s: YAMLSeq) => ({ 'Fn::GetAtt': s.toJSON() }) },
  ];
  for (const name of FUNCTIONS) {
    tags.push({ tag: `!${name}`, resolve: (s: string) => ({ [`Fn::${name}`]: s }) });
    tags.push({ tag: `!${name}`, collection: 'seq', resolve: (s: YAMLSeq) => ({ [`Fn::${name}`]: s.toJSON() }) });
    tags.push({ tag: `!${name}`, collection: 'map', resolve: (s: YAMLMap) => ({ [`Fn::${name}`]: s.toJSON() }) });
  }
  return tags;
}

/** Parses a CloudFormation YAML template, short forms included. */
export function parseTemplate(text: string): Template {
  const doc = parseDocument(text, { customTags: cloudFormationTags(), schema: 'core', version: '1.1' });
  if (doc.errors.length > 0) {
    throw new Error(`invalid template: ${doc.errors.map((e) => e.message).join('; ')}`);
  }
  const json = doc.toJS({ maxAliasCount: -1 });
  return { Parameters: {}, Conditions: {}, Mappings: {}, Rules: {}, Resources: {}, Outputs: {}, ...json };
}

let cached: Template | undefined;

/** infra/template.yaml, read once. */
export function loadTemplate(): Template {
  cached ??= parseTemplate(fs.readFileSync(TEMPLATE_PATH, 'utf8'));
  return cached;
}

/** `AWS::NoValue`: dropped from the list or object that holds it. */
export const NO_VALUE = Symbol('AWS::NoValue');

/** A resource as the evaluator sees it: what `Ref` and `Fn::GetAtt` give. */
export interface ResolvedResource {
  readonly ref: string;
  getAtt(attribute: string): string;
}

export interface Context {
  readonly template: Template;
  /** Parameter values as CloudFormation passes them: strings (CDK tokens allowed). */
  readonly parameters: Record<string, string>;
  /** `AWS::Partition`, `AWS::Region`, `AWS::AccountId`, `AWS::StackName`, ... */
  readonly pseudo: Record<string, string>;
  /** Conditions decided outside the template (those that would test a token). */
  readonly conditions?: Record<string, boolean>;
  /** Looks a resource up (and may create it). */
  resource(logicalId: string): ResolvedResource;
}

/** A Fn::FindInMap with no such key: CloudFormation would fail the deploy, so the synth fails. */
export class MappingLookupError extends Error {
  constructor(readonly keys: string[]) {
    super(`Unable to get mapping for ${keys.join('::')}`);
  }
}

function unresolved(v: unknown): boolean {
  return typeof v === 'string' ? Token.isUnresolved(v) : Array.isArray(v) ? Token.isUnresolved(v) : false;
}

function lookupName(ctx: Context, name: string): unknown {
  if (name === 'AWS::NoValue') return NO_VALUE;
  if (name in ctx.parameters) return ctx.parameters[name];
  if (name in ctx.pseudo) return ctx.pseudo[name];
  if (name.startsWith('AWS::')) throw new Error(`pseudo parameter ${name} is not known to the construct`);
  return ctx.resource(name).ref;
}

function sub(ctx: Context, text: string, variables: Record<string, unknown>): string {
  return text.replace(/\$\{([^}]+)\}/g, (_, name: string) => {
    if (name.startsWith('!')) return '${' + name.slice(1) + '}';
    if (name in variables) return String(variables[name]);
    const dot = name.indexOf('.');
    if (dot > 0 && !name.startsWith('AWS::')) {
      return ctx.resource(name.slice(0, dot)).getAtt(name.slice(dot + 1));
    }
    return String(lookupName(ctx, name));
  });
}

/** Evaluates a condition of the template (or one decided by the caller). */
export function condition(ctx: Context, name: string): boolean {
  if (ctx.conditions && name in ctx.conditions) return ctx.conditions[name];
  const expression = ctx.template.Conditions[name];
  if (expression === undefined) throw new Error(`no condition ${name}`);
  try {
    return conditionValue(ctx, expression);
  } catch (e) {
    throw new Error(`condition ${name}: ${(e as Error).message}`);
  }
}

function conditionValue(ctx: Context, node: Json): boolean {
  if (typeof node === 'boolean') return node;
  if (node && typeof node === 'object' && !Array.isArray(node)) {
    const [key] = Object.keys(node);
    const arg = node[key];
    switch (key) {
      case 'Condition':
        return condition(ctx, arg);
      case 'Fn::Not':
        return !conditionValue(ctx, arg[0]);
      case 'Fn::And':
        return arg.every((c: Json) => conditionValue(ctx, c));
      case 'Fn::Or':
        return arg.some((c: Json) => conditionValue(ctx, c));
      case 'Fn::Equals': {
        const [a, b] = arg.map((v: Json) => evaluate(ctx, v));
        // A resource's name or ARN (a token) is never empty: the template's "is it given?"
        // tests compare with "".
        if ((unresolved(a) && b === '') || (unresolved(b) && a === '')) return false;
        if (unresolved(a) || unresolved(b)) {
          throw new Error('it compares a value only known at deploy time');
        }
        return String(a) === String(b);
      }
    }
  }
  throw new Error(`not a condition: ${JSON.stringify(node)}`);
}

/**
 * Evaluates a template fragment: intrinsic functions resolved against `ctx`, `AWS::NoValue`
 * dropped. Values only known at deploy time stay CDK tokens.
 */
export function evaluate(ctx: Context, node: Json): Json {
  if (Array.isArray(node)) {
    return node.map((n) => evaluate(ctx, n)).filter((n) => n !== NO_VALUE);
  }
  if (node === null || typeof node !== 'object') return node;
  const keys = Object.keys(node);
  if (keys.length === 1) {
    const key = keys[0];
    const arg = node[key];
    switch (key) {
      case 'Ref':
        return lookupName(ctx, arg);
      case 'Fn::GetAtt':
        return ctx.resource(arg[0]).getAtt(arg[1]);
      case 'Fn::Sub': {
        if (typeof arg === 'string') return sub(ctx, arg, {});
        const variables = evaluate(ctx, arg[1]);
        return sub(ctx, arg[0], variables);
      }
      case 'Fn::If':
        return condition(ctx, arg[0]) ? evaluate(ctx, arg[1]) : evaluate(ctx, arg[2]);
      case 'Fn::Join': {
        const separator = evaluate(ctx, arg[0]);
        const items = evaluate(ctx, arg[1]);
        return unresolved(items) ? Fn.join(separator, items) : items.join(separator);
      }
      case 'Fn::Split': {
        const [separator, text] = evaluate(ctx, arg);
        return unresolved(text) ? Fn.split(separator, text) : String(text).split(separator);
      }
      case 'Fn::Select': {
        const index = Number(evaluate(ctx, arg[0]));
        const list = evaluate(ctx, arg[1]);
        if (unresolved(list)) return Fn.select(index, list);
        if (!(index >= 0 && index < list.length)) throw new Error(`Fn::Select index ${index} out of range`);
        return list[index];
      }
      case 'Fn::FindInMap': {
        const keys = evaluate(ctx, arg).map(String);
        const value = ctx.template.Mappings[keys[0]]?.[keys[1]]?.[keys[2]];
        if (value === undefined) throw new MappingLookupError(keys);
        return value;
      }
      case 'Condition':
        return condition(ctx, arg);
    }
    if (key.startsWith('Fn::')) throw new Error(`${key} is not supported by the construct's evaluator`);
  }
  const out: Record<string, Json> = {};
  for (const [k, v] of Object.entries(node)) {
    const value = evaluate(ctx, v);
    if (value !== NO_VALUE) out[k] = value;
  }
  return out;
}
