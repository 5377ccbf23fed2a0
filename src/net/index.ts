export * from './socket-slots.js';
export * from './accept.js';
