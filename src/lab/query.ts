/** A query parameter the lab cannot use: answered with 400. */
export class LabParamError extends Error {
  readonly param: string;

  constructor(param: string, message: string) {
    super(message);
    this.name = 'LabParamError';
    this.param = param;
  }
}

/** An integer query parameter within [min, max], or `fallback` when absent. */
export function intParam(query: URLSearchParams, name: string, fallback: number, min: number, max: number): number {
  const raw = query.get(name);
  if (raw === null || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new LabParamError(name, `query parameter ${name} must be an integer from ${min} to ${max}`);
  }
  return n;
}

/** A boolean flag: `1`, `true` or `yes`. */
export function flagParam(query: URLSearchParams, name: string): boolean {
  const raw = query.get(name);
  return raw === '1' || raw === 'true' || raw === 'yes';
}
