export type { Store, SessionPick } from './store.js';
export { MemoryStore, type StoreDump } from './memory-store.js';
export { SharedState, type SharedStateOptions, type StateHealth, type StateLog } from './shared-state.js';
export { IpcStore, serveIpcState } from './ipc-store.js';
export type { RedisStoreOptions } from './redis-store.js';
