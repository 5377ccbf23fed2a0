export type { Store, SessionPick, AdmitAsk, QuotaAsk, StoreAdmitAsk, StoreAdmitAnswer } from './store.js';
export { MemoryStore, type StoreDump } from './memory-store.js';
export { SharedState, type AdmitResult, type SharedStateOptions, type StateHealth, type StateLog } from './shared-state.js';
export { IpcStore, serveIpcState } from './ipc-store.js';
export type { RedisStoreOptions } from './redis-store.js';
export { withIpcLock, onIpcLockChanged, serveIpcLocks, IpcLockError } from './ipc-lock.js';
export { creditBlock, rateOvershootBound, DEFAULT_CREDIT, type CreditPolicy } from './credit.js';
