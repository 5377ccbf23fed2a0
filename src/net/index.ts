export * from './socket-slots.js';
export * from './accept.js';
export * from './unsent.js';
export * from './localhost.js';
