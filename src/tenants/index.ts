export { hashPassword, verifyPassword, parsePasswordHash, isPasswordHash, DEFAULT_SCRYPT, type ScryptParams, type ParsedHash } from './password-hash.js';
export { CredentialCache } from './credential-cache.js';
export { UserDirectory, type UserEntry } from './user-directory.js';
export { ConcurrencyLimits, type LimitKind } from './concurrency-limits.js';
export { Meter, MeterSession, type Counters, type MeterSnapshot, type FinishedRecord, type FinishFields, type MeteredProtocol, type MeterEvents } from './meter.js';
