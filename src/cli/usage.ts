/** A command line that cannot be run as given: exit code 2 with the message. */
export class UsageError extends Error {
  readonly code = 'GATEWISE_USAGE';
}
