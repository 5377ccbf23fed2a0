export { startLab, LabOptionsError, type Lab, type LabOptions } from './lab.js';
export type { LabStats, LabRequestRecord } from './lab-stats.js';
export type { WorkStats } from './work-queue.js';
export { LAB_FAULTS, faultUrl, type LabFault, type LabListener, type LabAddresses } from './faults.js';
export { loadLabCerts, findLabCertDir, labCertDirCandidates, LabCertsNotFoundError, type LabCerts } from './certs.js';
export { labByteAt } from './byte-source.js';
export { startLabDnsServer, type LabDnsServer, type LabDnsServerOptions } from './dns-server.js';
