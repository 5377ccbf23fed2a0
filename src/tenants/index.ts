export { hashPassword, verifyPassword, parsePasswordHash, isPasswordHash, DEFAULT_SCRYPT, type ScryptParams, type ParsedHash } from './password-hash.js';
export { CredentialCache } from './credential-cache.js';
export { UserDirectory, type UserEntry } from './user-directory.js';
export { ConcurrencyLimits, type LimitKind } from './concurrency-limits.js';
export { Meter, MeterSession, type ExitFields, type Counters, type MeterSnapshot, type FinishedRecord, type FinishFields, type MeteredProtocol, type MeterEvents } from './meter.js';
export { parseUsername, parseShortDuration, DEFAULT_GRAMMAR, type UsernameGrammar, type UsernameParams } from './username-params.js';
export { limitRefusal, isCustomerFacing } from './limit-refusal.js';
export { PlanEnforcer, periodOf, usageKey, type PlanSpec, type ByteLimits, type Period } from './plans.js';
export { UsersFile, type UsersFileLogger } from './users-file.js';
