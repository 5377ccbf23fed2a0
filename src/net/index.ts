export * from './socket-slots.js';
