export { diagnose, type Diagnosis } from './diagnose.js';
export { checkInput, DiagnoseInputError, type DiagnoseOptions, type CheckedInput } from './input.js';
export { FINGERPRINTS, fingerprint, type Fingerprint, type Evidence, type Condition, type HopKind } from './fingerprints.js';
export { readHops, pageWords, type HopReading, type MatchedHop, type ResponseView } from './hop.js';
export { decide, phaseOfType, type Verdict, type Side } from './verdict.js';
export { formatDiagnosis, diagnosisJson } from './report.js';
export type { ProbeResult, PhaseFailure, TlsInfo, HttpInfo, ConnectTry, Address } from './probe.js';
export type { DnsReport } from './dns.js';
export type { Experiments, Outcome } from './experiments.js';
