export type { Store } from './store.js';
export { MemoryStore, type StoreDump } from './memory-store.js';
