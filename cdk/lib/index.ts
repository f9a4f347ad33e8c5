export * from './breaker';
export * from './settings';
export { loadTemplate, parseTemplate, evaluate, TEMPLATE_PATH, REPOSITORY_ROOT, MappingLookupError } from './template';
